/**
 * Every storage policy the emulator models (and relay), through the gateway: the size edges
 * of chunking, with and without a client's modification time, Finder's length-less PUT,
 * overwrite, a client that goes away, a part failing and retried, a part failing for good,
 * whole and ranged reads from the storage's origin, a download URL that expires. Each write is
 * read back byte for byte, its checksums are those of the bytes sent, and nothing may be left
 * upstream. `POLICIES=a,b` runs some only.
 */
import { Readable } from "node:stream";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { checksumsOf, servedChecksums } from "../helpers/checksums.js";
import { advanceClock, R, resetStats, setFaults } from "../helpers/control.js";
import { Api, expectStored, upstreamInfo } from "../helpers/emulator.js";
import { content, dav, expectNothingLeft, leftovers } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";
import { countOf, partRequest, partsFor, SITES } from "../helpers/policies.js";
import { settled } from "../helpers/wait.js";

/** A multiple of 320 KiB, as OneDrive requires of every fragment but the last. */
const CHUNK = 327_680;
const MTIME_S = 1_700_000_000;
const MTIME = { "x-oc-mtime": String(MTIME_S) };

describe.each(SITES)("$name policy through the gateway", (site) => {
  const concurrency = 2;
  // Direct writes off, so that every size takes the policy's upload session.
  const fx = useGateway(
    { policy: site.policy, relay: site.relay, chunkSize: CHUNK, chunkConcurrency: concurrency },
    { cacheTtlSeconds: 0, directUploadMaxBytes: 0 },
  );
  const part = partRequest(site);
  let api: Api;
  let seq = 0;
  const fresh = (label: string) => `${site.name.replace(/\W+/g, "-")}-${label}-${++seq}.bin`;
  const stats = () => fx.stats();
  const expectChecksums = async (path: string, body: Buffer) =>
    expect(await servedChecksums(fx.url, `/${path}`)).toBe(checksumsOf(body));
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });
  beforeEach(async () => {
    await setFaults(fx.emu.url, []);
    await resetStats(fx.emu.url);
  });

  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3.5 * CHUNK]) {
    for (const withTime of [true, false]) {
      it(`PUT of ${size} B ${withTime ? "with" : "without"} X-OC-Mtime is stored as sent`, async () => {
        const path = fresh(`${size}`);
        const body = content(size, seq);
        const r = await dav(`${fx.url}/${path}`, "PUT", {
          body,
          headers: withTime ? MTIME : {},
        });
        expect(r.status).toBe(201);
        const s = await stats();
        // An empty file is written in one call whatever the threshold (OneDrive cannot take
        // one by session); everything else goes part by part to where the policy says.
        if (size === 0) expect(s.requests[R.putContent]).toBe(1);
        else expect(countOf(s, part)).toBe(partsFor(site, size, CHUNK));
        if (part.origin === "storage" && size > 0) {
          expect(s.requests[R.chunk] ?? 0).toBe(0);
          expect(s.storage!.bytesIn).toBeGreaterThanOrEqual(size);
        }
        await expectStored(api, path, body);
        const getlastmodified = await dav(`${fx.url}/${path}`, "PROPFIND", {
          headers: { depth: "0" },
        });
        const modified = /getlastmodified>([^<]+)</.exec(getlastmodified.body.toString())?.[1];
        if (withTime) expect(Date.parse(modified!)).toBe(MTIME_S * 1000);
        await expectChecksums(path, body);
        await expectNothingLeft(fx.emu.url);
      });
    }
  }

  it("an overwrite replaces the content; the old version stays readable until then", async () => {
    const path = fresh("over");
    const first = content(3 * CHUNK, 1);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: first })).status).toBe(201);
    const second = content(2 * CHUNK + 5, 2);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: second, headers: MTIME })).status).toBe(
      204,
    );
    await expectStored(api, path, second);
    await expectChecksums(path, second);
    const got = await dav(`${fx.url}/${path}`, "GET");
    expect(got.body.equals(second)).toBe(true);
    await expectNothingLeft(fx.emu.url);
  });

  it("Finder's PUT without a length is spooled, then uploaded", async () => {
    const path = fresh("finder");
    const body = content(2 * CHUNK + 77, 9);
    const r = await dav(`${fx.url}/${path}`, "PUT", {
      // A stream of unknown length goes out chunked, as Finder sends it.
      body: Readable.from([body.subarray(0, 1000), body.subarray(1000)]),
      headers: MTIME,
    });
    expect(r.status).toBe(201);
    await expectStored(api, path, body);
    await expectChecksums(path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a client that goes away mid-body leaves the old content and nothing else", async () => {
    const path = fresh("abort");
    const old = content(CHUNK + 3, 3);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: old })).status).toBe(201);
    const next = content(3 * CHUNK, 4);
    const cut = Readable.from(
      (async function* () {
        yield next.subarray(0, CHUNK + 100);
        throw new Error("the client went away");
      })(),
    );
    const r = await dav(`${fx.url}/${path}`, "PUT", {
      body: cut,
      headers: { "content-length": String(next.length) },
    });
    expect(r.status === 0 || r.status >= 400).toBe(true);
    // The gateway cleans up after the connection is gone: wait until upstream is quiet.
    await settled(
      "upstream to settle after the cut upload",
      async () => JSON.stringify([await leftovers(fx.emu.url), (await stats()).requests]),
      10_000,
    );
    await expectStored(api, path, old);
    await expectChecksums(path, old);
    await expectNothingLeft(fx.emu.url);
  });

  it("a part failing twice is retried on its own; the upload completes", async () => {
    const path = fresh("retry");
    const body = content(3 * CHUNK, 11);
    await setFaults(fx.emu.url, [{ route: part.key, failWith: 503, times: 2 }]);
    const r = await dav(`${fx.url}/${path}`, "PUT", { body, headers: MTIME });
    expect(r.status).toBe(201);
    expect(countOf(await stats(), part)).toBe(partsFor(site, body.length, CHUNK) + 2);
    await expectStored(api, path, body);
    // A part sent again is not hashed again.
    await expectChecksums(path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a part that always fails: 5xx, the session cancelled, the old content kept", async () => {
    const path = fresh("fail");
    const old = content(CHUNK + 3, 12);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: old })).status).toBe(201);
    await setFaults(fx.emu.url, [{ route: part.key, failWith: 502 }]);
    const r = await dav(`${fx.url}/${path}`, "PUT", { body: content(3 * CHUNK, 13) });
    await setFaults(fx.emu.url, []);
    expect([502, 503]).toContain(r.status);
    expect((await stats()).requests[R.cancel]).toBe(1);
    await expectStored(api, path, old);
    await expectChecksums(path, old);
    await expectNothingLeft(fx.emu.url);

    const brandNew = fresh("fail-new");
    await setFaults(fx.emu.url, [{ route: part.key, failWith: 500 }]);
    const failed = await dav(`${fx.url}/${brandNew}`, "PUT", { body: content(CHUNK, 14) });
    await setFaults(fx.emu.url, []);
    expect([502, 503]).toContain(failed.status);
    expect(await upstreamInfo(api, brandNew)).toBeUndefined();
    await expectNothingLeft(fx.emu.url);
  });

  it("GET reads whole and ranged, resumes a broken body, and re-signs an expired URL", async () => {
    const path = fresh("read");
    const body = content(2 * 1024 * 1024, 21);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body, headers: MTIME })).status).toBe(201);
    await resetStats(fx.emu.url);
    const whole = await dav(`${fx.url}/${path}`, "GET");
    expect(whole.status).toBe(200);
    expect(whole.body.equals(body)).toBe(true);
    const ranged = await dav(`${fx.url}/${path}`, "GET", {
      headers: { range: "bytes=1000-99999" },
    });
    expect(ranged.status).toBe(206);
    expect(ranged.body.equals(body.subarray(1000, 100000))).toBe(true);
    const read = site.policy === "local" ? { origin: "api" as const, key: R.content } : undefined;
    const s = await stats();
    if (read) expect(countOf(s, read)).toBe(2);
    else {
      // Straight from the storage's origin, never through Cloudreve.
      expect(s.storage!.requests["GET object"]).toBe(2);
      expect(s.requests[R.content] ?? 0).toBe(0);
    }

    const getRoute = read?.key ?? "GET object";
    await setFaults(fx.emu.url, [
      { route: getRoute, failWith: "reset", afterBytes: 300_000, times: 1 },
    ]);
    const resumed = await dav(`${fx.url}/${path}`, "GET");
    expect(resumed.status).toBe(200);
    expect(resumed.body.equals(body)).toBe(true);
    await setFaults(fx.emu.url, []);

    // The gateway's URL outlives its signature: the storage refuses it, a fresh one is asked.
    await advanceClock(fx.emu.url, 2 * 3600);
    await resetStats(fx.emu.url);
    const late = await dav(`${fx.url}/${path}`, "GET", { headers: { range: "bytes=5-" } });
    expect(late.status).toBe(206);
    expect(late.body.equals(body.subarray(5))).toBe(true);
    expect((await stats()).requests[R.url]).toBeGreaterThanOrEqual(1);
  });
});
