import { Readable } from "node:stream";
import { BadRequest, UpstreamError } from "../errors.js";
import type { CloudreveApi } from "./api.js";
import type { File, UploadSession } from "./types.js";

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
  signal?: AbortSignal;
}

/** Sends the bytes of an upload session: one implementation per storage policy type (§6.2). */
export interface PolicyUploader {
  send(
    api: CloudreveApi,
    session: UploadSession,
    source: Readable,
    size: number,
    signal?: AbortSignal,
  ): Promise<void>;
}

/** Below this size, a file without a modification time goes up in one `PUT /file/content`. */
export const SMALL_FILE_LIMIT = 4 * 1024 * 1024;

/**
 * Reads a stream in pieces of exactly `size` bytes (the last may be shorter), each into a
 * buffer from `buffers`; fails if the stream ends short of `total` or runs past it.
 */
async function* exactChunks(
  source: Readable,
  size: number,
  total: number,
  buffers: () => Promise<Buffer>,
): AsyncGenerator<Buffer> {
  if (total === 0) {
    yield Buffer.alloc(0);
    return;
  }
  let remaining = total;
  let chunk = (await buffers()).subarray(0, Math.min(size, remaining));
  let filled = 0;
  for await (const data of source as AsyncIterable<Buffer>) {
    let offset = 0;
    while (offset < data.length) {
      if (remaining === 0) {
        throw new BadRequest("the request body is longer than its declared length");
      }
      const take = Math.min(data.length - offset, chunk.length - filled);
      data.copy(chunk, filled, offset, offset + take);
      filled += take;
      offset += take;
      if (filled === chunk.length) {
        remaining -= chunk.length;
        yield chunk;
        if (remaining > 0) chunk = (await buffers()).subarray(0, Math.min(size, remaining));
        filled = 0;
      }
    }
  }
  if (remaining > 0) throw new BadRequest("the request body ended before its declared length");
}

/** A fixed set of reusable buffers: memory stays at `count` chunks however big the file. */
class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly waiting: ((b: Buffer) => void)[] = [];

  constructor(size: number, count: number) {
    // Unpooled, so each chunk's ArrayBuffer is exactly its buffer and can be handed back whole.
    for (let i = 0; i < count; i++) this.free.push(Buffer.allocUnsafeSlow(size));
  }

  take(): Promise<Buffer> {
    const b = this.free.pop();
    return b ? Promise.resolve(b) : new Promise((resolve) => this.waiting.push(resolve));
  }

  give(chunk: Buffer): void {
    const whole = Buffer.from(chunk.buffer, 0, chunk.buffer.byteLength);
    const next = this.waiting.shift();
    if (next) next(whole);
    else this.free.push(whole);
  }
}

/**
 * Local and relay policies: chunks are POSTed to Cloudreve itself (§6.2), in order, each
 * exactly `chunk_size` bytes except the last; `chunk_concurrency` of them may be in flight
 * (one by default: the local driver writes sequentially). The next chunk is read from the
 * client while the previous one uploads, into one of `chunk_concurrency + 1` reused buffers.
 * Completion is automatic on the last chunk.
 */
export const relayUploader: PolicyUploader = {
  async send(api, session, source, size, signal) {
    const chunkSize = session.chunk_size > 0 ? session.chunk_size : Math.max(size, 1);
    const parallel = Math.max(1, session.storage_policy?.chunk_concurrency ?? 1);
    const pool = new BufferPool(Math.min(chunkSize, Math.max(size, 1)), parallel + 1);
    const inFlight = new Set<Promise<unknown>>();
    let index = 0;
    for await (const chunk of exactChunks(source, chunkSize, size, () => pool.take())) {
      while (inFlight.size >= parallel) await Promise.race(inFlight);
      const sent: Promise<unknown> = api
        .uploadChunk(session.session_id, index++, chunk, signal)
        .finally(() => {
          inFlight.delete(sent);
          pool.give(chunk);
        });
      // Awaited through the race above or at the end; a failure meanwhile must not go unhandled.
      sent.catch(() => undefined);
      inFlight.add(sent);
    }
    await Promise.all(inFlight);
  },
};

const uploaders: Record<string, PolicyUploader> = { local: relayUploader };

function uploaderFor(session: UploadSession): PolicyUploader | undefined {
  const policy = session.storage_policy;
  if (!policy || policy.relay) return relayUploader;
  return uploaders[policy.type];
}

/**
 * Writes one file and returns its final state. Small files without a modification time take
 * the one-call path; everything else an upload session, cancelled on any failure so that no
 * placeholder or 24-hour path lock is left behind (§5.11, §6.4).
 */
export async function uploadFile(api: CloudreveApi, r: UploadRequest): Promise<File> {
  if (r.mtimeMs === undefined && r.size <= SMALL_FILE_LIMIT) {
    let body: Buffer = Buffer.alloc(0);
    const whole = () => Promise.resolve(Buffer.allocUnsafe(r.size));
    for await (const chunk of exactChunks(r.source, Math.max(r.size, 1), r.size, whole))
      body = chunk;
    if (!r.replace) {
      // PUT /file/content is an upsert; without `replace` the caller wants Exists on a clash.
      return uploadBySession(api, { ...r, source: Readable.from([body]) });
    }
    return api.putContent(r.uri, body, r.size);
  }
  return uploadBySession(api, r);
}

async function uploadBySession(api: CloudreveApi, r: UploadRequest): Promise<File> {
  const session = await api.createUploadSession({
    uri: r.uri,
    size: r.size,
    lastModified: r.mtimeMs,
    replace: r.replace,
    mimeType: r.mimeType,
  });
  try {
    const uploader = uploaderFor(session);
    if (!uploader) {
      throw new UpstreamError(
        `storage policy type "${session.storage_policy?.type}" is not supported yet`,
      );
    }
    await uploader.send(api, session, r.source, r.size, r.signal);
  } catch (err) {
    await api.cancelUpload(session.session_id, r.uri).catch(() => undefined);
    throw err;
  }
  return api.info(r.uri);
}
