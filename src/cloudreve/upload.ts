import { createReadStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { request } from "undici";
import { BadRequest, NotFound, UpstreamError } from "../errors.js";
import type { CloudreveApi } from "./api.js";
import { unreachable } from "./transport.js";
import type { File, UploadSession } from "./types.js";
import type { JournalTicket } from "./upload-journal.js";

export interface UploadRequest {
  uri: string;
  source: Readable;
  /** Exact byte count the source will deliver. */
  size: number;
  /** Modification time in milliseconds; only an upload session can set it. */
  mtimeMs?: number;
  /** Replace an existing file instead of failing with Exists. */
  replace: boolean;
  mimeType?: string;
  /** The version being replaced, if known: the upload must leave another one current. */
  previousEntity?: string;
  /**
   * Chunks up to this size are kept in memory for a retry, larger ones in a temporary file
   * (relay mode sends the whole file as one chunk). Default 64 MiB.
   */
  memoryChunkBytes?: number;
  signal?: AbortSignal;
}

/** Sends the bytes of an upload session: one implementation per storage policy type (§6.2). */
export interface PolicyUploader {
  send(api: CloudreveApi, session: UploadSession, upload: UploadRequest): Promise<void>;
}

const MEMORY_CHUNK_BYTES = 64 * 1024 * 1024;

/** Below this size, a file without a modification time goes up in one `PUT /file/content`. */
export const SMALL_FILE_LIMIT = 4 * 1024 * 1024;

/** Reads a stream piece by piece, never more than asked for: the rest waits for the next read. */
class ExactReader {
  private readonly pieces: AsyncIterator<Buffer>;
  private leftover: Buffer | undefined;

  constructor(source: Readable) {
    this.pieces = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** Up to `max` bytes; undefined when the stream has ended. */
  async next(max: number): Promise<Buffer | undefined> {
    let piece = this.leftover ?? (await this.pieces.next()).value;
    this.leftover = undefined;
    if (piece === undefined) return undefined;
    if (piece.length > max) {
      this.leftover = piece.subarray(max);
      piece = piece.subarray(0, max);
    }
    return piece;
  }

  /** Fails unless the stream ends here: a body longer than declared is not stored cut short. */
  async expectEnd(): Promise<void> {
    if ((await this.next(1)) !== undefined) {
      throw new BadRequest("the request body is longer than its declared length");
    }
  }
}

const endedEarly = () => new BadRequest("the request body ended before its declared length");

/** Where a chunk's bytes wait for a retry: a reused buffer, or a file for a large chunk. */
interface ChunkKeeper {
  readonly length: number;
  keep(piece: Buffer, at: number): Promise<void> | void;
  /** The kept bytes, for one more try. */
  replay(): Buffer | Readable;
  /** Nothing will be replayed any more. */
  release(): Promise<void>;
}

function inMemory(bytes: Buffer): ChunkKeeper {
  return {
    length: bytes.length,
    keep: (piece, at) => void piece.copy(bytes, at),
    replay: () => bytes,
    release: async () => undefined,
  };
}

/** A chunk too large to hold in memory (relay mode sends a whole file as one) waits on disk. */
async function onDisk(length: number): Promise<ChunkKeeper> {
  const dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-chunk-"));
  const path = join(dir, "chunk");
  const file = await open(path, "w+");
  return {
    length,
    keep: async (piece, at) => {
      await file.write(piece, 0, piece.length, at);
    },
    replay: () => createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 20 }),
    release: async () => {
      // A close that fails leaves nothing behind: the folder and its file go next.
      await file.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * One chunk on its way up: its bytes stream to the first try as they arrive from the client
 * and are kept, so a retry resends them once they are all in.
 */
class ChunkTee {
  private live: PassThrough | undefined;
  /** Bytes received so far; the chunk is complete at `kept.length`. */
  private received = 0;
  private readonly waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  /** Why the bytes will never all arrive (the client went away, the body was short). */
  private failure: unknown;

  constructor(readonly kept: ChunkKeeper) {}

  /** The body for a try: the live stream first, the kept bytes afterwards. */
  async body(attempt: number): Promise<Buffer | Readable> {
    // Streaming needs every byte to pass by: only a first try that starts before any arrived.
    if (attempt === 0 && !this.live && this.received === 0 && this.kept.length > 0) {
      this.live = new PassThrough({ highWaterMark: 256 * 1024 });
      return this.live;
    }
    // The live stream is no longer read: let the filling go on without it.
    this.live?.destroy();
    if (this.failure !== undefined) throw this.failure;
    if (this.received < this.kept.length) {
      await new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    }
    return this.kept.replay();
  }

  /**
   * Reads the chunk's bytes from the client, feeding the live stream as they come; `stop`
   * ends the wait for a slow client once the upload has failed anyway.
   */
  async fill(reader: ExactReader, stop?: AbortSignal): Promise<void> {
    try {
      while (this.received < this.kept.length) {
        const next = reader.next(this.kept.length - this.received);
        const piece = await (stop ? unlessStopped(next, stop) : next);
        if (!piece) throw endedEarly();
        await this.kept.keep(piece, this.received);
        this.received += piece.length;
        const live = this.live;
        if (live && !live.destroyed && !live.write(piece)) await drainedOrGone(live);
      }
    } catch (err) {
      // Tries reading the live stream or waiting for the bytes must fail too, not wait forever.
      this.failure = err;
      this.live?.destroy(err as Error);
      for (const w of this.waiters.splice(0)) w.reject(err);
      throw err;
    }
    this.live?.end();
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  /** The upload is over: nobody reads the live stream or the kept bytes any more. */
  async release(): Promise<void> {
    this.live?.destroy();
    await this.kept.release();
  }
}

function unlessStopped<T>(work: Promise<T>, stop: AbortSignal): Promise<T> {
  if (stop.aborted) return Promise.reject(stop.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onStop = () => reject(stop.reason as Error);
    stop.addEventListener("abort", onStop, { once: true });
    work.then(resolve, reject).finally(() => stop.removeEventListener("abort", onStop));
  });
}

function drainedOrGone(stream: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.once("drain", done);
    stream.once("close", done);
  });
}

/** A fixed set of reusable buffers: memory stays at `count` chunks however big the file. */
class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly waiting: ((b: Buffer) => void)[] = [];

  constructor(size: number, count: number) {
    for (let i = 0; i < count; i++) this.free.push(Buffer.allocUnsafeSlow(size));
  }

  take(): Promise<Buffer> {
    const b = this.free.pop();
    return b ? Promise.resolve(b) : new Promise((resolve) => this.waiting.push(resolve));
  }

  give(buffer: Buffer): void {
    const next = this.waiting.shift();
    if (next) next(buffer);
    else this.free.push(buffer);
  }
}

