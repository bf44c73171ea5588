import type { Readable, Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { LRUCache } from "lru-cache";
import parseRange from "range-parser";
import { request, type Dispatcher } from "undici";
import { GatewayError, SessionExpired, UpstreamError } from "../errors.js";
import type { CloudreveApi } from "./api.js";
import { bulkGet, UnsupportedReply } from "./bulk-get.js";
import { errorFromEnvelope } from "./errors.js";
import { backoffMs, type RequestPriority } from "./queue.js";
import { outcomeOf, unreachable } from "./transport.js";
import { EnvelopeSchema, timestampToEpochMs } from "./types.js";

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

/** Retries of a read wait at most this long. */
const BACKOFF_MAX_MS = 5_000;
/** Signed URLs are reused until this long before they expire. */
const URL_MARGIN_MS = 60_000;
/** Without an `expires`, a URL is trusted this long. */
const URL_FALLBACK_TTL_MS = 5 * 60_000;
const CONTENT_PATH = "/api/v4/file/content/";
/**
 * Reads of at least this many bytes go through {@link bulkGet}: far less CPU per byte, but a
 * connection of its own each time, which smaller reads would feel.
 */
const BULK_FROM_BYTES = 8 * 1024 * 1024;

export interface DownloadRequest {
  uri: string;
  /** The file's `primary_entity`: signed URLs are cached per version. */
  entity: string;
  /** The version's size in bytes, telling how much the read will bring. */
  size?: number;
  /** The caller's Range header, passed through unchanged. */
  range?: string;
  signal?: AbortSignal;
  priority?: RequestPriority;
}

/** A reply of the storage, from either reader: its status and headers as sent, and its body. */
export interface Download {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  /**
   * Writes the body into `dest`, counting each piece through `sent` as it is handed over, and
   * ends `dest` unless `end` is false; rejects if either side breaks off, leaving `dest` open.
   * Chunks may be lent: `dest` must be done with each when its write callback runs (sockets
   * and files are).
   */
  pipeTo(dest: Writable, options?: PipeOptions): Promise<void>;
  /** The whole body in memory. */
  readAll(): Promise<Buffer>;
  /** Gives the body up unread. */
  discard(): void;
}

export interface PipeOptions {
  end?: boolean;
  sent?: (bytes: number) => void;
}

export interface RetryPolicy {
  /** Tries of one read: the first and every resumption or retry. Default 5. */
  attempts?: number;
  /** Backoff ceiling before the first retry; doubles each time, up to 5 s. Default 200 ms. */
  backoffMs?: number;
  /** Silence from the storage mid-body that counts as a stall. Default 60 s. */
  idleMs?: number;
}

/** How many bytes a read of `range` from a file of `size` brings; 0 when unknown or invalid. */
function requestedBytes(size: number | undefined, range: string | undefined): number {
  if (size === undefined) return 0;
  if (!range) return size;
  const parts = parseRange(size, range, { combine: true });
  if (typeof parts === "number") return 0;
  return parts.reduce((n, p) => n + p.end - p.start + 1, 0);
}

/** Where a single-part body sits in the file: first and last byte. */
interface Span {
  start: number;
  end: number;
  total: number;
}

/** The bytes a 200 or single-range 206 reply covers; undefined when it cannot be told. */
export function servedSpan(reply: Download): Span | undefined {
  const length = Number(reply.headers["content-length"]);
  if (reply.statusCode === 200 && Number.isSafeInteger(length)) {
    return { start: 0, end: length - 1, total: length };
  }
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(reply.headers["content-range"] ?? ""));
  if (reply.statusCode !== 206 || !m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) };
}

/**
 * Reads file content: `POST /file/url` once per version (cached until `expires` minus a
 * margin), then a GET of the signed URL with the caller's Range, streamed. A Cloudreve-served
 * URL may name a site origin the gateway cannot reach (the site URL is a public name); since
 * only the path is signed (§5.9), it is fetched from the configured upstream instead.
 *
 * A storage blip does not fail a read: opening is retried (5xx, resets, an expired or refused
 * signature re-signed), and a body that breaks off or stalls is resumed from the next byte the
 * client has not been given, with a Range for the rest, so the client sees the bytes of a
 * clean run. Attempts are bounded and spaced by a jittered backoff.
 */
export class Downloader {
  /** Bounded: one entry per version read recently. */
  private readonly urls = new LRUCache<string, { url: string; reuseUntil: number }>({
    max: 10_000,
  });
  private readonly pending = new Map<string, Promise<string>>();
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly idleMs: number;

