/**
 * The remote (slave node) storage policy. First the emulated slave's protocol over HTTP: the
 * session's upload URL and signed credential, the credential and length checks, chunks out of
 * order, completion by the slave's own signed callback to Cloudreve and the relay of its
 * failure, cancel. Then what the gateway does about the remote-only faults: a chunk whose
 * answer is lost, a callback that fails or whose answer is lost. The generic size and overwrite
 * matrix is in matrix.test.ts.
 */
import { randomUUID } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  R,
  resetStats,
  setFaults,
  type FaultRule,
  type StorageSiteStats,
} from "../helpers/control.js";
import {
  advance,
  Api,
  bytes,
  code,
  expectStored,
  info,
  myUri,
  ok,
  put,
  upstreamBytes,
  upstreamInfo,
  useEmulator,
} from "../helpers/emulator.js";
import { content, dav, expectNothingLeft } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";

const CHUNK = 64 * 1024;
const CALLBACK = "POST /api/v4/callback/remote/:sessionId/:key";

interface RemoteSession {
  session_id: string;
  upload_id: string;
  chunk_size: number;
  expires: number;
  upload_urls: string[];
  credential: string;
  callback_secret: string;
  storage_policy: { type: string; relay: boolean; chunk_concurrency: number };
}

type Stats = StorageSiteStats;

interface SlaveEnvelope {
  code: number;
  msg: string;
  data?: unknown;
}

async function statsOf(base: string): Promise<Stats> {
  return (await (await fetch(`${base}/__emulator/stats`)).json()) as Stats;
}

