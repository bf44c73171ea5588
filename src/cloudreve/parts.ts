import { createReadStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { BadRequest } from "../errors.js";
import type { UploadSession } from "./types.js";
import type { UploadRequest } from "./upload-request.js";

const MEMORY_CHUNK_BYTES = 64 * 1024 * 1024;

/**
 * Reads a stream piece by piece, never more than asked for: the rest waits for the next read.
 * `onBytes` sees each piece handed out, so every byte of the body exactly once.
 */
export class ExactReader {
  private readonly pieces: AsyncIterator<Buffer>;
  private leftover: Buffer | undefined;

  constructor(
    source: Readable,
    private readonly onBytes?: (piece: Buffer) => void,
  ) {
    this.pieces = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** Up to `max` bytes; undefined when the stream has ended. */
  async next(max: number): Promise<Buffer | undefined> {
    const piece = await this.take(max);
    if (piece) this.onBytes?.(piece);
    return piece;
  }

  private async take(max: number): Promise<Buffer | undefined> {
    let piece = this.leftover;
    this.leftover = undefined;
    // Empty pieces carry nothing (a stream may yield them): only the end is an end.
    while (!piece?.length) {
      const next = await this.pieces.next();
      if (next.done) return undefined;
      piece = next.value;
    }
    if (piece.length > max) {
      this.leftover = piece.subarray(max);
      piece = piece.subarray(0, max);
    }
    return piece;
  }

  /** Fails unless the stream ends here: a body longer than declared is not stored cut short. */
  async expectEnd(): Promise<void> {
    // Not handed out: a byte past the declared length belongs to no content.
    if ((await this.take(1)) !== undefined) {
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

export function inMemory(bytes: Buffer): ChunkKeeper {
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
export class ChunkTee {
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
export type PartSender<T> = (
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
export async function sendParts<T>(
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
  const reader = new ExactReader(source, upload.onBytes);
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
