/**
 * The qiniu storage policy: the emulator's Qiniu (multipart upload v2 with an UpToken, its
 * errors, the callback Qiniu makes to Cloudreve before it answers the completion) spoken to over
 * HTTP, then the gateway's uploader against it with faults on the storage and on the callback.
 * The generic size and overwrite matrix is test/policies/matrix.test.ts.
 */
import { createHash } from "node:crypto";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { request } from "undici";
import { R, resetStats, setFaults, type StorageSiteStats } from "../helpers/control.js";
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

const CHUNK = 64 * 1024;
const CALLBACK = "POST /api/v4/callback/qiniu/:sessionId/:key";

interface QiniuSession {
  session_id: string;
  upload_id: string;
  chunk_size: number;
  expires: number;
  upload_urls: string[];
  credential: string;
  callback_secret: string;
  mime_type: string;
}

interface PutPolicy {
  scope: string;
  deadline: number;
  callbackUrl: string;
  callbackBody: string;
  callbackBodyType: string;
  saveKey: string;
  forceSaveKey: boolean;
  fsizeLimit?: number;
}

type Stats = StorageSiteStats;

const policyOf = (s: QiniuSession) =>
  JSON.parse(Buffer.from(s.credential.split(":")[2]!, "base64").toString()) as PutPolicy;

async function session(api: Api, path: string, size: number): Promise<QiniuSession> {
  return ok(
    await api.call<QiniuSession>("PUT", "/file/upload", { json: { uri: myUri(path), size } }),
  );
}

