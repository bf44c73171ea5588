/**
 * The upyun storage policy: the emulator's Upyun form API (the signed policy, the field order,
 * the length checks, the answer and then the asynchronous notify to Cloudreve) spoken to over
 * HTTP, then the gateway's uploader against it: one streamed form per file, resent whole from
 * the kept bytes, and a wait for the notify. The generic size and overwrite matrix is
 * test/policies/matrix.test.ts.
 */
import { Readable } from "node:stream";
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
import { until } from "../helpers/wait.js";

const CHUNK = 64 * 1024;
const CALLBACK = "POST /api/v4/callback/upyun/:sessionId/:key";

interface UpyunSession {
  session_id: string;
  upload_id: string;
  chunk_size: number;
  expires: number;
  upload_urls: string[];
  upload_policy: string;
  credential: string;
  callback_secret: string;
  mime_type: string;
}

type Stats = StorageSiteStats;

const decode = (policy: string) =>
  JSON.parse(Buffer.from(policy, "base64").toString()) as Record<string, unknown>;

async function session(api: Api, path: string, size: number): Promise<UpyunSession> {
  return ok(
    await api.call<UpyunSession>("PUT", "/file/upload", { json: { uri: myUri(path), size } }),
  );
}

type Field = [name: string, value: string | Uint8Array];

/** A multipart/form-data body with the fields in the order given; `file` is sent as a file. */
function form(fields: Field[]): { body: Buffer; type: string } {
  const boundary = "----upyun-test-boundary";
  const pieces = fields.flatMap(([name, value]) => [
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"` +
        (name === "file" ? `; filename="blob"\r\nContent-Type: application/octet-stream` : "") +
        "\r\n\r\n",
    ),
    Buffer.from(value),
    Buffer.from("\r\n"),
  ]);
  return {
    body: Buffer.concat([...pieces, Buffer.from(`--${boundary}--\r\n`)]),
    type: `multipart/form-data; boundary=${boundary}`,
  };
}

/** The fields the web UI sends, in its order. */
const fieldsOf = (s: UpyunSession, file: Uint8Array): Field[] => [
  ["policy", s.upload_policy],
  ["authorization", s.credential],
  ["content-type", s.mime_type],
  ["file", file],
];

