import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import parseRange from "range-parser";
import type { Clock } from "../clock.js";
import type { Stats } from "../control.js";
import type { ObjectBackend } from "./backend.js";

/** The bucket every object of the emulated storage lives in; objects are read at /BUCKET/key. */
export const BUCKET = "cloudreve";

/** A storage provider's refusal: its HTTP status, its error code and a message. */
export class StorageError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const xmlEscape = (s: string) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
export const quoted = (etag: string) => `"${etag}"`;

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
 * The objects of the emulated storage provider, whatever its upload protocol: bytes on disk,
 * an ETag each, presigned URLs that expire, and ranged reads. A presigned query authenticates
 * with an HMAC over method, path and the other query parameters (not SigV4, which nothing
 * here needs).
 */
export class ObjectStore implements ObjectBackend {
  /** The storage origin, set once it listens. */
  url = "";
  private readonly secret = randomBytes(32);
  private readonly etags = new Map<string, string>();

  constructor(
    readonly dir: string,
    readonly clock: Clock,
    readonly stats: Stats,
  ) {}

  async init(): Promise<void> {
    await mkdir(join(this.dir, "objects"), { recursive: true });
    await mkdir(join(this.dir, "parts"), { recursive: true });
  }

  /** Where an object's bytes live; the entity of a completed upload points here. */
  objectPath(key: string): string {
    return join(this.dir, "objects", encodeURIComponent(key));
  }

  /** A fresh folder for an upload's parts, removed by the provider when it is done. */
  partsDir(uploadId: string): string {
    return join(this.dir, "parts", encodeURIComponent(uploadId));
  }

  newKey(userId: number): string {
    return `uploads/${userId}/${randomUUID()}`;
  }

  /** The object's size, or undefined when there is no such object (HeadObject). */
  async objectSize(key: string): Promise<number | undefined> {
    if (!this.etags.has(key)) return undefined;
    return stat(this.objectPath(key)).then(
      (s) => s.size,
      () => undefined,
    );
  }

  /** Stores a fully written local file as the object `key`; its ETag is its MD5 unless given. */
  async putObject(key: string, file: string, etag?: string): Promise<void> {
    const tag = etag ?? (await md5Of(file));
    await rename(file, this.objectPath(key));
    this.etags.set(key, tag);
  }

  async deleteObject(key: string): Promise<void> {
    this.etags.delete(key);
    await rm(this.objectPath(key), { force: true });
  }

  /** A presigned URL for `method` on `path` of this origin, valid until `expiresAt` (unix s). */
  presignPath(
    method: string,
    path: string,
    expiresAt: number,
    params: Record<string, string> = {},
  ): string {
    const now = this.clock.nowSeconds();
    const query = new URLSearchParams({
      ...params,
      "X-Amz-Date": amzDate(now),
      "X-Amz-Expires": String(Math.max(0, expiresAt - now)),
    });
    query.set("X-Amz-Signature", this.sign(method, path, query));
    return `${this.url}${path}?${query.toString()}`;
  }

  /** A presigned URL for `method` on the object `key`. */
  presign(method: string, key: string, expiresAt: number, params: Record<string, string> = {}) {
    return this.presignPath(method, objectUrlPath(key), expiresAt, params);
  }

  /** A presigned GET of the object `key`, valid `expiresIn` seconds from now. */
  async presignGet(key: string, expiresIn: number): Promise<string> {
    return this.presign("GET", key, this.clock.nowSeconds() + expiresIn);
  }

  /** Checks a presigned request: 403 SignatureDoesNotMatch or AccessDenied (expired). */
  authenticate(method: string, path: string, query: URLSearchParams): void {
    const given = Buffer.from(query.get("X-Amz-Signature") ?? "");
    const expected = Buffer.from(this.sign(method, path, query));
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new StorageError(
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
      throw new StorageError(403, "AccessDenied", "Request has expired");
  }

  private sign(method: string, path: string, query: URLSearchParams): string {
    const signed = [...query]
      .filter(([k]) => k !== "X-Amz-Signature")
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
      .join("&");
    return createHmac("sha256", this.secret).update(`${method}\n${path}\n${signed}`).digest("hex");
  }

  /** The object key a path of this origin names, or undefined when it names none. */
  keyOf(path: string): string | undefined {
    const prefix = `/${BUCKET}/`;
    if (!path.startsWith(prefix) || path === prefix) return undefined;
    return decodeURIComponent(path.slice(prefix.length));
  }

  /**
   * GetObject / HeadObject of a presigned URL: one range gives 206, several the whole object,
   * none satisfiable 416.
   */
  async read(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    this.authenticate(req.method ?? "GET", url.pathname, url.searchParams);
    const key = this.keyOf(url.pathname);
    const size = key === undefined ? undefined : await this.objectSize(key);
    if (key === undefined || size === undefined)
      throw new StorageError(404, "NoSuchKey", "The specified key does not exist.");
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
}

export function objectUrlPath(key: string): string {
  return `/${BUCKET}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

export async function md5Of(file: string): Promise<string> {
  const md5 = createHash("md5");
  for await (const chunk of createReadStream(file)) md5.update(chunk as Buffer);
  return md5.digest("hex");
}

/**
 * Receives one part's body into a new file of `dir`, feeding each piece to `digests` and to the
 * storage's bytes in. Undefined (and no file kept) when the body broke off or was not
 * `length` bytes.
 */
export async function receivePart(
  req: IncomingMessage,
  dir: string,
  name: string,
  length: number,
  stats: Stats,
  digests: { update(piece: Buffer): unknown }[],
): Promise<{ path: string; size: number } | undefined> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${name}.${randomUUID()}`);
  let size = 0;
  const tap = new Transform({
    transform: (piece: Buffer, _enc, done) => {
      size += piece.length;
      stats.bytesIn += piece.length;
      for (const digest of digests) digest.update(piece);
      done(null, piece);
    },
  });
  const whole = await pipeline(req, tap, createWriteStream(path)).then(
    () => size === length,
    () => false,
  );
  if (whole) return { path, size };
  await rm(path, { force: true });
  return undefined;
}
