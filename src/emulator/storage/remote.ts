import { createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { mkdir, open, rm } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { ApiError, Code } from "../errors.js";
import {
  correlationIdOf,
  declaredLength,
  errorEnvelope,
  receiveBody,
  sendJson,
  type Ctx,
} from "../http.js";
import type { StorageContext, UploadProvider } from "./provider.js";

/** The slave's upload route (`[S] pkg/cluster/routes` SlaveUploadUrl): `…/upload/{session}`. */
const SLAVE_UPLOAD = "/api/v4/slave/upload/";
/** The slave's `SignatureTTL` and `CallbackTimeout` defaults (`[S] pkg/conf/types.go`). */
const CALLBACK_SIGNATURE_TTL_S = 600;
const CALLBACK_TIMEOUT_MS = 20_000;
/** CodeCallbackError (`[S] pkg/serializer/error.go`): the slave could not report to the master. */
const CALLBACK_ERROR = 50007;

/** The slave's record of one upload (its KV `upload_session_<id>`). */
interface SlaveSession {
  /** The object the finished file becomes, which downloads read. */
  key: string;
  dir: string;
  /** The pre-allocated file the chunks are written into; the object's once stored. */
  file: string;
  size: number;
  chunkSize: number;
  chunks: number;
  received: Set<number>;
  expiresAt: number;
  callback: string;
}

/**
 * A remote (slave) node: the master creates the upload session on the slave, which
 * pre-allocates the file (the remote wizard's `pre_allocate`, what lets chunks arrive out of
 * order), and hands the client the slave's upload URL and a signed `Authorization` value. The
 * client POSTs each chunk as `?chunk=i`; the request carrying the last missing one makes the
 * slave complete: it stores the file and calls the master's callback itself, relaying a
 * failure as the chunk's error envelope. Answers are Cloudreve envelopes, always HTTP 200
 * (`[S] routers/controllers/slave.go`, `service/explorer/upload.go` processChunkUpload).
 */
export function remoteProvider(ctx: StorageContext): UploadProvider {
  const { objects, stats, clock } = ctx;
  /** The node's `SlaveKey`, shared with the master. */
  const slaveKey = randomBytes(32);
  const sessions = new Map<string, SlaveSession>();

  const sign = (content: string, expires: number) => hmacSign(slaveKey, content, expires);

  /** SignRequired, then SlaveUpload; the chunk's bytes go straight into the file. */
  async function receiveChunk(c: Ctx, url: URL): Promise<void> {
    const path = decodedPath(url);
    const denied = checkSigned(slaveKey, c.req, signContent(c.req, path), clock.nowSeconds());
    if (denied) throw denied;
    const id = path.slice(SLAVE_UPLOAD.length);
    const s = sessions.get(id);
    if (!s || s.expiresAt <= clock.now()) throw new ApiError(Code.UploadSessionExpired, "");
    // strconv.Atoi, its error ignored: anything but an integer is chunk 0.
    const raw = c.query.get("chunk") ?? "";
    const index = /^[+-]?\d+$/.test(raw) ? Number(raw) : 0;
    // No range check on the slave: past the end, the expected length is negative (or 0 at the
    // very end), so the length check is what refuses an index out of range.
    const last = s.chunkSize === 0 || (index + 1) * s.chunkSize >= s.size;
    const expected = last ? s.size - index * s.chunkSize : s.chunkSize;
    if (declaredLength(c) !== expected) {
      throw new ApiError(
        Code.InvalidContentLength,
        `Invalid Content-Length (expected: ${expected})`,
      );
    }
    const offset = index * s.chunkSize;
    // The local driver's seek to a negative offset fails.
    if (offset < 0) throw new ApiError(Code.IOFailed, "Failed to upload file");
    const got = await receiveBody(c, s.file, expected, { offset });
    if (got !== expected) {
      throw new ApiError(Code.IOFailed, "Uploaded data does not match purposed size");
    }
    // MarkChunkUploaded: a session cancelled meanwhile records nothing; only the request that
    // makes the set complete completes, so a chunk re-sent after a failed callback answers 0.
    if (sessions.get(id) !== s) return;
    const wasComplete = s.received.size >= s.chunks;
    s.received.add(index);
    if (!wasComplete && s.received.size >= s.chunks) await complete(id, s);
  }

  /** CompleteUpload on the slave: the file is stored, then the master is told. */
  async function complete(id: string, s: SlaveSession): Promise<void> {
    await objects.putObject(s.key, s.file);
    s.file = objects.objectPath(s.key);
    const failure = await callBack(s.callback);
    // The session (and the stored file) stay until the master cancels: a failed callback is
    // not retried by the slave.
    if (failure) throw failure;
    sessions.delete(id);
    await rm(s.dir, { recursive: true, force: true });
  }

  /** The slave's signed POST to the master (`[S] driver/local/local.go` CompleteUpload). */
  async function callBack(callback: string): Promise<ApiError | undefined> {
    const correlationId = randomUUID();
    const path = decodedPath(new URL(callback));
    const content = goJson({
      Path: path,
      Header: `X-Cr-Correlation-Id=${correlationId}`,
      Body: "",
    });
    let reply: Response;
    try {
      reply = await fetch(callback, {
        method: "POST",
        headers: {
          authorization: `Bearer Cr ${sign(content, clock.nowSeconds() + CALLBACK_SIGNATURE_TTL_S)}`,
          "x-cr-correlation-id": correlationId,
        },
        signal: AbortSignal.timeout(CALLBACK_TIMEOUT_MS),
      });
    } catch {
      return new ApiError(CALLBACK_ERROR, "Slave cannot send callback request");
    }
    const envelope = parseEnvelope(await reply.text().catch(() => ""));
    if (!envelope) {
      return new ApiError(
        CALLBACK_ERROR,
        `Slave cannot parse callback response from master (StatusCode=${reply.status}).`,
      );
    }
    return envelope.code === 0 ? undefined : new ApiError(envelope.code, envelope.msg);
  }

  return {
    async open(session, expires) {
      const dir = objects.partsDir(session.id);
      await mkdir(dir, { recursive: true });
      const file = join(dir, "upload");
      const handle = await open(file, "w");
      await handle.truncate(session.size);
      await handle.close();
      sessions.set(session.id, {
        key: session.object!.key,
        dir,
        file,
        size: session.size,
        chunkSize: session.chunkSize,
        chunks: session.chunks,
        received: new Set(),
        expiresAt: session.expiresAt,
        callback: ctx.callbackUrl(session),
      });
      // The master signs the upload URL's path (no body, no X-Cr- headers) until the session
      // expires; the client sends the value as its Authorization header.
      const path = `${SLAVE_UPLOAD}${session.id}`;
      const content = goJson({ Path: path, Header: "", Body: "" });
      return {
        upload_urls: [`${objects.url}${path}`],
        credential: `Bearer Cr ${sign(content, expires)}`,
      };
    },

    /** The master's DELETE of the slave session: the partial (or stored) file goes with it. */
    async abort(session) {
      const s = sessions.get(session.id);
      if (!s) return;
      sessions.delete(session.id);
      await objects.deleteObject(s.key);
      await rm(s.dir, { recursive: true, force: true });
    },

    operation(req, url) {
      const id = url.pathname.startsWith(SLAVE_UPLOAD) && url.pathname.slice(SLAVE_UPLOAD.length);
      return req.method === "POST" && id && !id.includes("/") ? "POST chunk" : undefined;
    },

    async handle(req, res, url) {
      const c: Ctx = {
        req,
        res,
        params: {},
        query: url.searchParams,
        user: null,
        correlationId: correlationIdOf(req),
        countIn: (n) => void (stats.bytesIn += n),
        countOut: (n) => void (stats.bytesOut += n),
      };
      try {
        await receiveChunk(c, url);
        sendJson(c, { code: 0, msg: "" });
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        // request.BlackHole: the rest of a refused body is read and dropped.
        req.resume();
        sendJson(c, errorEnvelope(err, c.correlationId));
      }
    },

    // RemoteCallbackAuth (`[S] middleware/auth.go`): the slave's signature on its callback,
    // whose body is the empty one the slave sends.
    authorizeCallback(req, url) {
      return checkSigned(slaveKey, req, signContent(req, decodedPath(url)), clock.nowSeconds());
    },
  };
}

/** Go's URL.Path: the path decoded. */
function decodedPath(url: URL): string {
  try {
    return decodeURIComponent(url.pathname);
  } catch {
    return url.pathname;
  }
}

/**
 * What a request's signature covers (`[S] pkg/auth/auth.go` getSignContent): its path, its
 * `X-Cr-*` headers but X-Cr-Filename (canonical names, sorted) and, except for slave upload
 * data, its body — empty for every request signed here.
 */
function signContent(req: IncomingMessage, path: string): string {
  const headers = Object.entries(req.headersDistinct)
    .filter(([name]) => name.startsWith("x-cr-") && name !== "x-cr-filename")
    .map(([name, values]) => `${canonicalHeader(name)}=${values?.[0] ?? ""}`)
    .sort();
  return goJson({ Path: path, Header: headers.join("&"), Body: "" });
}

const canonicalHeader = (name: string) =>
  name.replace(/(^|-)([a-z])/g, (_all, dash: string, c: string) => dash + c.toUpperCase());

/** encoding/json's escaping of <, > and & (and U+2028/9), which the signed string carries. */
function goJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** HMACAuth.Sign: URL-safe base64 (padded) of HMAC-SHA256(content ":" expires), then ":" expires. */
function hmacSign(key: Buffer, content: string, expires: number): string {
  const mac = createHmac("sha256", key).update(`${content}:${expires}`).digest("base64");
  return `${mac.replace(/\+/g, "-").replace(/\//g, "_")}:${expires}`;
}

/** CheckRequest and HMACAuth.Check: the error the middleware answers, or undefined. */
function checkSigned(
  key: Buffer,
  req: IncomingMessage,
  content: string,
  nowSeconds: number,
): ApiError | undefined {
  const header = req.headers.authorization;
  if (header === undefined) {
    return new ApiError(Code.NoPermission, "authorization header is missing");
  }
  const given = header.startsWith("Bearer Cr ") ? header.slice("Bearer Cr ".length) : header;
  const expiresText = given.slice(given.lastIndexOf(":") + 1);
  if (expiresText === "") return new ApiError(Code.NoPermission, "expire timestamp is missing");
  if (!/^[+-]?\d+$/.test(expiresText)) return new ApiError(Code.InvalidSign, "sign expired");
  const expires = Number(expiresText);
  if (expires < nowSeconds && expires !== 0) {
    return new ApiError(Code.SignExpired, "signature expired");
  }
  const expected = Buffer.from(hmacSign(key, content, expires));
  const got = Buffer.from(given);
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
    return new ApiError(Code.InvalidSign, "invalid sign");
  }
  return undefined;
}

/** The master's answer as the slave decodes it: an envelope, or undefined when it is none. */
function parseEnvelope(text: string): { code: number; msg: string } | undefined {
  try {
    const body = JSON.parse(text) as unknown;
    if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
    const { code = 0, msg = "" } = body as { code?: unknown; msg?: unknown };
    if (typeof code !== "number" || typeof msg !== "string") return undefined;
    return { code, msg };
  } catch {
    return undefined;
  }
}
