import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import parseRange from "range-parser";
import type { Clock } from "./clock.js";
import { answerFault, type Faults, Stats } from "./control.js";

/** The bucket every object of the emulated s3 policy lives in. */
export const BUCKET = "cloudreve";

/** Stats and fault keys of the storage origin's operations. */
export type StorageOperation = "PUT part" | "POST complete" | "GET object" | "HEAD object";

interface Part {
  path: string;
  etag: string;
  size: number;
}

interface MultipartUpload {
  key: string;
  dir: string;
  parts: Map<number, Part>;
}

class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const noSuchUpload = () =>
  new S3Error(404, "NoSuchUpload", "The specified multipart upload does not exist.");
const xmlEscape = (s: string) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
const quoted = (etag: string) => `"${etag}"`;
const unquoted = (etag: string) => etag.trim().replace(/^"(.*)"$/, "$1");

/** S3's X-Amz-Date layout, 20260102T150405Z. */
function amzDate(seconds: number): string {
  return new Date(seconds * 1000)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

function parseAmzDate(value: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  return Date.UTC(y!, mo! - 1, d!, h!, mi!, s!) / 1000;
}

/**
 * The object storage behind the `s3` policy: a path-style S3 origin with presigned URLs,
 * multipart uploads and ranged reads. Only the presigned query authenticates a request; its
 * signature is an HMAC over method, path and the other query parameters (not SigV4, which
 * nothing here needs).
 */
export class ObjectStorage {
  readonly stats = new Stats();
  /** Set once the origin listens. */
  url = "";
  private readonly secret = randomBytes(32);
  private readonly uploads = new Map<string, MultipartUpload>();
  private readonly etags = new Map<string, string>();

  constructor(
    private readonly dir: string,
    private readonly clock: Clock,
    private readonly faults: Faults,
  ) {}

  async init(): Promise<void> {
    await mkdir(join(this.dir, "objects"), { recursive: true });
    await mkdir(join(this.dir, "parts"), { recursive: true });
  }

  /** Where an object's bytes live; the entity of a completed upload points here. */
  objectPath(key: string): string {
    return join(this.dir, "objects", encodeURIComponent(key));
  }

  newKey(userId: number): string {
    return `uploads/${userId}/${randomUUID()}`;
  }

  createMultipartUpload(key: string): string {
    const id = randomBytes(24).toString("base64url");
    this.uploads.set(id, { key, dir: join(this.dir, "parts", id), parts: new Map() });
    return id;
  }

  /** AbortMultipartUpload: the parts go. */
  async abortMultipartUpload(uploadId: string): Promise<void> {
    const upload = this.uploads.get(uploadId);
    if (!upload) return;
    this.uploads.delete(uploadId);
    await rm(upload.dir, { recursive: true, force: true });
  }

  /** HeadObject's size, or undefined when there is no such object. */
  async objectSize(key: string): Promise<number | undefined> {
    if (!this.etags.has(key)) return undefined;
    return stat(this.objectPath(key)).then(
      (s) => s.size,
      () => undefined,
    );
  }

  /** PutObject of a fully written local file, as the server does for its own writes. */
  async putObject(key: string, file: string): Promise<void> {
    const etag = await md5Of(file);
    await rename(file, this.objectPath(key));
    this.etags.set(key, etag);
  }

  /** A presigned URL for `method` on `key`, valid until `expiresAt` (unix seconds). */
  presign(method: string, key: string, expiresAt: number, params: Record<string, string> = {}) {
    const now = this.clock.nowSeconds();
    const query = new URLSearchParams({
      ...params,
      "X-Amz-Date": amzDate(now),
      "X-Amz-Expires": String(Math.max(0, expiresAt - now)),
    });
    const path = `/${BUCKET}/${key.split("/").map(encodeURIComponent).join("/")}`;
    query.set("X-Amz-Signature", this.sign(method, path, query));
    return `${this.url}${path}?${query.toString()}`;
  }

  private sign(method: string, path: string, query: URLSearchParams): string {
    const signed = [...query]
      .filter(([k]) => k !== "X-Amz-Signature")
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
      .join("&");
    return createHmac("sha256", this.secret).update(`${method}\n${path}\n${signed}`).digest("hex");
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://storage");
    const method = req.method ?? "GET";
    const query = url.searchParams;
    const operation = operationOf(method, query);
    if (operation) {
      this.stats.count(operation);
      if (await answerFault(req, res, this.faults.decide(operation, "storage"))) return;
    }
    try {
      if (!operation) throw new S3Error(405, "MethodNotAllowed", "Not supported here.");
      this.authenticate(method, url.pathname, query);
      const bucketPrefix = `/${BUCKET}/`;
      if (!url.pathname.startsWith(bucketPrefix) || url.pathname === bucketPrefix)
        throw new S3Error(404, "NoSuchBucket", "The specified bucket does not exist.");
      const key = decodeURIComponent(url.pathname.slice(bucketPrefix.length));
      switch (operation) {
        case "PUT part":
          return await this.putPart(req, res, key, query);
        case "POST complete":
          return await this.complete(req, res, key, query.get("uploadId")!);
        default:
          return await this.getObject(req, res, key);
      }
    } catch (err) {
      if (res.headersSent) return void res.destroy();
      if (!(err instanceof S3Error)) {
        process.stderr.write(`emulator storage: ${operation} failed: ${String(err)}\n`);
        res.writeHead(500, { "content-type": "text/plain" }).end("Internal Server Error");
        return;
      }
      this.sendXml(
        res,
        err.status,
        `<Error><Code>${err.code}</Code><Message>${xmlEscape(err.message)}</Message>` +
          `<RequestId>${randomBytes(8).toString("hex").toUpperCase()}</RequestId></Error>`,
      );
    }
  }

  private authenticate(method: string, path: string, query: URLSearchParams): void {
    const given = Buffer.from(query.get("X-Amz-Signature") ?? "");
    const expected = Buffer.from(this.sign(method, path, query));
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new S3Error(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
      );
    const date = parseAmzDate(query.get("X-Amz-Date") ?? "");
    const expires = Number(query.get("X-Amz-Expires"));
    if (
      date === undefined ||
      !Number.isInteger(expires) ||
      date + expires < this.clock.nowSeconds()
    )
      throw new S3Error(403, "AccessDenied", "Request has expired");
  }

  private async putPart(
    req: IncomingMessage,
    res: ServerResponse,
    key: string,
    query: URLSearchParams,
  ): Promise<void> {
    const upload = this.uploads.get(query.get("uploadId")!);
    if (!upload || upload.key !== key) throw noSuchUpload();
    const partNumber = Number(query.get("partNumber"));
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000)
      throw new S3Error(
        400,
        "InvalidArgument",
        "Part number must be an integer between 1 and 10000.",
      );
    const length = Number(req.headers["content-length"]);
    if (req.headers["content-length"] === undefined || !Number.isSafeInteger(length))
      throw new S3Error(
        411,
        "MissingContentLength",
        "You must provide the Content-Length HTTP header.",
      );
    await mkdir(upload.dir, { recursive: true });
    const path = join(upload.dir, `${partNumber}.${randomUUID()}`);
    const md5 = createHash("md5");
    let size = 0;
    const tap = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        size += chunk.length;
        this.stats.bytesIn += chunk.length;
        md5.update(chunk);
        done(null, chunk);
      },
    });
    const received = await pipeline(req, tap, createWriteStream(path)).then(
      () => size === length,
      () => false,
    );
    // A part whose body broke off is not stored; nor one for an upload aborted meanwhile.
    if (!received || this.uploads.get(query.get("uploadId")!) !== upload) {
      await rm(path, { force: true });
      if (!received) return void res.destroy();
      throw noSuchUpload();
    }
    const etag = md5.digest("hex");
    const replaced = upload.parts.get(partNumber);
    upload.parts.set(partNumber, { path, etag, size });
    if (replaced) await rm(replaced.path, { force: true });
    res.writeHead(200, { etag: quoted(etag), "content-length": 0 }).end();
  }

  private async complete(
    req: IncomingMessage,
    res: ServerResponse,
    key: string,
    uploadId: string,
  ): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) {
      this.stats.bytesIn += chunk.length;
      chunks.push(chunk);
    }
    const upload = this.uploads.get(uploadId);
    if (!upload || upload.key !== key) throw noSuchUpload();
    const listed = parseCompleteBody(Buffer.concat(chunks).toString("utf8"));
    const parts: Part[] = [];
    let last = 0;
    for (const { partNumber, etag } of listed) {
      if (partNumber <= last)
        throw new S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.");
      last = partNumber;
      const part = upload.parts.get(partNumber);
      if (!part || part.etag !== unquoted(etag))
        throw new S3Error(
          400,
          "InvalidPart",
          "One or more of the specified parts could not be found or the ETag did not match.",
        );
      parts.push(part);
    }
    this.uploads.delete(uploadId);
    const joined = join(upload.dir, "object");
    const out = createWriteStream(joined);
    for (const part of parts) await pipeline(createReadStream(part.path), out, { end: false });
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    await rename(joined, this.objectPath(key));
    await rm(upload.dir, { recursive: true, force: true });
    // A multipart object's ETag: the MD5 of the parts' binary MD5s, then "-" and their count.
    const digest = createHash("md5");
    for (const part of parts) digest.update(Buffer.from(part.etag, "hex"));
    const etag = `${digest.digest("hex")}-${parts.length}`;
    this.etags.set(key, etag);
    this.sendXml(
      res,
      200,
      `<CompleteMultipartUploadResult><Location>${xmlEscape(`${this.url}/${BUCKET}/${key}`)}</Location>` +
        `<Bucket>${BUCKET}</Bucket><Key>${xmlEscape(key)}</Key>` +
        `<ETag>${xmlEscape(quoted(etag))}</ETag></CompleteMultipartUploadResult>`,
    );
  }

  /** GetObject / HeadObject: one range gives 206, several the whole object, none valid 416. */
  private async getObject(req: IncomingMessage, res: ServerResponse, key: string): Promise<void> {
    const size = await this.objectSize(key);
    if (size === undefined)
      throw new S3Error(404, "NoSuchKey", "The specified key does not exist.");
    const headers = {
      etag: quoted(this.etags.get(key)!),
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
    };
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = req.headers.range;
    if (range && size > 0) {
      const parsed = parseRange(size, range);
      if (parsed === -1) {
        res.writeHead(416, { ...headers, "content-range": `bytes */${size}` }).end();
        return;
      }
      if (parsed !== -2 && parsed.length === 1) {
        ({ start, end } = parsed[0]!);
        status = 206;
      }
    }
    const length = end - start + 1;
    res.writeHead(status, {
      ...headers,
      "content-length": length,
      ...(status === 206 ? { "content-range": `bytes ${start}-${end}/${size}` } : {}),
    });
    if (req.method === "HEAD" || length === 0) return void res.end();
    const body = createReadStream(this.objectPath(key), { start, end });
    body.on("data", (chunk) => (this.stats.bytesOut += chunk.length));
    await pipeline(body, res).catch(() => res.destroy());
  }

  private sendXml(res: ServerResponse, status: number, xml: string): void {
    const text = `<?xml version="1.0" encoding="UTF-8"?>\n${xml}`;
    this.stats.bytesOut += Buffer.byteLength(text);
    res
      .writeHead(status, {
        "content-type": "application/xml",
        "content-length": Buffer.byteLength(text),
      })
      .end(text);
  }
}

