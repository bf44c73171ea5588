/**
 * The OneDrive storage policy. The emulator's Graph upload session over HTTP: Content-Range and
 * Content-Length checks, fragments in order (a gap, a repeat), the 320 KiB grid, a fragment
 * whose answer was lost or whose body broke off, expiry, empty files, cancel, and Cloudreve's
 * size check in the client callback. Then the gateway's side of it: fragments one at a time,
 * a lost answer and a 5xx on a fragment, a failing callback, each write read back.
 */
import { mkdtempSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { R, resetStats, setFaults, type FaultRule } from "../helpers/control.js";
import {
  advance,
  Api,
  bytes,
  code,
  expectStored,
  info,
  myUri,
  ok,
  upstreamBytes,
  upstreamInfo,
  useEmulator,
} from "../helpers/emulator.js";
import { content, dav, expectNothingLeft } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";

/** 320 KiB: Graph's fragment unit. */
const CHUNK = 327_680;
const CALLBACK = "POST /api/v4/callback/onedrive/:sessionId/:key";
const MTIME = { "x-oc-mtime": "1700000000" };

interface OdSession {
  session_id: string;
  upload_id: string;
  chunk_size: number;
  upload_urls: string[];
  callback_secret: string;
  completeURL?: string;
  credential?: string;
  storage_policy: { type: string; relay: boolean };
}

interface GraphReply {
  status: number;
  body: {
    expirationDateTime?: string;
    nextExpectedRanges?: string[];
    size?: number;
    error?: { code: string; message: string; innererror?: { code: string } };
  };
}

interface StorageStats {
  requests: Record<string, number>;
  bytesIn: number;
}

/** A data directory the test can look into: the storage's objects and unfinished fragments. */
function storageDir() {
  const dir = mkdtempSync(join(tmpdir(), "onedrive-test-"));
  afterAll(() => rm(dir, { recursive: true, force: true }));
  return {
    dir,
    objects: async () => (await readdir(join(dir, "storage", "objects"))).length,
    fragments: () => readdir(join(dir, "storage", "parts")),
  };
}

describe("onedrive policy: the emulator's Graph upload session", () => {
  const store = storageDir();
  const ctx = useEmulator({ policy: "onedrive", chunkSize: CHUNK, dataDir: store.dir });

  async function session(path: string, size: number): Promise<OdSession> {
    return ok(
      await ctx.api.call<OdSession>("PUT", "/file/upload", { json: { uri: myUri(path), size } }),
    );
  }

  /** One fragment PUT; `range` defaults to where `body` sits at `start` in a `total`-byte file. */
  async function fragment(
    url: string,
    body: Uint8Array,
    start: number,
    total: number,
    headers: Record<string, string> = {},
  ): Promise<GraphReply> {
    const res = await fetch(url, {
      method: "PUT",
      body,
      headers: {
        "content-range": `bytes ${start}-${start + body.length - 1}/${total}`,
        ...headers,
      },
    });
    return { status: res.status, body: (await res.json()) as GraphReply["body"] };
  }

  async function graph(url: string, method = "GET"): Promise<GraphReply> {
    const res = await fetch(url, { method });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as GraphReply["body"]) : {} };
  }

  /** Every fragment in order, each answered as Graph does; the last one commits the file. */
  async function sendAll(s: OdSession, body: Uint8Array): Promise<void> {
    for (let start = 0; start < body.length; start += CHUNK) {
      const part = body.subarray(start, start + CHUNK);
      const r = await fragment(s.upload_urls[0]!, part, start, body.length);
      if (start + part.length < body.length) {
        expect(r.status, JSON.stringify(r.body)).toBe(202);
        expect(r.body.nextExpectedRanges).toEqual([`${start + part.length}-`]);
        expect(Date.parse(r.body.expirationDateTime!)).toBeGreaterThan(0);
      } else {
        expect(r.status, JSON.stringify(r.body)).toBe(201);
        expect(r.body).toMatchObject({ size: body.length, file: {} });
      }
    }
  }

  function callback(s: OdSession, key = s.callback_secret) {
    return ctx.api.call("POST", `/callback/onedrive/${s.session_id}/${key}`, { auth: false });
  }

  function cancel(s: OdSession, path: string) {
    return ctx.api.call("DELETE", "/file/upload", {
      json: { id: s.session_id, uri: myUri(path) },
    });
  }

  async function storageStats(): Promise<StorageStats> {
    const r = await ctx.api.call<never>("GET", "/__emulator/stats");
    return (JSON.parse(r.text) as { storage: StorageStats }).storage;
  }

  const graphError = (r: GraphReply) => [
    r.status,
    r.body.error?.code,
    r.body.error?.innererror?.code,
  ];

  it("answers one Graph upload URL on the storage's origin, no upload id and no completion URL", async () => {
    const s = await session("od/session.bin", 3 * CHUNK + 1);
    expect(s.storage_policy).toMatchObject({ type: "onedrive", relay: false });
    expect(s.chunk_size).toBe(CHUNK);
    expect(s.upload_id).toBe("");
    expect(s.upload_urls).toHaveLength(1);
    expect(s.upload_urls[0]!.startsWith(`${ctx.emu.storageUrl}/_api/v2.0/drives/`)).toBe(true);
    expect(s.completeURL).toBeUndefined();
    expect(s.credential).toBeUndefined();
    const status = await graph(s.upload_urls[0]!);
    expect(status.status).toBe(200);
    expect(status.body.nextExpectedRanges).toEqual(["0-"]);
    expect(code(await ctx.api.call("POST", `/file/upload/${s.session_id}/0`, { body: "x" }))).toBe(
      40006,
    );
    expect(code(await cancel(s, "od/session.bin"))).toBe(0);
  });

  for (const size of [1, CHUNK - 1, CHUNK, CHUNK + 1, 3.5 * CHUNK]) {
    it(`uploads ${size} bytes fragment by fragment, committed by the last one`, async () => {
      const body = bytes(size, size % 7);
      const path = `od/size-${size}.bin`;
      const s = await session(path, size);
      await sendAll(s, body);
      // The committed session is gone.
      expect(graphError(await graph(s.upload_urls[0]!))).toEqual([404, "itemNotFound", undefined]);
      expect(ok(await info(ctx.api, path)).metadata?.["sys:upload_session_id"]).toBe(s.session_id);
      const r = await callback(s);
      expect([r.status, code(r)]).toEqual([200, 0]);
      const file = ok(await info(ctx.api, path));
      expect(file.size).toBe(size);
      expect(file.metadata?.["sys:upload_session_id"]).toBeUndefined();
      expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, path))).toBe(true);
      expect(code(await callback(s))).toBe(40011);
    });
  }

  it("checks Content-Range and Content-Length as Graph does", async () => {
    const body = bytes(2 * CHUNK, 2);
    const s = await session("od/ranges.bin", body.length);
    const url = s.upload_urls[0]!;
    const first = body.subarray(0, CHUNK);
    const malformed = "The Content-Range header is missing or malformed.";
    for (const range of [undefined, `bytes 0-${CHUNK - 1}`, `bytes ${CHUNK}-0/${body.length}`]) {
      const res = await fetch(url, {
        method: "PUT",
        body: first,
        headers: range ? { "content-range": range } : {},
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: { code: "invalidRequest", message: malformed } });
    }
    const beyond = await fragment(url, first, 0, CHUNK - 1);
    expect([beyond.status, beyond.body.error?.message]).toEqual([400, malformed]);
    const short = await fetch(url, {
      method: "PUT",
      body: first.subarray(1),
      headers: { "content-range": `bytes 0-${CHUNK - 1}/${body.length}` },
    });
    expect(short.status).toBe(400);
    expect(((await short.json()) as GraphReply["body"]).error?.message).toBe(
      "The Content-Range header length does not match the provided number of bytes.",
    );
    // The upload URL carries its own authentication.
    const bearer = await fragment(url, first, 0, body.length, { authorization: "Bearer x" });
    expect(graphError(bearer)).toEqual([401, "unauthenticated", undefined]);
    expect((await graph(url)).body.nextExpectedRanges).toEqual(["0-"]);
    // The first fragment fixes the file's size.
    expect((await fragment(url, first, 0, body.length)).status).toBe(202);
    const other = await fragment(url, body.subarray(CHUNK), CHUNK, body.length + 1);
    expect(other.status).toBe(400);
    expect(other.body.error?.message).toBe(
      `The current upload session is for ${body.length} total bytes, but the current fragment ` +
        `declares a total of ${body.length + 1}.`,
    );
    expect((await fragment(url, body.subarray(CHUNK), CHUNK, body.length)).status).toBe(201);
    expect(code(await callback(s))).toBe(0);
    expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, "od/ranges.bin"))).toBe(true);
  });

  it("takes fragments only in order: a gap is out of order, a repeat overlaps", async () => {
    const body = bytes(3 * CHUNK, 3);
    const s = await session("od/order.bin", body.length);
    const url = s.upload_urls[0]!;
    const at = (i: number) => body.subarray(i * CHUNK, (i + 1) * CHUNK);
    expect(graphError(await fragment(url, at(1), CHUNK, body.length))).toEqual([
      416,
      "invalidRange",
      "fragmentOutOfOrder",
    ]);
    expect((await fragment(url, at(0), 0, body.length)).status).toBe(202);
    const repeat = await fragment(url, at(0), 0, body.length);
    expect(graphError(repeat)).toEqual([416, "invalidRange", "fragmentOverlap"]);
    expect(repeat.body.error?.message).toBe("Uploaded fragment overlaps with existing data.");
    // A fragment reaching back into received bytes overlaps too, even if it goes further.
    const straddle = body.subarray(CHUNK - 10, 2 * CHUNK);
    expect(graphError(await fragment(url, straddle, CHUNK - 10, body.length))).toEqual([
      416,
      "invalidRange",
      "fragmentOverlap",
    ]);
    expect((await graph(url)).body.nextExpectedRanges).toEqual([`${CHUNK}-`]);
    expect((await fragment(url, at(1), CHUNK, body.length)).status).toBe(202);
    expect((await fragment(url, at(2), 2 * CHUNK, body.length)).status).toBe(201);
    expect(code(await callback(s))).toBe(0);
    expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, "od/order.bin"))).toBe(true);
  });

  it("keeps a fragment whose answer was lost: the repeat overlaps, or finds the file committed", async () => {
    const body = bytes(CHUNK + 100, 4);
    const s = await session("od/lost.bin", body.length);
    const url = s.upload_urls[0]!;
    await resetStats(ctx.emu.url);
    const lost: FaultRule[] = [{ route: "PUT part", failWith: "reset", afterBytes: 0, times: 1 }];
    await setFaults(ctx.emu.url, lost);
    await expect(fragment(url, body.subarray(0, CHUNK), 0, body.length)).rejects.toThrow();
    expect((await graph(url)).body.nextExpectedRanges).toEqual([`${CHUNK}-`]);
    const repeat = await fragment(url, body.subarray(0, CHUNK), 0, body.length);
    expect(graphError(repeat)).toEqual([416, "invalidRange", "fragmentOverlap"]);
    await setFaults(ctx.emu.url, lost);
    await expect(fragment(url, body.subarray(CHUNK), CHUNK, body.length)).rejects.toThrow();
    const again = await fragment(url, body.subarray(CHUNK), CHUNK, body.length);
    expect(graphError(again)).toEqual([404, "itemNotFound", undefined]);
    await setFaults(ctx.emu.url, []);
    expect(code(await callback(s))).toBe(0);
    expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, "od/lost.bin"))).toBe(true);
    const stats = await storageStats();
    expect(stats.requests).toEqual({ "PUT part": 4, "GET upload session": 1, "GET object": 1 });
    expect(stats.bytesIn).toBeGreaterThanOrEqual(body.length);
  });

  it("ignores a fragment whose body broke off, whole", async () => {
    const body = bytes(CHUNK + 1, 5);
    const s = await session("od/broken.bin", body.length);
    const url = new URL(s.upload_urls[0]!);
    await new Promise<void>((resolve) => {
      const req = request(url, {
        method: "PUT",
        headers: {
          "content-range": `bytes 0-${CHUNK - 1}/${body.length}`,
          "content-length": CHUNK,
        },
      });
      req.on("error", () => resolve());
      req.write(body.subarray(0, CHUNK / 2), () => setTimeout(() => req.destroy(), 50));
    });
    expect((await graph(url.href)).body.nextExpectedRanges).toEqual(["0-"]);
    await sendAll(s, body);
    expect(code(await callback(s))).toBe(0);
    expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, "od/broken.bin"))).toBe(true);
  });

  it("fails the commit of fragments off the 320 KiB grid, every time", async () => {
    const body = bytes(2000, 6);
    const s = await session("od/grid.bin", body.length);
    const url = s.upload_urls[0]!;
    const objects = await store.objects();
    expect((await fragment(url, body.subarray(0, 1000), 0, 2000)).status).toBe(202);
    for (let i = 0; i < 2; i++) {
      const r = await fragment(url, body.subarray(1000), 1000, 2000);
      expect(graphError(r)).toEqual([500, "generalException", undefined]);
    }
    expect((await graph(url)).body.nextExpectedRanges).toEqual(["1000-"]);
    expect(await store.objects()).toBe(objects);
    const r = await callback(s);
    expect([r.status, code(r)]).toEqual([200, 40055]);
    expect(code(await cancel(s, "od/grid.bin"))).toBe(0);
    expect(await store.fragments()).toEqual([]);
  });

  it("cannot take an empty file: no Content-Range fits, the callback finds nothing", async () => {
    const s = await session("od/empty.bin", 0);
    expect(s.upload_urls).toHaveLength(1);
    for (const range of ["bytes 0--1/0", "bytes 0-0/0"]) {
      const res = await fetch(s.upload_urls[0]!, {
        method: "PUT",
        body: new Uint8Array(0),
        headers: { "content-range": range },
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as GraphReply["body"]).error?.code).toBe("invalidRequest");
    }
    const r = await callback(s);
    expect([r.status, code(r)]).toEqual([200, 40055]);
    expect(code(await cancel(s, "od/empty.bin"))).toBe(0);
    expect(code(await info(ctx.api, "od/empty.bin"))).toBe(40016);
  });

  it("has Cloudreve check the committed size in the callback; cancel then deletes the item", async () => {
    const body = bytes(CHUNK + 10, 7);
    const s = await session("od/lying.bin", body.length);
    const objects = await store.objects();
    const early = await callback(s);
    expect([early.status, code(early)]).toEqual([200, 40055]);
    // A client declaring one byte less: Graph commits what it was told.
    const short = body.subarray(0, body.length - 1);
    expect(
      (await fragment(s.upload_urls[0]!, short.subarray(0, CHUNK), 0, short.length)).status,
    ).toBe(202);
    const last = await fragment(s.upload_urls[0]!, short.subarray(CHUNK), CHUNK, short.length);
    expect([last.status, last.body.size]).toEqual([201, short.length]);
    expect(await store.objects()).toBe(objects + 1);
    const mismatch = await callback(s);
    expect([mismatch.status, code(mismatch)]).toEqual([200, 40055]);
    const wrongKey = await callback(s, "0".repeat(32));
    expect([wrongKey.status, code(wrongKey)]).toEqual([401, 40020]);
    const unknown = await ctx.api.call("POST", `/callback/onedrive/${crypto.randomUUID()}/x`, {
      auth: false,
    });
    expect([unknown.status, code(unknown)]).toEqual([401, 40011]);
    expect(code(await cancel(s, "od/lying.bin"))).toBe(0);
    expect(await store.objects()).toBe(objects);
    expect(code(await info(ctx.api, "od/lying.bin"))).toBe(40016);
  });

  it("cancel deletes the Graph session; so does a DELETE on the upload URL", async () => {
    const s = await session("od/cancelled.bin", 2 * CHUNK);
    const url = s.upload_urls[0]!;
    expect((await fragment(url, bytes(CHUNK), 0, 2 * CHUNK)).status).toBe(202);
    expect(await store.fragments()).toHaveLength(1);
    expect(code(await cancel(s, "od/cancelled.bin"))).toBe(0);
    expect(await store.fragments()).toEqual([]);
    expect(code(await info(ctx.api, "od/cancelled.bin"))).toBe(40016);
    expect(graphError(await graph(url))).toEqual([404, "itemNotFound", undefined]);
    const late = await fragment(url, bytes(CHUNK), CHUNK, 2 * CHUNK);
    expect(graphError(late)).toEqual([404, "itemNotFound", undefined]);

    const t = await session("od/deleted.bin", 2 * CHUNK);
    expect((await fragment(t.upload_urls[0]!, bytes(CHUNK), 0, 2 * CHUNK)).status).toBe(202);
    await resetStats(ctx.emu.url);
    expect((await graph(t.upload_urls[0]!, "DELETE")).status).toBe(204);
    expect((await graph(t.upload_urls[0]!)).status).toBe(404);
    expect(await store.fragments()).toEqual([]);
    expect((await storageStats()).requests).toEqual({
      "DELETE upload session": 1,
      "GET upload session": 1,
    });
    expect(code(await cancel(t, "od/deleted.bin"))).toBe(0);
  });

  it("expires the upload URL 15 minutes after the session or its last fragment", async () => {
    const idle = await session("od/idle.bin", CHUNK + 1);
    await advance(ctx.api, 16 * 60);
    const r = await fragment(idle.upload_urls[0]!, bytes(CHUNK), 0, CHUNK + 1);
    expect(graphError(r)).toEqual([404, "itemNotFound", undefined]);
    expect(code(await cancel(idle, "od/idle.bin"))).toBe(0);

    const body = bytes(3 * CHUNK, 8);
    const s = await session("od/slow.bin", body.length);
    const url = s.upload_urls[0]!;
    const first = await fragment(url, body.subarray(0, CHUNK), 0, body.length);
    await advance(ctx.api, 10 * 60);
    const second = await fragment(url, body.subarray(CHUNK, 2 * CHUNK), CHUNK, body.length);
    expect(second.status).toBe(202);
    const extended =
      Date.parse(second.body.expirationDateTime!) - Date.parse(first.body.expirationDateTime!);
    expect(extended).toBeGreaterThanOrEqual(10 * 60 * 1000);
    await advance(ctx.api, 16 * 60);
    const third = await fragment(url, body.subarray(2 * CHUNK), 2 * CHUNK, body.length);
    expect(graphError(third)).toEqual([404, "itemNotFound", undefined]);
    expect(await store.fragments()).toEqual([]);
    expect(code(await cancel(s, "od/slow.bin"))).toBe(0);
  });
});