  constructor(
    private readonly api: CloudreveApi,
    private readonly now: () => number = Date.now,
    private readonly bulkFromBytes = BULK_FROM_BYTES,
    retry: RetryPolicy = {},
  ) {
    this.attempts = Math.max(1, retry.attempts ?? 5);
    this.backoffMs = retry.backoffMs ?? 200;
    this.idleMs = retry.idleMs ?? api.transport.timeouts.bodyIdleMs;
  }

  async open(read: DownloadRequest): Promise<Download> {
    const budget = { left: this.attempts };
    const first = await this.openRetrying(read, read.range, budget);
    const span = servedSpan(first);
    // Only a single-part body can be resumed from where it broke.
    if (!span || span.end < span.start) return first;
    return {
      ...first,
      pipeTo: (dest) => this.resumingPipe(read, first, span, dest, budget),
    };
  }

  /** Pipes `reply` into `dest`; when the storage breaks off, goes on from the next byte. */
  private async resumingPipe(
    read: DownloadRequest,
    reply: Download,
    span: Span,
    dest: Writable,
    budget: { left: number },
  ): Promise<void> {
    let next = span.start;
    const sent = (bytes: number) => (next += bytes);
    for (let attempt = 0; ; attempt++) {
      try {
        await reply.pipeTo(dest, { end: false, sent });
        break;
      } catch (err) {
        const clientGone = read.signal?.aborted || dest.destroyed || dest.writableEnded;
        if (clientGone || budget.left <= 0 || next > span.end) throw asUpstream(err);
        await this.backoff(attempt);
        reply = await this.openRetrying(read, `bytes=${next}-${span.end}`, budget);
        const resumed = servedSpan(reply);
        if (resumed?.start !== next || resumed.end !== span.end || resumed.total !== span.total) {
          reply.discard();
          throw new UpstreamError(
            `the storage answered a resumed read of ${read.uri} with another range ` +
              `(${String(reply.headers["content-range"] ?? reply.statusCode)})`,
          );
        }
      }
    }
    await new Promise<void>((resolve, reject) =>
      dest.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
  }

  /** Opens a read, retrying transient failures and re-signing refused URLs, within `budget`. */
  private async openRetrying(
    read: DownloadRequest,
    range: string | undefined,
    budget: { left: number },
  ): Promise<Download> {
    let resign = false;
    for (let attempt = 0; ; attempt++) {
      budget.left--;
      const used = await this.url(read, resign);
      resign = false;
      let failure: unknown;
      try {
        const reply = await this.fetch(read, used, range);
        this.told(reply instanceof SessionExpired ? outcomeOf(reply) : "ok");
        if (!(reply instanceof SessionExpired)) return reply;
        failure = reply;
        // Unless a concurrent read already replaced it.
        if (this.urls.get(read.entity)?.url === used) this.urls.delete(read.entity);
        resign = true;
      } catch (err) {
        this.told(outcomeOf(err, read.signal));
        if (read.signal?.aborted || !(err instanceof GatewayError) || !err.retryable) throw err;
        failure = err;
      }
      if (budget.left <= 0) throw failure;
      // A refused signature is renewed at once; anything else gets a moment to recover.
      if (!resign) await this.backoff(attempt);
    }
  }

  /** Tells the client's observer how one opening of a read went (redirects included). */
  private told(outcome: string): void {
    this.api.transport.observer?.called("GET", "download", outcome);
  }

  private backoff(attempt: number): Promise<unknown> {
    return sleep(backoffMs(attempt, this.backoffMs, BACKOFF_MAX_MS));
  }

  /** The signed URL for a version, from the cache or fresh; concurrent misses share one request. */
  async url(
    read: Pick<DownloadRequest, "uri" | "entity" | "priority">,
    fresh = false,
  ): Promise<string> {
    const cached = this.urls.get(read.entity);
    if (!fresh && cached && cached.reuseUntil > this.now()) return cached.url;
    let pending = this.pending.get(read.entity);
    if (!pending) {
      pending = this.sign(read, fresh).finally(() => this.pending.delete(read.entity));
      this.pending.set(read.entity, pending);
    }
    return pending;
  }

  private async sign(
    read: Pick<DownloadRequest, "uri" | "entity" | "priority">,
    fresh: boolean,
  ): Promise<string> {
    // Pinned to the version the caller knows: a URL cached under its ETag never serves newer
    // content, whatever changed upstream since.
    const { url, expires } = await this.api.fileUrl(read.uri, {
      entity: read.entity,
      priority: read.priority,
      fresh,
    });
    if (!url) throw new UpstreamError(`Cloudreve gave no download URL for ${read.uri}`);
    const expiresAt = expires ? timestampToEpochMs(expires) : this.now() + URL_FALLBACK_TTL_MS;
    const reachable = this.reachable(url);
    this.urls.set(read.entity, { url: reachable, reuseUntil: expiresAt - URL_MARGIN_MS });
    return reachable;
  }

  private reachable(signed: string): string {
    const url = new URL(signed);
    const at = url.pathname.indexOf(CONTENT_PATH);
    if (at < 0) return signed; // a storage provider's presigned URL: used as given
    return `${this.api.transport.origin}${url.pathname.slice(at)}${url.search}`;
  }

  /**
   * One GET; an expired signature (JSON 40005 with HTTP 200, or a storage's 401/403) comes
   * back as a value to re-sign on.
   */
  private async fetch(
    read: DownloadRequest,
    url: string,
    range: string | undefined,
  ): Promise<Download | SessionExpired> {
    const headers: Record<string, string> = range ? { range } : {};
    const bulk = requestedBytes(read.size, range) >= this.bulkFromBytes;
    let res: Download;
    try {
      // A storage may send the read elsewhere (a bucket's regional endpoint, a CDN).
      for (let target = url, hops = 0; ; hops++) {
        res = bulk
          ? await this.bulk(target, headers, read.signal)
          : await this.streamed(target, headers, read.signal);
        const location = res.headers.location;
        if (!REDIRECTS.has(res.statusCode) || typeof location !== "string") break;
        res.discard();
        if (hops === MAX_REDIRECTS)
          throw new UpstreamError(`the storage redirected the download ${hops + 1} times`);
        target = new URL(location, target).toString();
      }
    } catch (err) {
      if (read.signal?.aborted) throw err;
      throw asUpstream(err);
    }
    const type = String(res.headers["content-type"] ?? "");
    // Content replies always carry an ETag; an envelope (an error) never does.
    if (res.statusCode === 200 && type.startsWith("application/json") && !res.headers.etag) {
      const body = await res.readAll().catch(() => Buffer.alloc(0));
      const env = EnvelopeSchema.safeParse(safeJson(body));
      if (!env.success)
        throw new UpstreamError("download answered with a reply that is not content");
      const error = errorFromEnvelope(env.data);
      if (error instanceof SessionExpired) return error;
      throw error;
    }
    if (res.statusCode === 401 || res.statusCode === 403) {
      res.discard();
      return new SessionExpired(`the storage refused the signed URL (HTTP ${res.statusCode})`);
    }
    if (res.statusCode >= 500 || res.statusCode === 404) {
      res.discard();
      throw new UpstreamError(`download answered HTTP ${res.statusCode}`, {
        retryable: res.statusCode >= 500,
        httpStatus: res.statusCode,
      });
    }
    return res;
  }

  private async bulk(
    url: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Download> {
    try {
      return await bulkGet(new URL(url), headers, signal, this.idleMs);
    } catch (err) {
      // A reply this reader cannot frame is asked again of the general client.
      if (err instanceof UnsupportedReply) return this.streamed(url, headers, signal);
      throw err;
    }
  }

  private async streamed(
    url: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Download> {
    const res: Dispatcher.ResponseData = await request(url, {
      method: "GET",
      headers,
      dispatcher: this.api.transport.dispatcher,
      signal,
    });
    return {
      statusCode: res.statusCode,
      headers: res.headers,
      pipeTo: (dest, options) => pump(res.body, dest, options),
      readAll: async () => Buffer.from(await res.body.arrayBuffer()),
      discard: () => void res.body.dump().catch(() => {}),
    };
  }
}

/**
 * Copies `source` into `dest` with back-pressure; unlike `pipeline`, a source that breaks off
 * leaves `dest` open, so the rest can follow from another source.
 */
async function pump(
  source: Readable,
  dest: Writable,
  options: { end?: boolean; sent?: (bytes: number) => void } = {},
): Promise<void> {
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (dest.destroyed) throw new UpstreamError("download: the destination closed");
      options.sent?.(chunk.length);
      if (!dest.write(chunk)) await drainedOrClosed(dest);
    }
  } catch (err) {
    source.destroy();
    throw err;
  }
  if (options.end === false) return;
  await new Promise<void>((resolve, reject) =>
    dest.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
}

function drainedOrClosed(dest: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      dest.off("drain", done);
      dest.off("close", gone);
      resolve();
    };
    const gone = () => {
      dest.off("drain", done);
      reject(new UpstreamError("download: the destination closed"));
    };
    dest.once("drain", done);
    dest.once("close", gone);
  });
}

/** A failure while reading from the storage, as the gateway's error (a stall answers 504). */
function asUpstream(err: unknown): unknown {
  if (err instanceof GatewayError) return err;
  return unreachable("download failed", err);
}

function safeJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}
