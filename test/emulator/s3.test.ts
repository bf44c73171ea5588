import { randomUUID } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Api } from "../helpers/emulator.js";
import {
  advance,
  bytes,
  code,
  info,
  myUri,
  ok,
  put,
  upstreamBytes,
  useEmulator,
} from "../helpers/emulator.js";

interface S3Session {
  session_id: string;
  upload_id: string;
  chunk_size: number;
  expires: number;
  upload_urls: string[];
  completeURL: string;
  callback_secret: string;
  storage_policy: { type: string; relay: boolean; chunk_concurrency: number };
}

interface StorageStats {
  requests: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
}

const CHUNK = 64 * 1024;

function startSession(api: Api, path: string, size: number, extra: Record<string, unknown> = {}) {
  return api.call<S3Session>("PUT", "/file/upload", { json: { uri: myUri(path), size, ...extra } });
}

async function session(api: Api, path: string, size: number): Promise<S3Session> {
  return ok(await startSession(api, path, size));
}

function putPart(url: string, body: Uint8Array) {
  return fetch(url, {
    method: "PUT",
    body,
    headers: { "content-type": "application/octet-stream" },
  });
}

/** Sends every part, answering their ETags in order. */
async function putParts(s: S3Session, body: Uint8Array): Promise<string[]> {
  const etags: string[] = [];
  for (const [i, url] of s.upload_urls.entries()) {
    const res = await putPart(url, body.subarray(i * s.chunk_size, (i + 1) * s.chunk_size));
    expect(res.status, await res.clone().text()).toBe(200);
    etags.push(res.headers.get("etag")!);
  }
  return etags;
}

const completeBody = (etags: string[], numbers = etags.map((_, i) => i + 1)) =>
  "<CompleteMultipartUpload>" +
  etags
    .map((e, i) => `<Part><PartNumber>${numbers[i]}</PartNumber><ETag>${e}</ETag></Part>`)
    .join("") +
  "</CompleteMultipartUpload>";

function completeUpload(s: S3Session, body: string) {
  return fetch(s.completeURL, { method: "POST", body });
}

function callback(api: Api, s: S3Session, key = s.callback_secret) {
  return api.call("GET", `/callback/s3/${s.session_id}/${key}`, { auth: false });
}

async function storageStats(api: Api): Promise<StorageStats> {
  const r = await api.call<never>("GET", "/__emulator/stats");
  return (JSON.parse(r.text) as { storage: StorageStats }).storage;
}

async function faults(api: Api, rules: unknown[]): Promise<void> {
  const r = await api.call("POST", "/__emulator/faults", { json: { rules } });
  expect(r.status, r.text).toBe(200);
}

/** The whole s3 flow: session, parts, complete, callback. */
async function upload(api: Api, path: string, body: Uint8Array): Promise<void> {
  const s = await session(api, path, body.length);
  const etags = await putParts(s, body);
  const done = await completeUpload(s, completeBody(etags));
  expect(done.status, await done.clone().text()).toBe(200);
  expect(await done.text()).toContain("<CompleteMultipartUploadResult>");
  const r = await callback(api, s);
  expect(r.status, r.text).toBe(200);
  expect(code(r)).toBe(0);
}