describe("onedrive policy: the emulator's defaults", () => {
  const ctx = useEmulator({ policy: "onedrive" });

  it("answers chunk_size 50 MiB", async () => {
    const r = await ctx.api.call<OdSession>("PUT", "/file/upload", {
      json: { uri: myUri("big.bin"), size: 1 },
    });
    expect(ok(r).chunk_size).toBe(50 * 1024 * 1024);
  });
});

describe("onedrive policy through the gateway", () => {
  const store = storageDir();
  // chunk_concurrency 4: fragments must still go one at a time.
  const fx = useGateway(
    { policy: "onedrive", chunkSize: CHUNK, chunkConcurrency: 4, dataDir: store.dir },
    { cacheTtlSeconds: 0, directUploadMaxBytes: 0 },
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
  const stats = async () =>
    (await (await fetch(`${fx.emu.url}/__emulator/stats`)).json()) as {
      requests: Record<string, number>;
      storage: StorageStats;
    };

  it("sends the fragments one at a time, in order, whatever chunk_concurrency says", async () => {
    const path = `od-gw-${++seq}.bin`;
    const body = content(3.5 * CHUNK, seq);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body, headers: MTIME })).status).toBe(201);
    const s = await stats();
    expect(s.storage.requests).toEqual({ "PUT part": 4 });
    expect(s.requests[CALLBACK]).toBe(1);
    await expectStored(api, path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a fragment whose answer was lost, then a 5xx on its repeat: the next repeat overlaps and counts", async () => {
    const path = `od-gw-${++seq}.bin`;
    const body = content(3 * CHUNK + 5, seq);
    await setFaults(fx.emu.url, [
      { route: "PUT part", failWith: "reset", afterBytes: 0, times: 1 },
      { route: "PUT part", failWith: 503, times: 1 },
    ]);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body, headers: MTIME })).status).toBe(201);
    expect((await stats()).storage.requests["PUT part"]).toBe(4 + 2);
    await expectStored(api, path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("the last fragment's answer lost: the repeat finds the file committed, the callback confirms", async () => {
    const path = `od-gw-${++seq}.bin`;
    const body = content(CHUNK - 1, seq);
    await setFaults(fx.emu.url, [
      { route: "PUT part", failWith: "reset", afterBytes: 0, times: 1 },
    ]);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body, headers: MTIME })).status).toBe(201);
    const s = await stats();
    expect(s.storage.requests["PUT part"]).toBe(2);
    expect(s.requests[CALLBACK]).toBe(1);
    await expectStored(api, path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a callback that keeps failing: the session is cancelled, the item deleted, the old content kept", async () => {
    const path = `od-gw-${++seq}.bin`;
    const old = content(CHUNK + 3, seq);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: old })).status).toBe(201);
    const objects = await store.objects();
    await resetStats(fx.emu.url);
    await setFaults(fx.emu.url, [{ route: CALLBACK, failWith: 500 }]);
    const r = await dav(`${fx.url}/${path}`, "PUT", { body: content(2 * CHUNK, seq + 1) });
    await setFaults(fx.emu.url, []);
    expect(r.status).toBeGreaterThanOrEqual(500);
    const s = await stats();
    expect(s.storage.requests["PUT part"]).toBe(2);
    expect(s.requests[R.cancel]).toBe(1);
    expect(await store.objects()).toBe(objects);
    expect(await store.fragments()).toEqual([]);
    await expectStored(api, path, old);
    await expectNothingLeft(fx.emu.url);

    const fresh = `od-gw-${++seq}.bin`;
    await setFaults(fx.emu.url, [{ route: CALLBACK, failWith: 500 }]);
    const failed = await dav(`${fx.url}/${fresh}`, "PUT", { body: content(CHUNK, seq) });
    await setFaults(fx.emu.url, []);
    expect(failed.status).toBeGreaterThanOrEqual(500);
    expect(await upstreamInfo(api, fresh)).toBeUndefined();
    expect(await store.objects()).toBe(objects);
    await expectNothingLeft(fx.emu.url);
  });
});

describe("onedrive policy through the gateway, chunk_size off Graph's grid", () => {
  const fx = useGateway(
    { policy: "onedrive", chunkSize: 300_000 },
    { cacheTtlSeconds: 0, directUploadMaxBytes: 0 },
  );

  it("cuts 320 KiB fragments, which Graph commits", async () => {
    const api = new Api(fx.emu.url);
    await api.login();
    const body = content(2 * CHUNK, 1);
    expect((await dav(`${fx.url}/grid.bin`, "PUT", { body, headers: MTIME })).status).toBe(201);
    const s = (await (await fetch(`${fx.emu.url}/__emulator/stats`)).json()) as {
      storage: StorageStats;
    };
    expect(s.storage.requests["PUT part"]).toBe(2);
    await expectStored(api, "grid.bin", body);
    await expectNothingLeft(fx.emu.url);
  });
});