async function post(
  url: string,
  fields: Field[],
): Promise<{ status: number; json: Record<string, unknown> }> {
  const { body, type } = form(fields);
  const res = await request(url, { method: "POST", body, headers: { "content-type": type } });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

/** Upyun's notify reaches Cloudreve after the form's answer: wait until the file is complete. */
async function completed(api: Api, path: string): Promise<void> {
  await until(
    `Cloudreve to complete ${path}`,
    async () => ok(await info(api, path)).metadata?.["sys:upload_session_id"] === undefined,
    10_000,
  );
}

describe("upyun storage, emulated", () => {
  const ctx = useEmulator({ policy: "upyun", chunkSize: CHUNK });
  const stats = async () =>
    (await (await fetch(`${ctx.emu.url}/__emulator/stats`)).json()) as Stats;

  it("hands out one form URL, a signed policy for the object and no chunking", async () => {
    const s = await session(ctx.api, "upyun/shape.bin", 3 * CHUNK);
    expect(s.chunk_size).toBe(0);
    expect(s.upload_id).toBe("");
    expect(s.upload_urls).toEqual([`${ctx.emu.storageUrl}/cloudreve`]);
    expect(s.mime_type).toBe("application/octet-stream");
    expect(s.credential).toMatch(/^UPYUN [^:]+:[A-Za-z0-9+/]{27}=$/);
    const policy = decode(s.upload_policy);
    expect(policy).toEqual({
      bucket: "cloudreve",
      "save-key": expect.stringMatching(/^uploads\//) as unknown,
      expiration: s.expires,
      "notify-url": `${ctx.emu.url}/api/v4/callback/upyun/${s.session_id}/${s.callback_secret}`,
      "content-length": 3 * CHUNK,
      "content-length-range": `0,${3 * CHUNK}`,
    });
  });

  it("stores the file, answers the form, then notifies Cloudreve", async () => {
    await resetStats(ctx.emu.url);
    const body = bytes(2 * CHUNK + 9, 3);
    const s = await session(ctx.api, "upyun/flow.bin", body.length);
    const r = await post(s.upload_urls[0]!, fieldsOf(s, body));
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      code: 200,
      message: "ok",
      url: decode(s.upload_policy)["save-key"],
    });
    await completed(ctx.api, "upyun/flow.bin");
    const file = ok(await info(ctx.api, "upyun/flow.bin"));
    expect(file.size).toBe(body.length);
    expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, "upyun/flow.bin"))).toBe(true);
    const s2 = await stats();
    expect(s2.storage.requests).toEqual({ "POST form": 1, "GET object": 1 });
    expect(s2.storage.bytesIn).toBeGreaterThan(body.length);
    expect(s2.requests[CALLBACK]).toBe(1);
  });

  it("refuses a policy the signature does not cover, and forms without policy or signature", async () => {
    const s = await session(ctx.api, "upyun/sign.bin", 10);
    const other = await session(ctx.api, "upyun/sign-other.bin", 10);
    const url = s.upload_urls[0]!;
    const file: Field = ["file", bytes(10)];
    const forged = Buffer.from(
      JSON.stringify({ ...decode(s.upload_policy), "content-length-range": "0,99999" }),
    ).toString("base64");
    for (const fields of [
      [["policy", forged], ["authorization", s.credential], file],
      [["policy", s.upload_policy], ["authorization", other.credential], file],
    ] as Field[][]) {
      const r = await post(url, fields);
      expect([r.status, r.json.message]).toEqual([401, "signature error"]);
      expect(r.json.code).toBe(401);
    }
    const cases: [Field[], number, string][] = [
      [[["authorization", s.credential], file], 400, "need policy"],
      [[["policy", s.upload_policy], file], 400, "need signature"],
      [[["policy", "!!!"], ["authorization", s.credential], file], 400, "decode policy error"],
      [
        [
          ["policy", s.upload_policy],
          ["authorization", s.credential],
        ],
        400,
        "need file",
      ],
    ];
    for (const [fields, status, message] of cases) {
      const r = await post(url, fields);
      expect([r.status, r.json.message]).toEqual([status, message]);
    }
    expect(ok(await info(ctx.api, "upyun/sign.bin")).metadata?.["sys:upload_session_id"]).toBe(
      s.session_id,
    );
  });

  it("wants the file last and checks its length against the policy", async () => {
    const s = await session(ctx.api, "upyun/order.bin", 10);
    const url = s.upload_urls[0]!;
    const [policy, authorization, type] = fieldsOf(s, bytes(10));
    const cases: [Field[], number, string][] = [
      [[["file", bytes(10)], policy!, authorization!], 400, "need policy"],
      [
        [policy!, authorization!, ["file", bytes(10)], type!],
        400,
        "file must be the last field of the form",
      ],
      [fieldsOf(s, bytes(11)), 403, "file too large"],
      [fieldsOf(s, bytes(9)), 400, "file size not match"],
    ];
    for (const [fields, status, message] of cases) {
      const r = await post(url, fields);
      expect([r.status, r.json.message]).toEqual([status, message]);
    }
    // Nothing of these was stored nor notified: the session is still pending.
    expect(code(await info(ctx.api, "upyun/order.bin"))).toBe(0);
    expect(ok(await info(ctx.api, "upyun/order.bin")).metadata?.["sys:upload_session_id"]).toBe(
      s.session_id,
    );
    expect((await post(url, fieldsOf(s, bytes(10)))).status).toBe(200);
    await completed(ctx.api, "upyun/order.bin");
  });

  it("refuses a body without a length and one that is not a form", async () => {
    const s = await session(ctx.api, "upyun/chunked.bin", 10);
    const { body, type } = form(fieldsOf(s, bytes(10)));
    const chunked = await request(s.upload_urls[0]!, {
      method: "POST",
      body: Readable.from([body]),
      headers: { "content-type": type },
    });
    expect(chunked.statusCode).toBe(400);
    expect(await chunked.body.json()).toMatchObject({
      message: "chunked request bodies not supported yet",
    });
    const plain = await request(s.upload_urls[0]!, { method: "POST", body: "file=x" });
    expect(plain.statusCode).toBe(415);
    await plain.body.dump();
  });

  it("answers the form even when Cloudreve refuses the notify: the upload stays pending", async () => {
    await resetStats(ctx.emu.url);
    const s = await session(ctx.api, "upyun/refused.bin", 10);
    await setFaults(ctx.emu.url, [{ route: CALLBACK, failWith: 500 }]);
    const r = await post(s.upload_urls[0]!, fieldsOf(s, bytes(10)));
    expect(r.status).toBe(200);
    await until("the notify", async () => (await stats()).requests[CALLBACK] === 1, 10_000);
    await setFaults(ctx.emu.url, []);
    expect(ok(await info(ctx.api, "upyun/refused.bin")).metadata?.["sys:upload_session_id"]).toBe(
      s.session_id,
    );
    const cancel = await ctx.api.call("DELETE", "/file/upload", {
      json: { id: s.session_id, uri: myUri("upyun/refused.bin") },
    });
    expect(code(cancel)).toBe(0);
    expect(await upstreamInfo(ctx.api, "upyun/refused.bin")).toBeUndefined();
  });

  it("refuses a policy past its expiration", async () => {
    const s = await session(ctx.api, "upyun/expired.bin", 10);
    await advance(ctx.api, 86_400 + 60);
    const r = await post(s.upload_urls[0]!, fieldsOf(s, bytes(10)));
    expect([r.status, r.json.message]).toEqual([403, "authorization has expired"]);
  });
});