/** One call to Qiniu; undici, since fetch refuses Qiniu's statuses above 599. */
async function qiniu(
  method: "PUT" | "POST",
  url: string,
  token: string | undefined,
  body: Uint8Array | string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(url, {
    method,
    body,
    headers: {
      "content-type": method === "PUT" ? "application/octet-stream" : "application/json",
      ...(token === undefined ? {} : { authorization: `UpToken ${token}` }),
    },
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

const putPart = (s: QiniuSession, n: number, body: Uint8Array, token = s.credential) =>
  qiniu("PUT", `${s.upload_urls[0]}/${n}`, token, body);

const complete = (s: QiniuSession, parts: unknown, token = s.credential) =>
  qiniu(
    "POST",
    s.upload_urls[0]!,
    token,
    typeof parts === "string" ? parts : JSON.stringify(parts),
  );

/** Every part of `body`, answering their etags in order. */
async function putParts(s: QiniuSession, body: Uint8Array): Promise<string[]> {
  const etags: string[] = [];
  for (let at = 0, n = 1; at < body.length || n === 1; at += s.chunk_size, n++) {
    const r = await putPart(s, n, body.subarray(at, at + s.chunk_size));
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    etags.push(r.json.etag as string);
  }
  return etags;
}

const partList = (etags: string[], numbers = etags.map((_, i) => i + 1)) => ({
  parts: etags.map((etag, i) => ({ etag, partNumber: numbers[i] })),
});

describe("qiniu storage, emulated", () => {
  const ctx = useEmulator({ policy: "qiniu", chunkSize: CHUNK, chunkConcurrency: 2 });
  const storageStats = async () =>
    ((await (await fetch(`${ctx.emu.url}/__emulator/stats`)).json()) as Stats).storage;

  it("hands out the upload's base URL and an UpToken scoped to the object, with the callback", async () => {
    const s = await session(ctx.api, "qiniu/shape.bin", 2 * CHUNK + 1);
    expect(s.chunk_size).toBe(CHUNK);
    expect(s.mime_type).toBe("application/octet-stream");
    expect(s.upload_urls).toHaveLength(1);
    const m = /^(.+)\/buckets\/cloudreve\/objects\/([A-Za-z0-9_=-]+)\/uploads\/([^/]+)$/.exec(
      s.upload_urls[0]!,
    );
    expect(m?.[1]).toBe(ctx.emu.storageUrl);
    expect(m?.[3]).toBe(s.upload_id);
    const key = Buffer.from(m![2]!, "base64url").toString();
    expect(s.credential.split(":")).toHaveLength(3);
    const policy = policyOf(s);
    expect(policy).toMatchObject({
      scope: `cloudreve:${key}`,
      saveKey: key,
      forceSaveKey: true,
      fsizeLimit: 2 * CHUNK + 1,
      callbackUrl: `${ctx.emu.url}/api/v4/callback/qiniu/${s.session_id}/${s.callback_secret}`,
      callbackBodyType: "application/json",
    });
    // Cloudreve hands the SDK an absolute expiry where it takes a TTL: now is added again.
    expect(policy.deadline).toBeGreaterThan(s.expires + 1_000_000_000);
  });

  it("parts answer etag and md5; the completion answers with Cloudreve's callback answer", async () => {
    await resetStats(ctx.emu.url);
    const body = bytes(2 * CHUNK + 100, 5);
    const s = await session(ctx.api, "qiniu/flow.bin", body.length);
    // Parts may arrive in any order; each answer carries Qiniu's etag and the part's MD5.
    const last = await putPart(s, 3, body.subarray(2 * CHUNK));
    expect(last.status).toBe(200);
    expect(last.json.md5).toBe(
      createHash("md5")
        .update(body.subarray(2 * CHUNK))
        .digest("hex"),
    );
    expect(last.json.etag).toMatch(/^F[A-Za-z0-9_-]{27}$/);
    const etags = [
      (await putPart(s, 1, body.subarray(0, CHUNK))).json.etag as string,
      (await putPart(s, 2, body.subarray(CHUNK, 2 * CHUNK))).json.etag as string,
      last.json.etag as string,
    ];
    const done = await complete(s, { ...partList(etags), mimeType: "application/x-test" });
    expect(done.status).toBe(200);
    expect(done.json.code).toBe(0);
    const file = ok(await info(ctx.api, "qiniu/flow.bin"));
    expect(file.size).toBe(body.length);
    expect(file.metadata?.["sys:upload_session_id"]).toBeUndefined();
    expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, "qiniu/flow.bin"))).toBe(true);
    // The upload id went with the completion.
    const again = await complete(s, partList(etags));
    expect([again.status, again.json.error]).toEqual([612, "no such uploadId"]);
    const stats = (await (await fetch(`${ctx.emu.url}/__emulator/stats`)).json()) as Stats;
    expect(stats.storage.requests).toEqual({ "PUT part": 3, "POST complete": 2, "GET object": 1 });
    expect(stats.requests[CALLBACK]).toBe(1);
    expect(stats.storage.bytesIn).toBeGreaterThanOrEqual(body.length);
  });

  it("refuses a missing, tampered or foreign UpToken and an unknown upload id", async () => {
    const s = await session(ctx.api, "qiniu/token.bin", 10);
    const other = await session(ctx.api, "qiniu/token-other.bin", 10);
    const missing = await qiniu("PUT", `${s.upload_urls[0]}/1`, undefined, bytes(10));
    expect([missing.status, missing.json.error]).toEqual([401, "bad token"]);
    const [ak, sign, policy] = s.credential.split(":");
    const forged = Buffer.from(JSON.stringify({ ...policyOf(s), fsizeLimit: 1 << 30 })).toString(
      "base64url",
    );
    for (const token of [`${ak}:${sign}:${forged}`, `${ak}:${sign!.slice(1)}x:${policy}`]) {
      const r = await putPart(s, 1, bytes(10), token);
      expect([r.status, r.json.error]).toEqual([401, "bad token"]);
    }
    const foreign = await putPart(s, 1, bytes(10), other.credential);
    expect([foreign.status, foreign.json.error]).toEqual([403, "key doesn't match with scope"]);
    const unknown = await qiniu(
      "PUT",
      `${s.upload_urls[0]!.replace(s.upload_id, other.upload_id)}/1`,
      s.credential,
      bytes(10),
    );
    expect([unknown.status, unknown.json.error]).toEqual([612, "no such uploadId"]);
    expect((await putPart(s, 10_001, bytes(10))).status).toBe(400);
    expect((await putPart(s, 1, bytes(10))).status).toBe(200);
  });

  it("checks the part list: etags, ascending numbers, JSON, and the UpToken's size limit", async () => {
    const body = bytes(CHUNK + 1, 7);
    const s = await session(ctx.api, "qiniu/parts.bin", body.length);
    const etags = await putParts(s, body);
    for (const [parts, why] of [
      [partList([etags[0]!, etags[0]!]), "part 2 not found or etag mismatch"],
      [partList([etags[1]!, etags[0]!], [2, 1]), "partNumber must be ascending"],
      [partList([]), "parts must not be empty"],
      [{ parts: [{ partNumber: 1 }] }, "each part needs an etag and a partNumber"],
      ["{not json", "invalid request body: not JSON"],
    ] as const) {
      const r = await complete(s, parts);
      expect([r.status, r.json.error]).toEqual([400, why]);
    }
    // A third part makes the object larger than the UpToken's fsizeLimit.
    const extra = await putPart(s, 3, bytes(1));
    const tooLarge = await complete(s, partList([...etags, extra.json.etag as string]));
    expect([tooLarge.status, tooLarge.json.error]).toEqual([413, "exceed FsizeLimit"]);
    const done = await complete(s, partList(etags));
    expect([done.status, done.json.code]).toEqual([200, 0]);
    expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, "qiniu/parts.bin"))).toBe(true);
  });

  it("answers 579 when Cloudreve refuses the callback; cancelling then removes the upload", async () => {
    const s = await session(ctx.api, "qiniu/refused.bin", 10);
    const etags = await putParts(s, bytes(10));
    await setFaults(ctx.emu.url, [{ route: CALLBACK, failWith: 500 }]);
    const r = await complete(s, partList(etags));
    await setFaults(ctx.emu.url, []);
    expect(r.status).toBe(579);
    expect(r.json.error).toMatch(/^callback failed: HTTP 500/);
    expect(ok(await info(ctx.api, "qiniu/refused.bin")).metadata?.["sys:upload_session_id"]).toBe(
      s.session_id,
    );
    const cancel = await ctx.api.call("DELETE", "/file/upload", {
      json: { id: s.session_id, uri: myUri("qiniu/refused.bin") },
    });
    expect(code(cancel)).toBe(0);
    expect(await upstreamInfo(ctx.api, "qiniu/refused.bin")).toBeUndefined();
    expect((await putPart(s, 1, bytes(10))).status).toBe(612);
  });

  it("counts storage requests under their operation names and applies storage faults", async () => {
    await resetStats(ctx.emu.url);
    const s = await session(ctx.api, "qiniu/faults.bin", 10);
    await setFaults(ctx.emu.url, [{ route: "PUT part", failWith: 503, times: 1 }]);
    expect((await request(`${s.upload_urls[0]}/1`, { method: "PUT", body: "x" })).statusCode).toBe(
      503,
    );
    await setFaults(ctx.emu.url, []);
    const etags = await putParts(s, bytes(10));
    expect((await complete(s, partList(etags))).status).toBe(200);
    expect((await storageStats()).requests).toEqual({ "PUT part": 2, "POST complete": 1 });
  });
});