describe("remote policy: the slave node", () => {
  const dataDir = join(tmpdir(), `cloudreve-remote-${randomUUID()}`);
  const ctx = useEmulator({ policy: "remote", chunkSize: CHUNK, chunkConcurrency: 3, dataDir });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));
  beforeEach(async () => {
    await setFaults(ctx.emu.url, []);
    await resetStats(ctx.emu.url);
  });
  const stats = () => statsOf(ctx.emu.url);
  const onDisk = (dir: "parts" | "objects") => readdir(join(dataDir, "storage", dir));

  async function session(path: string, size: number, extra = {}): Promise<RemoteSession> {
    return ok(
      await ctx.api.call<RemoteSession>("PUT", "/file/upload", {
        json: { uri: myUri(path), size, ...extra },
      }),
    );
  }

  /** One chunk POSTed to the slave; the answer is always HTTP 200 with an envelope. */
  async function postChunk(
    s: RemoteSession,
    index: number | string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    headers: Record<string, string> = { authorization: s.credential },
  ): Promise<SlaveEnvelope> {
    const res = await fetch(`${s.upload_urls[0]}?chunk=${index}`, {
      method: "POST",
      body,
      headers: { "content-type": "application/octet-stream", ...headers },
      duplex: "half",
    } as RequestInit);
    const text = await res.text();
    expect(res.status, text).toBe(200);
    return JSON.parse(text) as SlaveEnvelope;
  }

  const chunkOf = (body: Uint8Array, i: number) => body.subarray(i * CHUNK, (i + 1) * CHUNK);
  const chunksOf = (size: number) => Math.max(1, Math.ceil(size / CHUNK));

  it("answers the slave's upload URL and a credential signed until the session expires", async () => {
    const s = await session("remote/shape.bin", 3 * CHUNK);
    expect(s.storage_policy).toMatchObject({ type: "remote", relay: false, chunk_concurrency: 3 });
    expect(s.chunk_size).toBe(CHUNK);
    expect(s.upload_id).toBe("");
    expect(s.upload_urls).toEqual([`${ctx.emu.storageUrl}/api/v4/slave/upload/${s.session_id}`]);
    // HMACAuth.Sign: padded URL-safe base64 of the HMAC, ":" and the expiry in unix seconds.
    const m = /^Bearer Cr ([A-Za-z0-9_-]{43}=):(\d+)$/.exec(s.credential);
    expect(m, s.credential).not.toBeNull();
    expect(Number(m![2])).toBe(s.expires);
    // Data goes to the node, never through Cloudreve.
    const toMaster = await ctx.api.call("POST", `/file/upload/${s.session_id}/0`, { body: "x" });
    expect(code(toMaster)).toBe(40006);
  });

  for (const size of [0, 1, CHUNK, 3.5 * CHUNK]) {
    it(`uploads ${size} B chunk by chunk; the request with the last one completes`, async () => {
      const path = `remote/size-${size}.bin`;
      const body = bytes(size, size % 5);
      const s = await session(path, size);
      const n = chunksOf(size);
      for (let i = 0; i < n; i++) {
        expect(ok(await info(ctx.api, path)).metadata?.["sys:upload_session_id"]).toBe(
          s.session_id,
        );
        // No data, even on the last chunk: the client asks Cloudreve for the file.
        expect(await postChunk(s, i, chunkOf(body, i))).toEqual({ code: 0, msg: "" });
      }
      const file = ok(await info(ctx.api, path));
      expect(file.size).toBe(size);
      expect(file.metadata?.["sys:upload_session_id"]).toBeUndefined();
      if (size > 0) expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, path))).toBe(true);
      // The slave dropped its session on completion.
      expect((await postChunk(s, 0, chunkOf(body, 0))).code).toBe(40011);
      const st = await stats();
      expect(st.storage.requests["POST chunk"]).toBe(n + 1);
      expect(st.requests[CALLBACK]).toBe(1);
      expect(st.requests[R.chunk] ?? 0).toBe(0);
      // The refused re-send's body is dropped unread.
      expect(st.storage.bytesIn).toBe(size);
    });
  }

  it("takes chunks out of order and in parallel; a re-sent chunk is idempotent", async () => {
    const path = "remote/out-of-order.bin";
    const body = bytes(4 * CHUNK + 10, 3);
    const s = await session(path, body.length);
    expect((await postChunk(s, 4, chunkOf(body, 4))).code).toBe(0);
    expect((await postChunk(s, 2, chunkOf(body, 2))).code).toBe(0);
    expect((await postChunk(s, 2, chunkOf(body, 2))).code).toBe(0);
    expect(ok(await info(ctx.api, path)).size).toBe(0);
    expect((await stats()).requests[CALLBACK] ?? 0).toBe(0);
    const rest = await Promise.all([0, 3, 1].map((i) => postChunk(s, i, chunkOf(body, i))));
    expect(rest.map((e) => e.code)).toEqual([0, 0, 0]);
    await expectStored(ctx.api, path, Buffer.from(body));
    expect((await stats()).requests[CALLBACK]).toBe(1);
  });

  it("refuses a missing, forged, foreign or expired credential (HTTP 200 envelopes)", async () => {
    const s = await session("remote/credential.bin", 10);
    const other = await session("remote/credential-other.bin", 10);
    const chunk = bytes(10);
    const [signature, expires] = s.credential.slice("Bearer Cr ".length).split(":");
    const refused = async (headers: Record<string, string>) => {
      const e = await postChunk(s, 0, chunk, headers);
      return [e.code, e.msg];
    };
    expect(await refused({})).toEqual([403, "authorization header is missing"]);
    expect(await refused({ authorization: `Bearer Cr ${signature}` })).toEqual([
      40071,
      "sign expired",
    ]);
    expect(await refused({ authorization: `Bearer Cr ${signature}:` })).toEqual([
      403,
      "expire timestamp is missing",
    ]);
    // The expiry is signed too; another session's credential names another path.
    expect(
      await refused({ authorization: `Bearer Cr ${signature}:${Number(expires) + 1}` }),
    ).toEqual([40071, "invalid sign"]);
    expect(await refused({ authorization: other.credential })).toEqual([40071, "invalid sign"]);
    // X-Cr-* headers are signed: a client must not add any.
    expect(await refused({ authorization: s.credential, "x-cr-node-id": "1" })).toEqual([
      40071,
      "invalid sign",
    ]);
    expect(await info(ctx.api, "remote/credential.bin").then((r) => ok(r).size)).toBe(0);

    await advance(ctx.api, 86_400 + 1);
    expect(await refused({ authorization: s.credential })).toEqual([40005, "signature expired"]);
    expect((await stats()).requests[CALLBACK] ?? 0).toBe(0);
  });

  it("checks each chunk's declared length; an index past the end cannot match", async () => {
    const path = "remote/lengths.bin";
    const body = bytes(2 * CHUNK + 5, 4);
    const s = await session(path, body.length);
    const short = await postChunk(s, 0, chunkOf(body, 0).subarray(1));
    expect([short.code, short.msg]).toEqual([40013, `Invalid Content-Length (expected: ${CHUNK})`]);
    const last = await postChunk(s, 2, body.subarray(2 * CHUNK, 2 * CHUNK + 4));
    expect([last.code, last.msg]).toEqual([40013, "Invalid Content-Length (expected: 5)"]);
    // No range check on the slave: past the end the expected length is negative.
    const beyond = await postChunk(s, 3, bytes(5));
    expect([beyond.code, beyond.msg]).toEqual([
      40013,
      `Invalid Content-Length (expected: ${5 - CHUNK})`,
    ]);
    // An index that is not a number is chunk 0 (strconv.Atoi's error ignored).
    expect((await postChunk(s, "first", chunkOf(body, 0))).code).toBe(0);
    // A body of unknown length declares it with X-Expected-Entity-Length, as the web UI's
    // encrypted stream does.
    const stream = new Blob([chunkOf(body, 1)]).stream();
    const streamed = await postChunk(s, 1, stream, {
      authorization: s.credential,
      "x-expected-entity-length": String(CHUNK),
    });
    expect(streamed.code).toBe(0);
    expect((await postChunk(s, 2, chunkOf(body, 2))).code).toBe(0);
    await expectStored(ctx.api, path, Buffer.from(body));
  });

  it("relays a failed callback; the slave keeps its session, so a re-send answers 0 without completing", async () => {
    const path = "remote/callback-500.bin";
    const body = bytes(CHUNK + 1, 6);
    const objects = (await onDisk("objects")).length;
    const s = await session(path, body.length);
    expect((await postChunk(s, 0, chunkOf(body, 0))).code).toBe(0);
    await setFaults(ctx.emu.url, [{ route: CALLBACK, failWith: 500, times: 1 }]);
    const failed = await postChunk(s, 1, chunkOf(body, 1));
    expect([failed.code, failed.msg]).toEqual([
      50007,
      "Slave cannot parse callback response from master (StatusCode=500).",
    ]);
    expect(ok(await info(ctx.api, path)).metadata?.["sys:upload_session_id"]).toBe(s.session_id);
    // Every chunk is marked: the re-send succeeds yet nothing calls Cloudreve back again.
    expect(await postChunk(s, 1, chunkOf(body, 1))).toEqual({ code: 0, msg: "" });
    expect((await stats()).requests[CALLBACK]).toBe(1);
    expect(ok(await info(ctx.api, path)).size).toBe(0);
    expect(await onDisk("objects")).toHaveLength(objects + 1);
    // Whoever else knows the callback URL cannot complete it: the node's signature is checked.
    const callbackUrl = `${ctx.emu.url}/api/v4/callback/remote/${s.session_id}/${s.callback_secret}`;
    const forged = await fetch(callbackUrl, { method: "POST" });
    expect(forged.status).toBe(401);
    expect(ok(await info(ctx.api, path)).size).toBe(0);

    // Cancel has Cloudreve delete the slave's session and its file.
    const r = await ctx.api.call("DELETE", "/file/upload", {
      json: { id: s.session_id, uri: myUri(path) },
    });
    expect(code(r)).toBe(0);
    expect(await upstreamInfo(ctx.api, path)).toBeUndefined();
    expect(await onDisk("objects")).toHaveLength(objects);
    expect(await onDisk("parts")).not.toContain(encodeURIComponent(s.session_id));
    expect((await postChunk(s, 0, chunkOf(body, 0))).code).toBe(40011);

    // A callback that cannot be sent at all.
    const again = await session(path, 3);
    await setFaults(ctx.emu.url, [{ route: CALLBACK, failWith: "reset", times: 1 }]);
    const unsent = await postChunk(again, 0, bytes(3));
    expect([unsent.code, unsent.msg]).toEqual([50007, "Slave cannot send callback request"]);
    await ctx.api.call("DELETE", "/file/upload", {
      json: { id: again.session_id, uri: myUri(path) },
    });
  });

  it("a callback whose answer is lost: the slave relays 50007, Cloudreve has completed", async () => {
    const path = "remote/callback-lost.bin";
    const body = bytes(100, 7);
    const s = await session(path, body.length);
    await setFaults(ctx.emu.url, [{ route: CALLBACK, failWith: "reset", afterBytes: 0, times: 1 }]);
    expect((await postChunk(s, 0, body)).code).toBe(50007);
    await expectStored(ctx.api, path, Buffer.from(body));
  });

  it("cancel mid-upload deletes the slave's session and its partial file", async () => {
    const path = "remote/cancelled.bin";
    const body = bytes(2 * CHUNK, 8);
    const s = await session(path, body.length);
    const dir = encodeURIComponent(s.session_id);
    expect(await onDisk("parts")).toContain(dir);
    expect((await postChunk(s, 0, chunkOf(body, 0))).code).toBe(0);
    const r = await ctx.api.call("DELETE", "/file/upload", {
      json: { id: s.session_id, uri: myUri(path) },
    });
    expect(code(r)).toBe(0);
    expect(await onDisk("parts")).not.toContain(dir);
    expect((await postChunk(s, 1, chunkOf(body, 1))).code).toBe(40011);
    expect(code(await info(ctx.api, path))).toBe(40016);
  });

  it("counts the node's traffic and applies storage fault rules to POST chunk", async () => {
    await setFaults(ctx.emu.url, [{ route: "POST chunk", failWith: 503, times: 1 }]);
    const s = await session("remote/faulty.bin", 10);
    const res = await fetch(`${s.upload_urls[0]}?chunk=0`, {
      method: "POST",
      body: bytes(10),
      headers: { authorization: s.credential },
    });
    expect(res.status).toBe(503);
    expect((await postChunk(s, 0, bytes(10))).code).toBe(0);
    const st = await stats();
    expect(st.storage.requests).toEqual({ "POST chunk": 2 });
    expect(st.requests[CALLBACK]).toBe(1);
  });
});