describe("upyun policy through the gateway", () => {
  // Upyun's notify is waited for as long as Cloudreve may take to answer a call.
  const fx = useGateway(
    { policy: "upyun", chunkSize: CHUNK },
    { cacheTtlSeconds: 0, directUploadMaxBytes: 0, upstreamResponseTimeoutSeconds: 3 },
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

  it("one form carries the whole file; the PUT waits for a late notify", async () => {
    const body = content(3 * CHUNK + 7, 1);
    await setFaults(fx.emu.url, [{ route: CALLBACK, latencyMs: 700 }]);
    expect((await dav(`${fx.url}/upyun-late.bin`, "PUT", { body })).status).toBe(201);
    const s = await stats();
    expect(s.storage.requests["POST form"]).toBe(1);
    expect(s.storage.bytesIn).toBeGreaterThan(body.length);
    expect(s.requests[CALLBACK]).toBe(1);
    // Cloudreve was asked until it showed the file.
    expect(s.requests[R.info]).toBeGreaterThanOrEqual(2);
    await expectStored(api, "upyun-late.bin", body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a form failing with 5xx, or whose answer is lost, is sent again whole", async () => {
    for (const [name, rule] of [
      ["failed", { failWith: 503 as const }],
      ["lost", { failWith: "reset" as const, afterBytes: 0 }],
    ] as const) {
      await resetStats(fx.emu.url);
      const body = content(2 * CHUNK + 1, name.length);
      await setFaults(fx.emu.url, [{ route: "POST form", times: 1, ...rule }]);
      expect((await dav(`${fx.url}/upyun-${name}.bin`, "PUT", { body })).status).toBe(201);
      const s = await stats();
      expect(s.storage.requests["POST form"]).toBe(2);
      // A proxy's 503 comes before the body is read; a lost answer followed a whole form.
      expect(s.storage.bytesIn).toBeGreaterThan((name === "lost" ? 2 : 1) * body.length);
      await expectStored(api, `upyun-${name}.bin`, body);
      await expectNothingLeft(fx.emu.url);
    }
  });

  it("a notify Cloudreve refuses fails the PUT after the wait: old content kept, nothing left", async () => {
    const old = content(CHUNK + 3, 3);
    expect((await dav(`${fx.url}/upyun-refused.bin`, "PUT", { body: old })).status).toBe(201);
    await resetStats(fx.emu.url);
    await setFaults(fx.emu.url, [{ route: CALLBACK, failWith: 500 }]);
    const r = await dav(`${fx.url}/upyun-refused.bin`, "PUT", { body: content(2 * CHUNK, 4) });
    await setFaults(fx.emu.url, []);
    expect([502, 503, 504]).toContain(r.status);
    const s = await stats();
    expect(s.requests[CALLBACK]).toBe(1);
    expect(s.requests[R.cancel]).toBe(1);
    await expectStored(api, "upyun-refused.bin", old);
    await expectNothingLeft(fx.emu.url);
  });
});
