import { createHash, randomBytes, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { UploadSession } from "../state.js";
import { quoted, StorageError, xmlEscape } from "./objects.js";
import { sendXml } from "./origin.js";
import type { StorageContext, UploadProvider } from "./provider.js";

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

const noSuchUpload = () =>
  new StorageError(404, "NoSuchUpload", "The specified multipart upload does not exist.");
const unquoted = (etag: string) => etag.trim().replace(/^"(.*)"$/, "$1");

/**
 * S3 multipart uploads, as the s3, ks3 and cos drivers use them (`[S] driver/s3/s3.go` Token):
 * the session creates the multipart upload and presigns one PUT per part and the completion
 * POST; the client sends the parts, completes with the XML list of their ETags, then calls
 * Cloudreve back itself.
 */
export function s3Provider(ctx: StorageContext): UploadProvider {
  const { objects, stats } = ctx;
  const uploads = new Map<string, MultipartUpload>();

  async function putPart(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const uploadId = url.searchParams.get("uploadId")!;
    const upload = uploads.get(uploadId);
    if (!upload || upload.key !== objects.keyOf(url.pathname)) throw noSuchUpload();
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
    await mkdir(upload.dir, { recursive: true });
    const path = join(upload.dir, `${partNumber}.${randomUUID()}`);
    const md5 = createHash("md5");
    let size = 0;
    const tap = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        size += chunk.length;
        stats.bytesIn += chunk.length;
        md5.update(chunk);
        done(null, chunk);
      },
    });
    const received = await pipeline(req, tap, createWriteStream(path)).then(
      () => size === length,
      () => false,
    );
    // A part whose body broke off is not stored; nor one for an upload aborted meanwhile.
    if (!received || uploads.get(uploadId) !== upload) {
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

  async function complete(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) {
      stats.bytesIn += chunk.length;
      chunks.push(chunk);
    }
    const uploadId = url.searchParams.get("uploadId")!;
    const upload = uploads.get(uploadId);
    const key = objects.keyOf(url.pathname);
    if (!upload || upload.key !== key) throw noSuchUpload();
    const listed = parseCompleteBody(Buffer.concat(chunks).toString("utf8"));
    const parts: Part[] = [];
    let last = 0;
    for (const { partNumber, etag } of listed) {
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
    uploads.delete(uploadId);
    const joined = join(upload.dir, "object");
    const out = createWriteStream(joined);
    for (const part of parts) await pipeline(createReadStream(part.path), out, { end: false });
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    // A multipart object's ETag: the MD5 of the parts' binary MD5s, then "-" and their count.
    const digest = createHash("md5");
    for (const part of parts) digest.update(Buffer.from(part.etag, "hex"));
    const etag = `${digest.digest("hex")}-${parts.length}`;
    await objects.putObject(upload.key, joined, etag);
    await rm(upload.dir, { recursive: true, force: true });
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
      const uploadId = randomBytes(24).toString("base64url");
      session.object!.uploadId = uploadId;
      uploads.set(uploadId, { key, dir: objects.partsDir(uploadId), parts: new Map() });
      const partUrl = (i: number) =>
        objects.presign("PUT", key, expires, { partNumber: String(i + 1), uploadId });
      return {
        upload_id: uploadId,
        upload_urls: Array.from({ length: session.chunks }, (_, i) => partUrl(i)),
        completeURL: objects.presign("POST", key, expires, { uploadId }),
      };
    },

    async abort(session: UploadSession) {
      const upload = uploads.get(session.object?.uploadId ?? "");
      if (!upload) return;
      uploads.delete(session.object!.uploadId);
      await rm(upload.dir, { recursive: true, force: true });
    },

    operation(req, url) {
      const query = url.searchParams;
      if (req.method === "PUT" && query.has("partNumber") && query.has("uploadId"))
        return "PUT part";
      if (req.method === "POST" && query.has("uploadId")) return "POST complete";
      return undefined;
    },

    async handle(req, res, url, operation) {
      objects.authenticate(req.method ?? "", url.pathname, url.searchParams);
      if (operation === "PUT part") return putPart(req, res, url);
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
