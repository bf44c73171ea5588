import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import mime from "mime";
import type { UploadSession } from "../state.js";
import { BUCKET, receivePart, type ObjectStore } from "./objects.js";
import type { StorageContext, UploadProvider } from "./provider.js";

/** Qiniu's refusal: its HTTP status (its own codes above 599 included) and `{"error": …}`. */
class QiniuError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** What the UpToken grants (`[S] driver/qiniu/qiniu.go` Token, go-sdk storage.PutPolicy). */
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

interface Part {
  path: string;
  etag: string;
  size: number;
}

interface MultipartUpload {
  id: string;
  key: string;
  dir: string;
  parts: Map<number, Part>;
}

/** `/buckets/{bucket}/objects/{urlsafe base64 key}/uploads/{uploadId}[/{partNumber}]` */
const UPLOAD_PATH = /^\/buckets\/([^/]+)\/objects\/([^/]+)\/uploads\/([^/]+)(?:\/([^/]+))?$/;

/** Go's base64.URLEncoding, padding kept, as Qiniu's tokens and object names use it. */
const urlsafeBase64 = (data: Buffer | string) =>
  Buffer.from(data).toString("base64").replace(/\+/g, "-").replace(/\//g, "_");

/** A string compared in constant time. */
function sameText(given: string | undefined, expected: string): boolean {
  const a = Buffer.from(given ?? "");
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

const QETAG_BLOCK = 4 * 1024 * 1024;

/**
 * Qiniu's etag of some bytes: 0x16 and the SHA-1 of a single 4 MiB block, or 0x96 and the
 * SHA-1 of the blocks' SHA-1s, in URL-safe base64.
 */
class Qetag {
  private readonly blocks: Buffer[] = [];
  private block = createHash("sha1");
  private inBlock = 0;

  update(chunk: Buffer): void {
    for (let at = 0; at < chunk.length;) {
      const take = Math.min(QETAG_BLOCK - this.inBlock, chunk.length - at);
      this.block.update(chunk.subarray(at, at + take));
      this.inBlock += take;
      at += take;
      if (this.inBlock === QETAG_BLOCK) {
        this.blocks.push(this.block.digest());
        this.block = createHash("sha1");
        this.inBlock = 0;
      }
    }
  }

  digest(): string {
    if (this.inBlock > 0 || this.blocks.length === 0) this.blocks.push(this.block.digest());
    const tag =
      this.blocks.length === 1
        ? Buffer.concat([Buffer.from([0x16]), this.blocks[0]!])
        : Buffer.concat([
            Buffer.from([0x96]),
            createHash("sha1").update(Buffer.concat(this.blocks)).digest(),
          ]);
    return urlsafeBase64(tag);
  }
}

/** A body answered by the storage origin (JSON, or a callback's answer passed on), counted. */
export function sendBody(
  res: ServerResponse,
  status: number,
  text: string,
  contentType: string,
  objects: ObjectStore,
): void {
  objects.stats.bytesOut += Buffer.byteLength(text);
  res
    .writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(text) })
    .end(text);
}

/** The session's `mime_type`: Cloudreve's guess from the file name (`[S] fs/mime` TypeByName). */
export function mimeTypeOf(session: UploadSession): string {
  return mime.getType(session.node.name) ?? "application/octet-stream";
}

const noSuchUpload = () => new QiniuError(612, "no such uploadId");
const badParts = (why: string) => new QiniuError(400, why);

/** Qiniu waits this long for the callback's answer before it gives up with 579. */
const CALLBACK_TIMEOUT_MS = 5_000;

/**
 * Qiniu's multipart upload v2, as Cloudreve's qiniu driver hands it out (`[S] driver/qiniu`
 * Token): the session carries the upload's base URL and an UpToken; the client PUTs parts to
 * `{base}/{n}` (answered `{"etag", "md5"}`) and completes with the JSON list of parts at
 * `{base}`; Qiniu then POSTs the UpToken's callback to Cloudreve and answers the client with
 * the callback's answer, or 579 when the callback failed (the object stays stored).
 */