describe("s3 policy", () => {
  const ctx = useEmulator({ policy: "s3", chunkSize: CHUNK, chunkConcurrency: 3 });

  it("starts a storage origin and hands out presigned part URLs", async () => {
    expect(ctx.emu.storageUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const s = await session(ctx.api, "s3/session.bin", 3 * CHUNK + 1);
    expect(s.storage_policy).toMatchObject({ type: "s3", relay: false, chunk_concurrency: 3 });
    expect(s.chunk_size).toBe(CHUNK);
    expect(s.upload_id).not.toBe("");
    expect(s.upload_urls).toHaveLength(4);
    for (const url of [...s.upload_urls, s.completeURL])
      expect(url.startsWith(`${ctx.emu.storageUrl}/`)).toBe(true);
    expect(new URL(s.upload_urls[1]!).searchParams.get("partNumber")).toBe("2");
    expect(new URL(s.completeURL).searchParams.get("uploadId")).toBe(s.upload_id);
    expect(code(await ctx.api.call("POST", `/file/upload/${s.session_id}/0`, { body: "x" }))).toBe(
      40006,
    );
  });

  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3.5 * CHUNK]) {
    it(`uploads ${size} bytes and serves them back`, async () => {
      const body = bytes(size, size % 7);
      const path = `s3/size-${size}.bin`;
      const s = await session(ctx.api, path, size);
      expect(s.upload_urls).toHaveLength(Math.max(1, Math.ceil(size / CHUNK)));
      expect(ok(await info(ctx.api, path)).metadata?.["sys:upload_session_id"]).toBe(s.session_id);
      const etags = await putParts(s, body);
      expect((await completeUpload(s, completeBody(etags))).status).toBe(200);
      const r = await callback(ctx.api, s);
      expect([r.status, code(r)]).toEqual([200, 0]);
      const file = ok(await info(ctx.api, path));
      expect(file.size).toBe(size);
      expect(file.metadata?.["sys:upload_session_id"]).toBeUndefined();
      if (size > 0) expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, path))).toBe(true);
      expect(code(await callback(ctx.api, s))).toBe(40011);
    });
  }

  it("makes an upload with entity_type version the current version", async () => {
    await put(ctx.api, "s3/versioned.bin", "old");
    const s = ok(await startSession(ctx.api, "s3/versioned.bin", 5, { entity_type: "version" }));
    const etags = await putParts(s, new TextEncoder().encode("fresh"));
    expect((await completeUpload(s, completeBody(etags))).status).toBe(200);
    expect(code(await callback(ctx.api, s))).toBe(0);
    expect((await upstreamBytes(ctx.api, "s3/versioned.bin")).toString()).toBe("fresh");
  });

  it("stores PUT /file/content writes in the storage", async () => {
    await put(ctx.api, "s3/content.txt", "hello storage");
    const r = await ctx.api.call<{ urls: { url: string }[] }>("POST", "/file/url", {
      json: { uris: [myUri("s3/content.txt")] },
    });
    const url = ok(r).urls[0]!.url;
    expect(url.startsWith(`${ctx.emu.storageUrl}/`)).toBe(true);
    const res = await fetch(url, { headers: { range: "bytes=6-12" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe("bytes 6-12/13");
    expect(await res.text()).toBe("storage");
    const whole = await fetch(url);
    expect(whole.status).toBe(200);
    expect(whole.headers.get("content-length")).toBe("13");
    expect(whole.headers.get("etag")).toMatch(/^"[0-9a-f]{32}"$/);
    expect(await whole.text()).toBe("hello storage");
    // The method is signed, as with S3: a GET URL does not allow a HEAD.
    expect((await fetch(url, { method: "HEAD" })).status).toBe(403);
    const bad = await fetch(url, { headers: { range: "bytes=20-30" } });
    expect(bad.status).toBe(416);
    expect(bad.headers.get("content-range")).toBe("bytes */13");
  });

  it("serves a multipart object with a single range", async () => {
    const body = bytes(2 * CHUNK + 10, 3);
    await upload(ctx.api, "s3/ranged.bin", body);
    const r = await ctx.api.call<{ urls: { url: string }[] }>("POST", "/file/url", {
      json: { uris: [myUri("s3/ranged.bin")] },
    });
    const res = await fetch(ok(r).urls[0]!.url, { headers: { range: `bytes=${CHUNK - 5}-` } });
    expect(res.status).toBe(206);
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(body.subarray(CHUNK - 5)))).toBe(
      true,
    );
    expect(res.headers.get("etag")).toMatch(/^"[0-9a-f]{32}-3"$/);
  });

  it("refuses a tampered signature with 403 SignatureDoesNotMatch", async () => {
    const s = await session(ctx.api, "s3/tampered.bin", 10);
    const url = new URL(s.upload_urls[0]!);
    url.searchParams.set("partNumber", "2");
    const res = await putPart(url.toString(), bytes(10));
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
  });

  it("refuses an expired URL with 403 AccessDenied", async () => {
    const s = await session(ctx.api, "s3/expired.bin", 10);
    await advance(ctx.api, 86_400 + 10);
    const res = await putPart(s.upload_urls[0]!, bytes(10));
    expect(res.status).toBe(403);
    const text = await res.text();
    expect(text).toContain("<Code>AccessDenied</Code>");
    expect(text).toContain("<Message>Request has expired</Message>");
    const r = await callback(ctx.api, s);
    expect([r.status, code(r)]).toEqual([401, 40011]);
  });

  it("refuses a completion with a wrong ETag or out-of-order parts", async () => {
    const body = bytes(CHUNK + 1);
    const s = await session(ctx.api, "s3/bad-complete.bin", body.length);
    const etags = await putParts(s, body);
    const wrong = await completeUpload(s, completeBody([etags[0]!, '"0123"']));
    expect(wrong.status).toBe(400);
    expect(await wrong.text()).toContain("<Code>InvalidPart</Code>");
    const order = await completeUpload(s, completeBody([etags[1]!, etags[0]!], [2, 1]));
    expect(order.status).toBe(400);
    expect(await order.text()).toContain("<Code>InvalidPartOrder</Code>");
    const garbage = await completeUpload(
      s,
      "<CompleteMultipartUpload>junk</CompleteMultipartUpload>",
    );
    expect(garbage.status).toBe(400);
    expect(await garbage.text()).toContain("<Code>MalformedXML</Code>");
    // Quotes around ETags are optional.
    expect(
      (await completeUpload(s, completeBody(etags.map((e) => e.replace(/"/g, ""))))).status,
    ).toBe(200);
    expect(code(await callback(ctx.api, s))).toBe(0);
  });

  it("answers a callback before completion with 400 / 40055, a wrong key with 401 / 40020", async () => {
    const s = await session(ctx.api, "s3/early.bin", 10);
    await putParts(s, bytes(10));
    const early = await callback(ctx.api, s);
    expect([early.status, code(early)]).toEqual([400, 40055]);
    const wrongKey = await callback(ctx.api, s, "0".repeat(32));
    expect([wrongKey.status, code(wrongKey)]).toEqual([401, 40020]);
    const unknown = await ctx.api.call("GET", `/callback/s3/${crypto.randomUUID()}/x`, {
      auth: false,
    });
    expect([unknown.status, code(unknown)]).toEqual([401, 40011]);
  });

  it("cancel drops the parts and the placeholder", async () => {
    const s = await session(ctx.api, "s3/cancelled.bin", CHUNK + 1);
    await putPart(s.upload_urls[0]!, bytes(CHUNK));
    const r = await ctx.api.call("DELETE", "/file/upload", {
      json: { id: s.session_id, uri: myUri("s3/cancelled.bin") },
    });
    expect(code(r)).toBe(0);
    expect(code(await info(ctx.api, "s3/cancelled.bin"))).toBe(40016);
    const part = await putPart(s.upload_urls[1]!, bytes(1));
    expect(part.status).toBe(404);
    expect(await part.text()).toContain("<Code>NoSuchUpload</Code>");
  });

  it("counts storage traffic and applies storage fault rules", async () => {
    expect((await ctx.api.call("POST", "/__emulator/stats/reset")).status).toBe(200);
    await faults(ctx.api, [{ route: "PUT part", failWith: 503, times: 1 }]);
    const body = bytes(CHUNK + 1);
    const s = await session(ctx.api, "s3/stats.bin", body.length);
    expect((await putPart(s.upload_urls[0]!, body.subarray(0, CHUNK))).status).toBe(503);
    await faults(ctx.api, [{ failWith: 503 }]);
    const etags = await putParts(s, body);
    await faults(ctx.api, []);
    expect((await completeUpload(s, completeBody(etags))).status).toBe(200);
    expect(code(await callback(ctx.api, s))).toBe(0);
    await upstreamBytes(ctx.api, "s3/stats.bin");
    const stats = await storageStats(ctx.api);
    expect(stats.requests).toEqual({ "PUT part": 3, "POST complete": 1, "GET object": 1 });
    expect(stats.bytesIn).toBeGreaterThanOrEqual(body.length);
    expect(stats.bytesOut).toBeGreaterThanOrEqual(body.length);
    const api = await ctx.api.call<never>("GET", "/__emulator/stats");
    expect(
      (JSON.parse(api.text) as { requests: Record<string, number> }).requests[
        "GET /api/v4/callback/s3/:sessionId/:key"
      ],
    ).toBe(1);
  });
});

describe("s3 policy: the sentinel", () => {
  const dataDir = join(tmpdir(), `cloudreve-sentinel-${randomUUID()}`);
  const ctx = useEmulator({ policy: "s3", chunkSize: CHUNK, uploadSessionTtl: 600, dataDir });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));
  const objects = () => readdir(join(dataDir, "storage", "objects"));

  it("an upload completed at the storage but never called back is removed 5 min after expiry", async () => {
    const body = bytes(CHUNK + 10, 4);
    const s = await session(ctx.api, "sentinel/f.bin", body.length);
    const done = await completeUpload(s, completeBody(await putParts(s, body)));
    expect(done.status).toBe(200);
    // No callback: the object sits in the storage, the session waits.
    expect(await objects()).toHaveLength(1);
    const pending = async () =>
      ((await (await fetch(`${ctx.emu.url}/__emulator/locks`)).json()) as { uploads: unknown[] })
        .uploads.length;
    expect(await pending()).toBe(1);

    await advance(ctx.api, 600 + 299);
    expect(code(await ctx.api.call("GET", "/user/capacity"))).toBe(0);
    expect(await pending()).toBe(1);
    await advance(ctx.api, 2);
    expect(code(await ctx.api.call("GET", "/user/capacity"))).toBe(0);
    expect(await pending()).toBe(0);
    expect(await objects()).toHaveLength(0);
    // A late callback finds no session.
    expect((await callback(ctx.api, s)).status).toBe(401);
  });
});

describe("local policy", () => {
  const ctx = useEmulator();

  it("has no storage origin", async () => {
    expect(ctx.emu.storageUrl).toBeUndefined();
    const r = await ctx.api.call("GET", "/__emulator/stats");
    expect(JSON.parse(r.text)).not.toHaveProperty("storage");
  });
});