function operationOf(method: string, query: URLSearchParams): StorageOperation | undefined {
  if (method === "PUT" && query.has("partNumber") && query.has("uploadId")) return "PUT part";
  if (method === "POST" && query.has("uploadId")) return "POST complete";
  if (method === "GET") return "GET object";
  if (method === "HEAD") return "HEAD object";
  return undefined;
}

const malformed = () =>
  new S3Error(
    400,
    "MalformedXML",
    "The XML you provided was not well-formed or did not validate against our published schema.",
  );

/**
 * Reads a CompleteMultipartUpload body. The shape is fixed and tiny, so regexes do; anything
 * besides Part elements (with exactly a PartNumber and an ETag) is refused as MalformedXML.
 */
function parseCompleteBody(xml: string): { partNumber: number; etag: string }[] {
  const root =
    /^\s*(?:<\?xml[^>]*\?>\s*)?<CompleteMultipartUpload(?:\s+xmlns="[^"]*")?\s*>([\s\S]*)<\/CompleteMultipartUpload>\s*$/.exec(
      xml,
    );
  if (!root) throw malformed();
  const parts: { partNumber: number; etag: string }[] = [];
  const rest = root[1]!.replace(/<Part>([\s\S]*?)<\/Part>/g, (_all, inner: string) => {
    const m =
      /^\s*(?:<PartNumber>(\d+)<\/PartNumber>\s*<ETag>([^<]*)<\/ETag>|<ETag>([^<]*)<\/ETag>\s*<PartNumber>(\d+)<\/PartNumber>)\s*$/.exec(
        inner,
      );
    if (!m) throw malformed();
    parts.push({
      partNumber: Number(m[1] ?? m[4]),
      etag: (m[2] ?? m[3]!).replace(/&quot;|&#34;/g, '"'),
    });
    return "";
  });
  if (rest.trim() !== "" || parts.length === 0) throw malformed();
  return parts;
}

async function md5Of(file: string): Promise<string> {
  const md5 = createHash("md5");
  for await (const chunk of createReadStream(file)) md5.update(chunk as Buffer);
  return md5.digest("hex");
}
