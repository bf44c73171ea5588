import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Stats } from "../control.js";
import type { UploadSession } from "../state.js";
import type { MultipartUploads } from "./backend.js";
import { quoted, receivePart, StorageError, xmlEscape, type ObjectStore } from "./objects.js";
import { sendXml } from "./origin.js";
import type { StorageContext, UploadProvider } from "./provider.js";

export interface Part {
  path: string;
  etag: string;
  size: number;
}

export interface MultipartUpload {
  id: string;
  key: string;
  dir: string;
  parts: Map<number, Part>;
}

const noSuchUpload = () =>
  new StorageError(404, "NoSuchUpload", "The specified multipart upload does not exist.");
const unquoted = (etag: string) => etag.trim().replace(/^"(.*)"$/, "$1");

/**
 * Multipart uploads as S3 keeps them, and the stores that copy it (OSS, OBS): an upload id per
 * object, parts PUT to presigned URLs (ETag: their MD5), joined into one object whose ETag is
 * the MD5 of the parts' MD5s and their count. Which parts a completion joins, and what the store
 * does once the object is stored, are each provider's own.
 */
export class Multipart {
  private readonly uploads = new Map<string, MultipartUpload>();

  /** `minPartSize`: every part but the last must be at least this big when completed. */
  constructor(
    private readonly objects: ObjectStore,
    private readonly minPartSize = 0,
  ) {}

  /** InitiateMultipartUpload of `key`: its upload id. */
  create(key: string): string {
    const uploadId = randomBytes(24).toString("base64url");
    this.uploads.set(uploadId, {
      id: uploadId,
      key,
      dir: this.objects.partsDir(uploadId),
      parts: new Map(),
    });
    return uploadId;
  }

  /** The presigned PUT of part `partNumber` (from 1) of an upload. */
  partUrl(key: string, uploadId: string, partNumber: number, expires: number): string {
    return this.objects.presign("PUT", key, expires, { partNumber: String(partNumber), uploadId });
  }

  /**
   * InitiateMultipartUpload for the session's object: the session reply's upload id, one
   * presigned part URL per chunk and the presigned completion URL (with `completeParams`).
   */
  open(session: UploadSession, expires: number, completeParams: Record<string, string> = {}) {
    const { key } = session.object!;
    const uploadId = this.create(key);
    session.object!.uploadId = uploadId;
    return {
      upload_id: uploadId,
      upload_urls: Array.from({ length: session.chunks }, (_, i) =>
        this.partUrl(key, uploadId, i + 1, expires),
      ),
      completeURL: this.objects.presign("POST", key, expires, { ...completeParams, uploadId }),
    };
  }

  /** The open upload a request's URL names (its uploadId, on its object), else NoSuchUpload. */
  named(url: URL): MultipartUpload {
    const upload = this.uploads.get(url.searchParams.get("uploadId") ?? "");
    if (!upload || upload.key !== this.objects.keyOf(url.pathname)) throw noSuchUpload();
    return upload;
  }

  /** UploadPart: stores the body as part `partNumber`, answering its ETag. */
  async putPart(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const upload = this.named(url);
    const partNumber = Number(url.searchParams.get("partNumber"));
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000)
      throw new StorageError(
        400,
        "InvalidArgument",
        "Part number must be an integer between 1 and 10000.",
      );
    const length = Number(req.headers["content-length"]);
    if (req.headers["content-length"] === undefined || !Number.isSafeInteger(length))
      throw new StorageError(
        411,
        "MissingContentLength",
        "You must provide the Content-Length HTTP header.",
      );
    const md5 = createHash("md5");
    const received = await receivePart(
      req,
      upload.dir,
      String(partNumber),
      length,
      this.objects.stats,
      [md5],
    );
    // A part whose body broke off is not stored; nor one for an upload aborted meanwhile.
    if (!received) return void res.destroy();
    const { path, size } = received;
    if (this.uploads.get(upload.id) !== upload) {
      await rm(path, { force: true });
      throw noSuchUpload();
    }
    const etag = md5.digest("hex");
    const replaced = upload.parts.get(partNumber);
    upload.parts.set(partNumber, { path, etag, size });
    if (replaced) await rm(replaced.path, { force: true });
    res.writeHead(200, { etag: quoted(etag), "content-length": 0 }).end();
  }

  /** The parts a CompleteMultipartUpload body lists: ascending, each uploaded with that ETag. */
  listed(upload: MultipartUpload, xml: string): Part[] {
    const parts: Part[] = [];
    let last = 0;
    for (const { partNumber, etag } of parseCompleteBody(xml)) {
      if (partNumber <= last)
        throw new StorageError(
          400,
          "InvalidPartOrder",
          "The list of parts was not in ascending order.",
        );
      last = partNumber;
      const part = upload.parts.get(partNumber);
      if (!part || part.etag !== unquoted(etag))
        throw new StorageError(
          400,
          "InvalidPart",
          "One or more of the specified parts could not be found or the ETag did not match.",
        );
      parts.push(part);
    }
    return parts;
  }

  /** Every part uploaded so far, in part number order. */
  all(upload: MultipartUpload): Part[] {
    return [...upload.parts].sort(([a], [b]) => a - b).map(([, part]) => part);
  }

  /**
   * Joins `parts` into the upload's object. The upload id is gone from the start: a second
   * completion, or a part arriving meanwhile, meets NoSuchUpload. Resolves to the object's ETag.
   */
  async complete(upload: MultipartUpload, parts: Part[]): Promise<string> {
    if (parts.slice(0, -1).some((part) => part.size < this.minPartSize))
      throw new StorageError(
        400,
        "EntityTooSmall",
        "Your proposed upload is smaller than the minimum allowed size.",
      );
    this.uploads.delete(upload.id);
    const joined = join(upload.dir, "object");
    // One pipeline for all parts: one per part piles listeners up on the shared output.
    await pipeline(async function* () {
      for (const part of parts) yield* createReadStream(part.path);
    }, createWriteStream(joined));
    const digest = createHash("md5");
    for (const part of parts) digest.update(Buffer.from(part.etag, "hex"));
    const etag = `${digest.digest("hex")}-${parts.length}`;
    await this.objects.putObject(upload.key, joined, etag);
    await rm(upload.dir, { recursive: true, force: true });
    return etag;
  }

  /** AbortMultipartUpload of the session's upload, if it is still open: its parts go. */
  abort(session: UploadSession): Promise<void> {
    return this.cancel(session.object?.uploadId ?? "");
  }

  /** AbortMultipartUpload by upload id. */
  async cancel(uploadId: string): Promise<void> {
    const upload = this.uploads.get(uploadId);
    if (!upload) return;
    this.uploads.delete(upload.id);
    await rm(upload.dir, { recursive: true, force: true });
  }
}