export function qiniuProvider(ctx: StorageContext): UploadProvider {
  const { objects, stats, clock } = ctx;
  const accessKey = randomBytes(20).toString("base64url");
  const secretKey = randomBytes(32);
  const uploads = new Map<string, MultipartUpload>();
  const sign = (data: string) => urlsafeBase64(createHmac("sha1", secretKey).update(data).digest());

  /** Checks `Authorization: UpToken ak:sign:policy` for this bucket and key. */
  function authorize(req: IncomingMessage, bucket: string, key: string): PutPolicy {
    const token = /^UpToken (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
    const [ak, signature, encoded, ...rest] = token.split(":");
    if (rest.length > 0 || ak !== accessKey || !encoded || !sameText(signature, sign(encoded)))
      throw new QiniuError(401, "bad token");
    let policy: PutPolicy;
    try {
      policy = JSON.parse(Buffer.from(encoded, "base64").toString("utf8")) as PutPolicy;
    } catch {
      throw new QiniuError(401, "bad token");
    }
    if (!(policy.deadline >= clock.nowSeconds())) throw new QiniuError(401, "expired token");
    const colon = policy.scope.indexOf(":");
    const scopeBucket = colon < 0 ? policy.scope : policy.scope.slice(0, colon);
    if (scopeBucket !== bucket || (colon >= 0 && policy.scope.slice(colon + 1) !== key))
      throw new QiniuError(403, "key doesn't match with scope");
    return policy;
  }

  async function putPart(
    req: IncomingMessage,
    res: ServerResponse,
    upload: MultipartUpload,
    number: string,
  ): Promise<void> {
    const partNumber = Number(number);
    if (!/^\d+$/.test(number) || partNumber < 1 || partNumber > 10_000)
      throw new QiniuError(400, "invalid partNumber");
    const length = Number(req.headers["content-length"]);
    if (req.headers["content-length"] === undefined || !Number.isSafeInteger(length))
      throw new QiniuError(411, "Content-Length required");
    const md5 = createHash("md5");
    const qetag = new Qetag();
    const received = await receivePart(req, upload.dir, number, length, stats, [md5, qetag]);
    // A part whose body broke off is not stored; nor one for an upload aborted meanwhile.
    if (!received) return void res.destroy();
    const { path, size } = received;
    if (uploads.get(upload.id) !== upload) {
      await rm(path, { force: true });
      throw noSuchUpload();
    }
    const etag = qetag.digest();
    const replaced = upload.parts.get(partNumber);
    upload.parts.set(partNumber, { path, etag, size });
    if (replaced) await rm(replaced.path, { force: true });
    sendBody(
      res,
      200,
      JSON.stringify({ etag, md5: md5.digest("hex") }),
      "application/json",
      objects,
    );
  }

  /** The parts a completion lists, checked against what was uploaded. */
  function listedParts(text: string, upload: MultipartUpload): Part[] {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw badParts("invalid request body: not JSON");
    }
    const { parts, mimeType } = (body ?? {}) as { parts?: unknown; mimeType?: unknown };
    if (!Array.isArray(parts) || parts.length === 0) throw badParts("parts must not be empty");
    if (mimeType !== undefined && typeof mimeType !== "string")
      throw badParts("mimeType must be a string");
    let last = 0;
    return parts.map((listed: unknown) => {
      const { etag, partNumber } = (listed ?? {}) as { etag?: unknown; partNumber?: unknown };
      if (typeof etag !== "string" || !Number.isInteger(partNumber))
        throw badParts("each part needs an etag and a partNumber");
      if ((partNumber as number) <= last) throw badParts("partNumber must be ascending");
      last = partNumber as number;
      const part = upload.parts.get(last);
      if (!part || part.etag !== etag) throw badParts(`part ${last} not found or etag mismatch`);
      return part;
    });
  }

  /**
   * Qiniu's POST of the UpToken's callback, magic variables filled in (those of images empty):
   * its answer when that is a 200, else why not.
   */
  async function callBack(
    policy: PutPolicy,
    vars: Record<string, string>,
  ): Promise<{ text: string; type: string } | { failed: string }> {
    const body = policy.callbackBody.replace(
      /\$\(([^)]+)\)/g,
      (_all, name: string) => vars[name] ?? "",
    );
    const type = policy.callbackBodyType || "application/x-www-form-urlencoded";
    const url = new URL(policy.callbackUrl);
    // QBox signature: path and query, and the body only when it is a form.
    const signed = `${url.pathname}${url.search}\n${type === "application/x-www-form-urlencoded" ? body : ""}`;
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": type, authorization: `QBox ${accessKey}:${sign(signed)}` },
        body,
        signal: AbortSignal.timeout(CALLBACK_TIMEOUT_MS),
      });
      const text = await res.text();
      if (res.status === 200)
        return { text, type: res.headers.get("content-type") ?? "application/json" };
      return { failed: `callback failed: HTTP ${res.status} ${text}` };
    } catch (err) {
      return { failed: `callback failed: ${(err as Error).message}` };
    }
  }

  async function complete(
    req: IncomingMessage,
    res: ServerResponse,
    upload: MultipartUpload,
    policy: PutPolicy,
  ): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) {
      stats.bytesIn += chunk.length;
      chunks.push(chunk);
    }
    const parts = listedParts(Buffer.concat(chunks).toString("utf8"), upload);
    const size = parts.reduce((sum, p) => sum + p.size, 0);
    if (policy.fsizeLimit && size > policy.fsizeLimit)
      throw new QiniuError(413, "exceed FsizeLimit");
    if (uploads.get(upload.id) !== upload) throw noSuchUpload();
    uploads.delete(upload.id);
    const joined = join(upload.dir, "object");
    await pipeline(async function* () {
      for (const part of parts) yield* createReadStream(part.path);
    }, createWriteStream(joined));
    await objects.putObject(upload.key, joined);
    await rm(upload.dir, { recursive: true, force: true });
    const answer = await callBack(policy, { fsize: String(size) });
    if ("failed" in answer) throw new QiniuError(579, answer.failed);
    sendBody(res, 200, answer.text, answer.type, objects);
  }

  return {
    async open(session, expires) {
      const { key } = session.object!;
      const uploadId = randomBytes(16).toString("hex");
      session.object!.uploadId = uploadId;
      uploads.set(uploadId, {
        id: uploadId,
        key,
        dir: objects.partsDir(uploadId),
        parts: new Map(),
      });
      const policy: PutPolicy = {
        scope: `${BUCKET}:${key}`,
        // Cloudreve passes the session's expiry as an absolute time where the SDK takes a TTL
        // and adds the current time to it: a real UpToken outlives its session by decades.
        deadline: clock.nowSeconds() + expires,
        callbackUrl: ctx.callbackUrl(session),
        callbackBody: `{"size":$(fsize),"pic_info":"$(imageInfo.width),$(imageInfo.height)"}`,
        callbackBodyType: "application/json",
        saveKey: key,
        forceSaveKey: true,
        ...(session.size > 0 ? { fsizeLimit: session.size } : {}),
      };
      const encoded = urlsafeBase64(JSON.stringify(policy));
      return {
        upload_id: uploadId,
        upload_urls: [
          `${objects.url}/buckets/${BUCKET}/objects/${urlsafeBase64(key)}/uploads/${uploadId}`,
        ],
        credential: `${accessKey}:${sign(encoded)}:${encoded}`,
        mime_type: mimeTypeOf(session),
      };
    },

    async abort(session: UploadSession) {
      const upload = uploads.get(session.object?.uploadId ?? "");
      if (upload) {
        uploads.delete(upload.id);
        await rm(upload.dir, { recursive: true, force: true });
      }
      // A completion whose callback failed (579) left the object stored.
      if (session.object) await objects.deleteObject(session.object.key);
    },

    operation(req, url) {
      const m = UPLOAD_PATH.exec(url.pathname);
      if (!m) return undefined;
      if (req.method === "PUT" && m[4] !== undefined) return "PUT part";
      if (req.method === "POST" && m[4] === undefined) return "POST complete";
      return undefined;
    },

    async handle(req, res, url, operation) {
      const [, bucket, encodedKey, uploadId, partNumber] = UPLOAD_PATH.exec(url.pathname)!;
      try {
        const key = Buffer.from(decodeURIComponent(encodedKey!), "base64").toString("utf8");
        const policy = authorize(req, decodeURIComponent(bucket!), key);
        const upload = uploads.get(decodeURIComponent(uploadId!));
        if (!upload || upload.key !== key) throw noSuchUpload();
        if (operation === "PUT part") return await putPart(req, res, upload, partNumber!);
        return await complete(req, res, upload, policy);
      } catch (err) {
        if (!(err instanceof QiniuError)) throw err;
        sendBody(
          res,
          err.status,
          JSON.stringify({ error: err.message }),
          "application/json",
          objects,
        );
      }
    },
  };
}