describe("qiniu UpToken deadline", () => {
  const ctx = useEmulator({ policy: "qiniu", chunkSize: CHUNK });

  it("outlives the session (parts still go in, the callback then fails), and expires after", async () => {
    const s = await session(ctx.api, "qiniu/deadline.bin", 10);
    await advance(ctx.api, 86_400 + 60);
    const etags = await putParts(s, bytes(10));
    const late = await complete(s, partList(etags));
    // Qiniu stored the object; Cloudreve no longer knows the session.
    expect(late.status).toBe(579);
    expect(late.json.error).toMatch(/HTTP 401/);
    const s2 = await session(ctx.api, "qiniu/deadline-2.bin", 10);
    await advance(ctx.api, policyOf(s2).deadline - Math.floor(Date.now() / 1000));
    const expired = await putPart(s2, 1, bytes(10));
    expect([expired.status, expired.json.error]).toEqual([401, "expired token"]);
  });
});

describe("qiniu policy through the gateway", () => {
  const fx = useGateway(
    { policy: "qiniu", chunkSize: CHUNK, chunkConcurrency: 2 },
    { cacheTtlSeconds: 0, directUploadMaxBytes: 0 },
  );
  let api: Api;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });
  beforeEach(async () => {
    await setFaults(fx.emu.url, []);
    await resetStats(fx.emu.url);
  });
  const stats = async () => (await (await fetch(`${fx.emu.url}/__emulator/stats`)).json()) as Stats;

  it("a part and the completion failing with 5xx are each retried; the file is stored", async () => {
    const body = content(3 * CHUNK + 5, 1);
    await setFaults(fx.emu.url, [
      { route: "PUT part", failWith: 503, times: 1 },
      { route: "POST complete", failWith: 502, times: 1 },
    ]);
    expect((await dav(`${fx.url}/qiniu-retry.bin`, "PUT", { body })).status).toBe(201);
    const s = await stats();
    expect(s.storage.requests["PUT part"]).toBe(4 + 1);
    expect(s.storage.requests["POST complete"]).toBe(2);
    expect(s.requests[CALLBACK]).toBe(1);
    await expectStored(api, "qiniu-retry.bin", body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a completion whose answer is lost: the retry meets 612, Cloudreve shows the file", async () => {
    const body = content(2 * CHUNK, 2);
    await setFaults(fx.emu.url, [
      { route: "POST complete", failWith: "reset", afterBytes: 0, times: 1 },
    ]);
    expect((await dav(`${fx.url}/qiniu-lost.bin`, "PUT", { body })).status).toBe(201);
    const s = await stats();
    expect(s.storage.requests["POST complete"]).toBe(2);
    expect(s.requests[CALLBACK]).toBe(1);
    expect(s.requests[R.cancel] ?? 0).toBe(0);
    await expectStored(api, "qiniu-lost.bin", body);
    await expectNothingLeft(fx.emu.url);
  });

  it("Cloudreve refusing Qiniu's callback fails the PUT: old content kept, nothing left", async () => {
    const old = content(CHUNK + 3, 3);
    expect((await dav(`${fx.url}/qiniu-refused.bin`, "PUT", { body: old })).status).toBe(201);
    await resetStats(fx.emu.url);
    await setFaults(fx.emu.url, [{ route: CALLBACK, failWith: 500 }]);
    const r = await dav(`${fx.url}/qiniu-refused.bin`, "PUT", { body: content(2 * CHUNK, 4) });
    expect([502, 503]).toContain(r.status);
    const fresh = await dav(`${fx.url}/qiniu-refused-new.bin`, "PUT", {
      body: content(CHUNK, 5),
    });
    await setFaults(fx.emu.url, []);
    expect([502, 503]).toContain(fresh.status);
    const s = await stats();
    expect(s.requests[CALLBACK]).toBe(2);
    // A 579 is Qiniu's answer, not an outage: each completion is sent once.
    expect(s.storage.requests["POST complete"]).toBe(2);
    expect(s.requests[R.cancel]).toBe(2);
    await expectStored(api, "qiniu-refused.bin", old);
    expect(await upstreamInfo(api, "qiniu-refused-new.bin")).toBeUndefined();
    await expectNothingLeft(fx.emu.url);
  });
});