/** Sends one part of an upload; `body` gives its bytes per try. Resolves to what it returned. */
type PartSender<T> = (
  index: number,
  length: number,
  body: (attempt: number) => Promise<Buffer | Readable>,
  signal: AbortSignal,
) => Promise<T>;

/**
 * The body of an upload cut into parts of `chunk_size` (the last shorter; an empty file is one
 * empty part), up to `chunk_concurrency` in flight, each handed to `sendPart`. Each part streams
 * through while it arrives and is kept (in a reused buffer, or on disk when large) for a retry.
 * The first part that fails stops the others and fails the upload: every part's outcome is
 * awaited, none can be lost. Resolves to the parts' results in order.
 */
async function sendParts<T>(
  session: UploadSession,
  upload: UploadRequest,
  sendPart: PartSender<T>,
): Promise<T[]> {
  const { source, size, signal, memoryChunkBytes = MEMORY_CHUNK_BYTES } = upload;
  const chunkSize = session.chunk_size > 0 ? session.chunk_size : Math.max(size, 1);
  const parallel = Math.max(1, session.storage_policy?.chunk_concurrency ?? 1);
  const parts = size === 0 ? 1 : Math.ceil(size / chunkSize);
  const spool = chunkSize > memoryChunkBytes;
  const pool = spool ? undefined : new BufferPool(Math.min(chunkSize, Math.max(size, 1)), parallel);
  const reader = new ExactReader(source);
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  let failure: { error: unknown } | undefined;
  const results: T[] = [];
  const inFlight = new Set<Promise<unknown>>();
  const sends: Promise<unknown>[] = [];
  try {
    for (let index = 0; index < parts && !failure; index++) {
      while (inFlight.size >= parallel) await Promise.race(inFlight);
      if (failure) break;
      const length = Math.min(chunkSize, size - index * chunkSize);
      const buffer = await pool?.take();
      const tee = new ChunkTee(
        buffer ? inMemory(buffer.subarray(0, length)) : await onDisk(length),
      );
      const sent: Promise<unknown> = sendPart(
        index,
        length,
        (attempt) => tee.body(attempt),
        stop.signal,
      )
        .then((result) => void (results[index] = result))
        .catch((error: unknown) => {
          failure ??= { error };
          stop.abort(error);
        })
        .finally(async () => {
          await tee.release();
          inFlight.delete(sent);
          if (buffer) pool?.give(buffer);
        });
      inFlight.add(sent);
      sends.push(sent);
      await tee.fill(reader, stop.signal);
    }
    if (!failure) await reader.expectEnd();
  } catch (error) {
    failure ??= { error };
    stop.abort(error);
  } finally {
    await Promise.all(sends);
    signal?.removeEventListener("abort", onAbort);
  }
  if (failure) throw failure.error;
  return results;
}