/** The operation of a multipart request: "PUT part", "POST complete", or none. */
export function multipartOperation(req: IncomingMessage, url: URL): string | undefined {
  const query = url.searchParams;
  if (req.method === "PUT" && query.has("partNumber") && query.has("uploadId")) return "PUT part";
  if (req.method === "POST" && query.has("uploadId")) return "POST complete";
  return undefined;
}

/** A whole (small) request body, counted in the storage's bytes in. */
export async function receive(req: IncomingMessage, stats: Stats): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    stats.bytesIn += chunk.length;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** The multipart uploads of the emulator's own storage origin, as an S3 bucket has them. */
function ownUploads(objects: ObjectStore, multipart: Multipart): MultipartUploads {
  const at = (expiresIn: number) => objects.clock.nowSeconds() + expiresIn;
  return {
    createMultipartUpload: async (key) => multipart.create(key),
    presignPart: async (key, uploadId, partNumber, _length, expiresIn) =>
      multipart.partUrl(key, uploadId, partNumber, at(expiresIn)),
    presignComplete: async (key, uploadId, expiresIn) =>
      objects.presign("POST", key, at(expiresIn), { uploadId }),
    abortMultipartUpload: (_key, uploadId) => multipart.cancel(uploadId),
  };
}

/**
 * S3 multipart uploads, as the s3, ks3 and cos drivers use them (`[S] driver/s3/s3.go` Token):
 * the session creates the multipart upload and presigns one PUT per part (of its length) and
 * the completion POST; the client sends the parts, completes with the XML list of their ETags,
 * then calls Cloudreve back itself. The bucket is the storage origin's, or `ctx.s3Backend`.
 */
export function s3Provider(ctx: StorageContext): UploadProvider {
  const { objects } = ctx;
  const multipart = new Multipart(objects);
  const uploads = ctx.s3Backend ?? ownUploads(objects, multipart);

  async function complete(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const xml = await receive(req, objects.stats);
    const upload = multipart.named(url);
    const etag = await multipart.complete(upload, multipart.listed(upload, xml));
    sendXml(
      res,
      200,
      `<CompleteMultipartUploadResult><Location>${xmlEscape(url.origin + url.pathname)}</Location>` +
        `<Key>${xmlEscape(upload.key)}</Key><ETag>${xmlEscape(quoted(etag))}</ETag>` +
        `</CompleteMultipartUploadResult>`,
      objects,
    );
  }

  return {
    async open(session, expires) {
      const { key } = session.object!;
      const expiresIn = expires - ctx.clock.nowSeconds();
      const uploadId = await uploads.createMultipartUpload(key);
      session.object!.uploadId = uploadId;
      const { size, chunkSize } = session;
      const length = (i: number) =>
        chunkSize === 0 ? size : Math.min(chunkSize, size - i * chunkSize);
      return {
        upload_id: uploadId,
        upload_urls: await Promise.all(
          Array.from({ length: session.chunks }, (_, i) =>
            uploads.presignPart(key, uploadId, i + 1, length(i), expiresIn),
          ),
        ),
        completeURL: await uploads.presignComplete(key, uploadId, expiresIn),
      };
    },
    async abort(session) {
      if (session.object?.uploadId)
        await uploads.abortMultipartUpload(session.object.key, session.object.uploadId);
    },
    operation: multipartOperation,
    async handle(req, res, url, operation) {
      objects.authenticate(req.method ?? "", url.pathname, url.searchParams);
      if (operation === "PUT part") return multipart.putPart(req, res, url);
      return complete(req, res, url);
    },
  };
}
const malformed = () =>
  new StorageError(
    400,
    "MalformedXML",
    "The XML you provided was not well-formed or did not validate against our published schema.",
  );

/**
 * Reads a CompleteMultipartUpload body. The shape is fixed and tiny, so regexes do; anything
 * besides Part elements (with exactly a PartNumber and an ETag) is refused as MalformedXML.
 */
export function parseCompleteBody(xml: string): { partNumber: number; etag: string }[] {
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
