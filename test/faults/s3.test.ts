/**
 * A site whose storage policy is S3: uploads go from the gateway straight to the storage (parts
 * PUT to presigned URLs, completed with their ETags, then the client callback), downloads come
 * from presigned URLs on the storage's own origin. Every size edge, overwrite, parallel parts,
 * Finder's length-less PUT, part failures and ranged reads, with the bytes read back.
 */
import { Readable } from "node:stream";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { R, resetStats, setFaults } from "../helpers/control.js";
import { Api, expectStored, upstreamInfo } from "../helpers/emulator.js";
import { content, dav, expectNothingLeft } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";

const CHUNK = 256 * 1024;
const MTIME = { "x-oc-mtime": "1700000000" };
const CALLBACK = "GET /api/v4/callback/s3/:sessionId/:key";

interface Stats {
  requests: Record<string, number>;
  storage: { requests: Record<string, number>; bytesIn: number; bytesOut: number };
}

describe.each([1, 4])("S3 policy, chunk_concurrency %i", (concurrency) => {
  const fx = useGateway(
    { policy: "s3", chunkSize: CHUNK, chunkConcurrency: concurrency },
    { cacheTtlSeconds: 0 },
  );
  let api: Api;
  let seq = 0;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });
  beforeEach(async () => {
    await setFaults(fx.emu.url, []);
    await resetStats(fx.emu.url);
  });
  const stats = async () => (await (await fetch(`${fx.emu.url}/__emulator/stats`)).json()) as Stats;

  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3.5 * CHUNK]) {
    it(`PUT of ${size} B goes part by part to the storage, completed and called back`, async () => {
      const path = `s3-${concurrency}-${++seq}.bin`;
      const body = content(size, seq);
      const r = await dav(`${fx.url}/${path}`, "PUT", { body, headers: MTIME });
      expect(r.status).toBe(201);
      const s = await stats();
      const parts = Math.max(1, Math.ceil(size / CHUNK));
      expect(s.storage.requests["PUT part"]).toBe(parts);
      expect(s.storage.requests["POST complete"]).toBe(1);
      expect(s.requests[CALLBACK]).toBe(1);
      expect(s.requests[R.chunk] ?? 0).toBe(0);
      expect(s.storage.bytesIn).toBeGreaterThanOrEqual(size);
      const info = await expectStored(api, path, body);
      expect(Date.parse(info.updated_at)).toBe(1700000000 * 1000);
      await expectNothingLeft(fx.emu.url);
    });
  }

  it("an overwrite makes a new version; a small PUT without a time goes through Cloudreve", async () => {
    const path = `s3-over-${concurrency}.bin`;
    const first = content(3 * CHUNK, 1);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: first, headers: MTIME })).status).toBe(
      201,
    );
    const second = content(2 * CHUNK + 5, 2);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: second, headers: MTIME })).status).toBe(
      204,
    );
    await expectStored(api, path, second);
    const small = content(1000, 3);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: small })).status).toBe(204);
    await expectStored(api, path, small);
    await expectNothingLeft(fx.emu.url);
  });

  it("Finder's PUT without a length is spooled, then sent in parts", async () => {
    const body = content(2 * CHUNK + 77, 9);
    const r = await dav(`${fx.url}/s3-finder-${concurrency}.bin`, "PUT", {
      // A stream of unknown length goes out chunked, as Finder sends it.
      body: Readable.from([body.subarray(0, 1000), body.subarray(1000)]),
      headers: MTIME,
    });
    expect(r.status).toBe(201);
    await expectStored(api, `s3-finder-${concurrency}.bin`, body);
  });

  it("a part failing twice is retried on its own; the upload completes", async () => {
    const body = content(3 * CHUNK, 11);
    await setFaults(fx.emu.url, [{ route: "PUT part", failWith: 503, times: 2 }]);
    const r = await dav(`${fx.url}/s3-retry-${concurrency}.bin`, "PUT", { body, headers: MTIME });
    expect(r.status).toBe(201);
    expect((await stats()).storage.requests["PUT part"]).toBe(3 + 2);
    await expectStored(api, `s3-retry-${concurrency}.bin`, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a part that always fails: 5xx, the session cancelled, the old content kept", async () => {
    const path = `s3-fail-${concurrency}.bin`;
    const old = content(CHUNK + 3, 12);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: old, headers: MTIME })).status).toBe(201);
    await setFaults(fx.emu.url, [{ route: "PUT part", failWith: 502 }]);
    const r = await dav(`${fx.url}/${path}`, "PUT", {
      body: content(3 * CHUNK, 13),
      headers: MTIME,
    });
    await setFaults(fx.emu.url, []);
    expect([502, 503]).toContain(r.status);
    await expectStored(api, path, old);
    expect((await stats()).requests[R.cancel]).toBe(1);
    await expectNothingLeft(fx.emu.url);

    const fresh = `s3-fail-new-${concurrency}.bin`;
    await setFaults(fx.emu.url, [{ route: "POST complete", failWith: 500 }]);
    const failed = await dav(`${fx.url}/${fresh}`, "PUT", {
      body: content(CHUNK, 14),
      headers: MTIME,
    });
    await setFaults(fx.emu.url, []);
    expect([502, 503]).toContain(failed.status);
    expect(await upstreamInfo(api, fresh)).toBeUndefined();
    await expectNothingLeft(fx.emu.url);
  });

  it("GET reads from the storage's own origin, whole and ranged, and resumes a broken body", async () => {
    const path = `s3-read-${concurrency}.bin`;
    const body = content(2 * 1024 * 1024, 21);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body, headers: MTIME })).status).toBe(201);
    await resetStats(fx.emu.url);
    const whole = await dav(`${fx.url}/${path}`, "GET");
    expect(whole.status).toBe(200);
    expect(whole.body.equals(body)).toBe(true);
    const part = await dav(`${fx.url}/${path}`, "GET", { headers: { range: "bytes=1000-99999" } });
    expect(part.status).toBe(206);
    expect(part.body.equals(body.subarray(1000, 100000))).toBe(true);
    const s = await stats();
    expect(s.storage.requests["GET object"]).toBe(2);
    expect(s.requests[R.content] ?? 0).toBe(0);

    await setFaults(fx.emu.url, [
      { route: "GET object", failWith: "reset", afterBytes: 300_000, times: 1 },
    ]);
    const resumed = await dav(`${fx.url}/${path}`, "GET");
    expect(resumed.status).toBe(200);
    expect(resumed.body.equals(body)).toBe(true);
  });
});