/**
 * Local and relay policies: chunks are POSTed to Cloudreve itself (§6.2), in order (one at a
 * time by default: the local driver writes sequentially). Completion is automatic on the last.
 */
export const relayUploader: PolicyUploader = {
  async send(api, session, upload) {
    await sendParts(session, upload, (index, length, body, signal) =>
      api.uploadChunk(session.session_id, index, length, body, signal),
    );
  },
};

/**
 * S3 and the stores that speak its multipart protocol, KS3 and COS (§6.2): each part is PUT to
 * its presigned URL straight to the storage and its ETag kept; the parts are completed with
 * the XML list at `completeURL`; then the client callback has Cloudreve check the object's
 * size and finish. A presigned URL cannot be renewed, so a part the storage refuses (403)
 * fails the upload.
 */
function multipartUploader(extraCompleteHeaders: Record<string, string>): PolicyUploader {
  return {
    async send(api, session, upload) {
      const urls = session.upload_urls ?? [];
      const etags = await sendParts(session, upload, async (index, length, body, signal) => {
        const url = urls[index];
        if (!url) throw new UpstreamError(`Cloudreve gave no upload URL for part ${index + 1}`);
        const reply = await storageCall(api, url, "PUT", {
          body,
          length,
          headers: { "content-type": "application/octet-stream" },
          signal,
        });
        const etag = reply.headers.etag;
        if (typeof etag !== "string") throw new UpstreamError("the storage gave a part no ETag");
        return etag;
      });
      if (!session.completeURL) throw new UpstreamError("Cloudreve gave no completion URL");
      const xml = Buffer.from(
        `<CompleteMultipartUpload>${etags
          .map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${etag}</ETag></Part>`)
          .join("")}</CompleteMultipartUpload>`,
      );
      await storageCall(api, session.completeURL, "POST", {
        body: async () => xml,
        length: xml.length,
        headers: { "content-type": "application/xml", ...extraCompleteHeaders },
        signal: upload.signal,
        // Completed by a try whose answer was lost: the upload id is gone.
        doneWhen: (status) => status === 404,
      });
      const type = session.storage_policy?.type ?? "s3";
      try {
        await api.uploadCallback(type, session.session_id, session.callback_secret);
      } catch (err) {
        // A callback that completed but whose answer was lost shows as the stored file; when
        // that cannot be checked either, the callback's own error stands (and cancels).
        const file = await api.info(upload.uri).catch(() => undefined);
        if (!file || !isStored(file, upload)) throw err;
      }
    },
  };
}

/**
 * One call to a storage provider's presigned URL (no Cloudreve token), through the account's
 * request queue: retried on 5xx and lost connections, failing on any other status.
 */
async function storageCall(
  api: CloudreveApi,
  url: string,
  method: "PUT" | "POST",
  call: {
    body: (attempt: number) => Promise<Buffer | Readable>;
    length: number;
    headers: Record<string, string>;
    signal?: AbortSignal;
    doneWhen?: (status: number) => boolean;
  },
): Promise<{ headers: Record<string, string | string[] | undefined> }> {
  const attempt = async (n: number) => {
    let res;
    try {
      res = await request(url, {
        method,
        headers: { ...call.headers, "content-length": String(call.length) },
        body: await call.body(n),
        dispatcher: api.transport.dispatcher,
        signal: call.signal,
      });
    } catch (err) {
      if (call.signal?.aborted) throw err;
      throw unreachable(`the storage is unreachable for ${method}`, err);
    }
    // The body only names the storage's error code; a failed read of it leaves the status.
    const text = await res.body.text().catch(() => "");
    const ok = res.statusCode < 300 || (n > 0 && call.doneWhen?.(res.statusCode));
    if (ok) return { headers: res.headers };
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
    throw new UpstreamError(
      `the storage answered HTTP ${res.statusCode}${code ? ` (${code})` : ""} for ${method}`,
      { retryable: res.statusCode >= 500, httpStatus: res.statusCode },
    );
  };
  return api.transport.queue.run(attempt, {
    idempotent: true,
    priority: "bulk",
    signal: call.signal,
  });
}

const uploaders: Record<string, PolicyUploader> = {
  local: relayUploader,
  s3: multipartUploader({}),
  ks3: multipartUploader({}),
  cos: multipartUploader({ "x-cos-forbid-overwrite": "true" }),
};

function uploaderFor(session: UploadSession): PolicyUploader | undefined {
  const policy = session.storage_policy;
  if (!policy || policy.relay) return relayUploader;
  return uploaders[policy.type];
}

/**
 * Writes one file and returns its final state, only once Cloudreve shows it: the size sent, a
 * version other than `previousEntity`, no upload pending. Small files without a modification
 * time take the one-call path; everything else an upload session, cancelled on any failure so
 * that no placeholder or 24-hour path lock is left behind (§5.11, §6.4).
 */
export async function uploadFile(api: CloudreveApi, upload: UploadRequest): Promise<File> {
  if (upload.mtimeMs === undefined && upload.size <= SMALL_FILE_LIMIT) {
    const reader = new ExactReader(upload.source);
    // Read whole, with no try streaming from it: the same filling as a chunk's.
    const body = Buffer.allocUnsafe(upload.size);
    await new ChunkTee(inMemory(body)).fill(reader);
    await reader.expectEnd();
    if (!upload.replace) {
      // PUT /file/content is an upsert; without `replace` the caller wants Exists on a clash.
      return uploadBySession(api, { ...upload, source: Readable.from([body]) });
    }
    return stored(await api.putContent(upload.uri, body, upload.size), upload);
  }
  return uploadBySession(api, upload);
}

/** Cloudreve shows the write: the size sent, a version other than the one replaced, nothing pending. */
function isStored(file: File, upload: UploadRequest): boolean {
  const pending = file.metadata?.["sys:upload_session_id"] !== undefined;
  const sameVersion =
    upload.previousEntity !== undefined && file.primary_entity === upload.previousEntity;
  return file.size === upload.size && !pending && !sameVersion && Boolean(file.primary_entity);
}

/** The file as Cloudreve shows it after a write, if it holds what was written. */
function stored(file: File, upload: UploadRequest): File {
  if (!isStored(file, upload)) {
    const pending = file.metadata?.["sys:upload_session_id"] !== undefined;
    throw new UpstreamError(
      `Cloudreve does not show the upload of ${upload.uri} as complete (size ${file.size} of ` +
        `${upload.size}${pending ? ", still uploading" : ""})`,
    );
  }
  return file;
}

/** Lost on the way, not refused: the upstream may have acted on the request. */
function ambiguous(err: unknown): boolean {
  return err instanceof UpstreamError && err.httpStatus === undefined && err.code === undefined;
}

async function uploadBySession(
  api: CloudreveApi,
  upload: UploadRequest,
  retried = false,
): Promise<File> {
  const ticket = await api.journal.open(upload.uri);
  let session: UploadSession;
  try {
    session = await api.createUploadSession({
      uri: upload.uri,
      size: upload.size,
      lastModified: upload.mtimeMs,
      replace: upload.replace,
      mimeType: upload.mimeType,
    });
  } catch (err) {
    if (!ambiguous(err) || retried || upload.signal?.aborted) {
      await ticket.closed();
      throw err;
    }
    // The session may exist, holding its lock: the journal frees it when the second try
    // meets that lock.
    ticket.abandoned();
    return uploadBySession(api, upload, true);
  }
  let file: File;
  try {
    await ticket.started(session.session_id);
    const uploader = uploaderFor(session);
    if (!uploader) {
      throw new UpstreamError(
        `storage policy type "${session.storage_policy?.type}" is not supported yet`,
      );
    }
    await uploader.send(api, session, upload);
    file = stored(await api.info(upload.uri), upload);
  } catch (err) {
    await cancel(api, session.session_id, upload.uri, ticket);
    throw err;
  }
  await ticket.closed();
  return file;
}

/** Cancels a session; one that cannot be cancelled now stays in the journal to be freed later. */
async function cancel(
  api: CloudreveApi,
  sessionId: string,
  uri: string,
  ticket: JournalTicket,
): Promise<void> {
  try {
    await api.cancelUpload(sessionId, uri);
  } catch (err) {
    // NotFound: the session is gone already (completed, or the file removed).
    if (!(err instanceof NotFound)) {
      ticket.abandoned();
      return;
    }
  }
  await ticket.closed();
}
