import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Busboy, type BusboyHeaders } from "@fastify/busboy";
import { BUCKET } from "./objects.js";
import type { StorageContext, UploadProvider } from "./provider.js";
import { mimeTypeOf, sendBody } from "./qiniu.js";

/** Upyun's refusal: its HTTP status, repeated as `code`, and a `message`. */
class UpyunError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The form API's upload parameters (`[S] driver/upyun` UploadPolicy), base64 JSON. */
interface FormPolicy {
  bucket?: unknown;
  "save-key"?: unknown;
  expiration?: unknown;
  "notify-url"?: unknown;
  "content-length"?: unknown;
  "content-length-range"?: unknown;
  date?: unknown;
  "content-md5"?: unknown;
}

interface CheckedPolicy {
  key: string;
  notifyUrl: string | undefined;
  length: number | undefined;
  range: [number, number] | undefined;
}

interface Received {
  path: string;
  size: number;
  md5: string;
}

const OPERATOR = "cloudreve";

const optionalString = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);

/**
 * Upyun's form API, as Cloudreve's upyun driver hands it out (`[S] driver/upyun` Token): the
 * session carries `upload_policy` (base64 JSON: bucket, save-key, expiration, notify-url,
 * content-length, content-length-range) and its signature as `credential`; the client POSTs
 * one multipart form to `/{bucket}` with `policy`, `authorization`, an optional `content-type`
 * and `file` last (the policy declares `content-length`: the big-file mode, which streams).
 * Upyun answers, then notifies Cloudreve asynchronously: the answer says nothing of the notify.
 */