describe.each([1, 3])("remote policy through the gateway, chunk_concurrency %i", (concurrency) => {
  const fx = useGateway(
    { policy: "remote", chunkSize: CHUNK, chunkConcurrency: concurrency },
    { cacheTtlSeconds: 0, directUploadMaxBytes: 0 },
  );
  let api: Api;
  let seq = 0;
  const fresh = (label: string) => `remote-${concurrency}-${label}-${++seq}.bin`;
  const stats = () => statsOf(fx.emu.url);
  const faults = (rules: FaultRule[]) => setFaults(fx.emu.url, rules);
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });
  beforeEach(async () => {
    await faults([]);
    await resetStats(fx.emu.url);
  });

  it("chunks answered 5xx are retried on their own; the slave completes once", async () => {
    const path = fresh("retry");
    const body = content(3 * CHUNK + 7, 1);
    await faults([{ route: "POST chunk", failWith: 503, times: 2 }]);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body })).status).toBe(201);
    const st = await stats();
    expect(st.storage.requests["POST chunk"]).toBe(4 + 2);
    expect(st.requests[CALLBACK]).toBe(1);
    expect(st.requests[R.cancel] ?? 0).toBe(0);
    await expectStored(api, path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a chunk whose answer is lost is re-sent; the upload completes once", async () => {
    const path = fresh("lost-first");
    const body = content(2 * CHUNK + 1, 2);
    await faults([{ route: "POST chunk", failWith: "reset", afterBytes: 0, times: 1 }]);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body })).status).toBe(201);
    expect((await stats()).storage.requests["POST chunk"]).toBe(3 + 1);
    await expectStored(api, path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("the last chunk's answer lost: the re-send finds the session gone, the file is complete", async () => {
    const path = fresh("lost-last");
    const old = content(5000, 3);
    await put(api, path, old);
    // One chunk: the request that carries it completes the upload.
    const body = content(CHUNK - 1, 4);
    await faults([{ route: "POST chunk", failWith: "reset", afterBytes: 0, times: 1 }]);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body })).status).toBe(204);
    const st = await stats();
    expect(st.storage.requests["POST chunk"]).toBe(2);
    expect(st.requests[CALLBACK]).toBe(1);
    expect(st.requests[R.cancel] ?? 0).toBe(0);
    await expectStored(api, path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a failing callback fails the PUT: session cancelled, nothing left, old content kept", async () => {
    const path = fresh("callback-fails");
    const old = content(CHUNK + 3, 5);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: old })).status).toBe(201);
    await resetStats(fx.emu.url);
    await faults([{ route: CALLBACK, failWith: 500 }]);
    const r = await dav(`${fx.url}/${path}`, "PUT", { body: content(3 * CHUNK, 6) });
    expect([502, 503]).toContain(r.status);
    const st = await stats();
    // The relayed failure is not retried: a re-sent chunk could not complete any more.
    expect(st.storage.requests["POST chunk"]).toBe(3);
    expect(st.requests[CALLBACK]).toBe(1);
    expect(st.requests[R.cancel]).toBe(1);
    await faults([]);
    await expectStored(api, path, old);
    await expectNothingLeft(fx.emu.url);

    const brandNew = fresh("callback-fails-new");
    await faults([{ route: CALLBACK, failWith: "reset" }]);
    const failed = await dav(`${fx.url}/${brandNew}`, "PUT", { body: content(CHUNK, 7) });
    await faults([]);
    expect([502, 503]).toContain(failed.status);
    expect(await upstreamInfo(api, brandNew)).toBeUndefined();
    await expectNothingLeft(fx.emu.url);
  });

  it("a callback whose answer the slave lost: Cloudreve completed, the PUT succeeds", async () => {
    const path = fresh("callback-lost");
    const body = content(2 * CHUNK + 9, 8);
    await faults([{ route: CALLBACK, failWith: "reset", afterBytes: 0, times: 1 }]);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body })).status).toBe(201);
    const st = await stats();
    expect(st.requests[CALLBACK]).toBe(1);
    expect(st.requests[R.cancel] ?? 0).toBe(0);
    await expectStored(api, path, body);
    await expectNothingLeft(fx.emu.url);
  });
});