export function upyunProvider(ctx: StorageContext): UploadProvider {
  const { objects, stats, clock } = ctx;
  // Upyun signs with the MD5 of the operator's password.
  const signingKey = createHash("md5").update(randomBytes(24).toString("hex")).digest("hex");
  /** `UPYUN operator:base64(HMAC-SHA1(…))` over the elements given, empty ones left out. */
  const sign = (...elements: (string | undefined)[]) =>
    `UPYUN ${OPERATOR}:${createHmac("sha1", signingKey)
      .update(elements.filter(Boolean).join("&"))
      .digest("base64")}`;
  const formPath = `/${BUCKET}`;

  function checkPolicy(fields: Map<string, string>): CheckedPolicy {
    const encoded = fields.get("policy");
    if (!encoded) throw new UpyunError(400, "need policy");
    const authorization = fields.get("authorization");
    if (!authorization) throw new UpyunError(400, "need signature");
    let policy: FormPolicy;
    try {
      policy = JSON.parse(Buffer.from(encoded, "base64").toString("utf8")) as FormPolicy;
      if (typeof policy !== "object" || policy === null) throw new TypeError("not an object");
    } catch {
      throw new UpyunError(400, "decode policy error");
    }
    const date = optionalString(policy.date);
    const expected = sign("POST", formPath, date, encoded, optionalString(policy["content-md5"]));
    const given = Buffer.from(authorization);
    if (given.length !== expected.length || !timingSafeEqual(given, Buffer.from(expected)))
      throw new UpyunError(401, "signature error");
    if (policy.bucket === undefined) throw new UpyunError(400, "need bucket name");
    if (policy.bucket !== BUCKET) throw new UpyunError(401, "bucket not exist");
    const key = optionalString(policy["save-key"]);
    if (!key) throw new UpyunError(400, "need save-key");
    const expiration = Number(policy.expiration ?? NaN);
    if (!Number.isFinite(expiration)) throw new UpyunError(400, "need expiration");
    if (expiration < clock.nowSeconds()) throw new UpyunError(403, "authorization has expired");
    const range = /^(\d+),(\d+)$/.exec(String(policy["content-length-range"] ?? ""));
    return {
      key,
      notifyUrl: optionalString(policy["notify-url"]),
      length: policy["content-length"] === undefined ? undefined : Number(policy["content-length"]),
      range: range ? [Number(range[1]), Number(range[2])] : undefined,
    };
  }

  /**
   * Reads the form, the file part streamed to disk in `dir`; the policy is checked when the
   * file begins, so every other field must come before it. A body that breaks off answers
   * undefined.
   */
  async function receiveForm(
    req: IncomingMessage,
    dir: string,
  ): Promise<{ policy: CheckedPolicy; file: Received } | undefined> {
    if (req.headers["content-length"] === undefined)
      throw new UpyunError(400, "chunked request bodies not supported yet");
    let form;
    try {
      form = Busboy({
        headers: req.headers as IncomingHttpHeaders & BusboyHeaders,
        isPartAFile: (name) => name === "file",
      });
    } catch {
      throw new UpyunError(415, "media type error, need content-type");
    }
    const fields = new Map<string, string>();
    let problem: UpyunError | undefined;
    let fileStream: Readable | undefined;
    let file: Promise<{ policy: CheckedPolicy; file: Received }> | undefined;
    form.on("field", (name, value) => {
      if (fileStream) problem ??= new UpyunError(400, "file must be the last field of the form");
      else fields.set(name, value);
    });
    form.on("file", (_name, stream) => {
      if (fileStream || problem) {
        problem ??= new UpyunError(400, "only one file per form");
        return void stream.resume();
      }
      fileStream = stream;
      let policy: CheckedPolicy;
      try {
        policy = checkPolicy(fields);
      } catch (err) {
        problem = err as UpyunError;
        return void stream.resume();
      }
      const path = join(dir, "file");
      const md5 = createHash("md5");
      let size = 0;
      const tap = new Transform({
        transform: (chunk: Buffer, _enc, done) => {
          size += chunk.length;
          md5.update(chunk);
          done(null, chunk);
        },
      });
      file = pipeline(stream, tap, createWriteStream(path)).then(() => ({
        policy,
        file: { path, size, md5: md5.digest("hex") },
      }));
      // Awaited once the form is read; until then a failure must not go unhandled.
      file.catch(() => undefined);
    });
    const counted = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        stats.bytesIn += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(req, counted, form);
    } catch {
      fileStream?.destroy();
      // A body that arrived whole but does not parse has no file Upyun could find.
      if (req.complete) throw problem ?? new UpyunError(400, "need file");
      return undefined;
    }
    if (problem) throw problem;
    if (!file) {
      checkPolicy(fields);
      throw new UpyunError(400, "need file");
    }
    return file;
  }

  /** Upyun's asynchronous notify: a signed form POST whose answer nobody waits for. */
  async function notify(url: string, result: Record<string, string | number>): Promise<void> {
    const body = new URLSearchParams(
      Object.entries(result).map(([name, value]): [string, string] => [name, String(value)]),
    ).toString();
    const contentMd5 = createHash("md5").update(body).digest("hex");
    const date = new Date(clock.now()).toUTCString();
    const res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "content-md5": contentMd5,
        date,
        authorization: sign("POST", new URL(url).pathname, date, contentMd5),
      },
      body,
    });
    await res.body?.cancel();
  }

  async function postForm(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const dir = objects.partsDir(randomUUID());
    await mkdir(dir, { recursive: true });
    try {
      const form = await receiveForm(req, dir);
      if (!form) return void res.destroy();
      const { policy, file } = form;
      const [min, max] = policy.range ?? [0, Infinity];
      if (file.size < min) throw new UpyunError(403, "file too small");
      if (file.size > max) throw new UpyunError(403, "file too large");
      if (policy.length !== undefined && file.size !== policy.length)
        throw new UpyunError(400, "file size not match");
      await objects.putObject(policy.key, file.path, file.md5);
      const result = { code: 200, message: "ok", url: policy.key, time: clock.nowSeconds() };
      sendBody(res, 200, JSON.stringify(result), "application/json", objects);
      // After the answer, and whatever becomes of it: Cloudreve hears of the upload on its own.
      // A notify that fails is lost, as Upyun's is; Cloudreve then never completes the upload,
      // which the gateway must notice (upyun.test.ts injects it and reads the old bytes back).
      if (policy.notifyUrl) void notify(policy.notifyUrl, result).catch(() => undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  return {
    async open(session, expires) {
      const { key } = session.object!;
      const policy = {
        bucket: BUCKET,
        "save-key": key,
        expiration: expires,
        "notify-url": ctx.callbackUrl(session),
        "content-length": session.size,
        "content-length-range": `0,${session.size}`,
      };
      const encoded = Buffer.from(JSON.stringify(policy)).toString("base64");
      return {
        // The form carries the whole file: Upyun's credential sets no chunk size.
        chunk_size: 0,
        upload_urls: [`${objects.url}${formPath}`],
        upload_policy: encoded,
        credential: sign("POST", formPath, encoded),
        mime_type: mimeTypeOf(session),
      };
    },

    // Upyun keeps no upload state: a form stored its object, or nothing.
    async abort(session) {
      if (session.object) await objects.deleteObject(session.object.key);
    },

    operation(req, url) {
      return req.method === "POST" && url.pathname === formPath ? "POST form" : undefined;
    },

    async handle(req, res) {
      try {
        await postForm(req, res);
      } catch (err) {
        if (!(err instanceof UpyunError)) throw err;
        const body = { code: err.status, message: err.message, time: clock.nowSeconds() };
        sendBody(res, err.status, JSON.stringify(body), "application/json", objects);
      }
    },
  };
}
