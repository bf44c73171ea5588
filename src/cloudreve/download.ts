import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { LRUCache } from "lru-cache";
import parseRange from "range-parser";
import { request, type Dispatcher } from "undici";
import { SessionExpired, UpstreamError } from "../errors.js";
import type { CloudreveApi } from "./api.js";
import { bulkGet, UnsupportedReply } from "./bulk-get.js";
import { errorFromEnvelope } from "./errors.js";
import type { RequestPriority } from "./queue.js";
import { EnvelopeSchema, timestampToEpochMs } from "./types.js";

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

export interface Download {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  /**
   * Writes the body into `dest` and ends it; rejects if either side breaks off. Chunks may be
   * lent: `dest` must be done with each when its write callback runs (sockets and files are).
   */
  pipeTo(dest: Writable): Promise<void>;
  /** The whole body in memory. */
  readAll(): Promise<Buffer>;
  /** Gives the body up unread. */
  discard(): void;
}

/** How many bytes a read of `range` from a file of `size` brings; 0 when unknown or invalid. */
function requestedBytes(size: number | undefined, range: string | undefined): number {
  if (size === undefined) return 0;
  if (!range) return size;
  const parts = parseRange(size, range, { combine: true });
  if (typeof parts === "number") return 0;
  return parts.reduce((n, p) => n + p.end - p.start + 1, 0);
}

/**
 * Reads file content: `POST /file/url` once per version (cached until `expires` minus a
 * margin), then a GET of the signed URL with the caller's Range, streamed. A Cloudreve-served
 * URL may name a site origin the gateway cannot reach (the site URL is a public name); since
 * only the path is signed (§5.9), it is fetched from the configured upstream instead.
 */
export class Downloader {
  /** Bounded: one entry per version read recently. */
  private readonly urls = new LRUCache<string, { url: string; reuseUntil: number }>({
    max: 10_000,
  });
  private readonly pending = new Map<string, Promise<string>>();

  constructor(
    private readonly api: CloudreveApi,
    private readonly now: () => number = Date.now,
    private readonly bulkFromBytes = BULK_FROM_BYTES,
  ) {}

  async open(r: DownloadRequest): Promise<Download> {
    const used = await this.url(r);
    const first = await this.fetch(r, used);
    if (!(first instanceof SessionExpired)) return first;
    // Unless a concurrent read already replaced it.
    if (this.urls.get(r.entity)?.url === used) this.urls.delete(r.entity);
    const second = await this.fetch(r, await this.url(r));
    if (second instanceof SessionExpired) throw second;
    return second;
  }

  /** The signed URL for a version, from the cache or fresh; concurrent misses share one request. */
  async url(r: Pick<DownloadRequest, "uri" | "entity" | "priority">): Promise<string> {
    const cached = this.urls.get(r.entity);
    if (cached && cached.reuseUntil > this.now()) return cached.url;
    let pending = this.pending.get(r.entity);
    if (!pending) {
      pending = this.fresh(r).finally(() => this.pending.delete(r.entity));
      this.pending.set(r.entity, pending);
    }
    return pending;
  }

  private async fresh(r: Pick<DownloadRequest, "uri" | "entity" | "priority">): Promise<string> {
    const { url, expires } = await this.api.fileUrl(r.uri, r.priority);
    if (!url) throw new UpstreamError(`Cloudreve gave no download URL for ${r.uri}`);
    const expiresAt = expires ? timestampToEpochMs(expires) : this.now() + URL_FALLBACK_TTL_MS;
    const reachable = this.reachable(url);
    this.urls.set(r.entity, { url: reachable, reuseUntil: expiresAt - URL_MARGIN_MS });
    return reachable;
  }

  private reachable(signed: string): string {
    const url = new URL(signed);
    const at = url.pathname.indexOf(CONTENT_PATH);
    if (at < 0) return signed; // a storage provider's presigned URL: used as given
    return `${this.api.transport.origin}${url.pathname.slice(at)}${url.search}`;
  }

  /** One GET; an expired signature (JSON 40005 with HTTP 200) comes back as a value to retry on. */
  private async fetch(r: DownloadRequest, url: string): Promise<Download | SessionExpired> {
    const headers: Record<string, string> = r.range ? { range: r.range } : {};
    let res: Download;
    try {
      res =
        requestedBytes(r.size, r.range) >= this.bulkFromBytes
          ? await this.bulk(url, headers, r.signal)
          : await this.streamed(url, headers, r.signal);
    } catch (err) {
      if (r.signal?.aborted || err instanceof UpstreamError) throw err;
      throw new UpstreamError(`download failed: ${(err as Error).message}`, { cause: err });
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
    if (res.statusCode >= 500 || res.statusCode === 404) {
      res.discard();
      throw new UpstreamError(`download answered HTTP ${res.statusCode}`, {
        retryable: res.statusCode >= 502 && res.statusCode <= 504,
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
      return await bulkGet(new URL(url), headers, signal);
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
      pipeTo: (dest) => pipeline(res.body, dest),
      readAll: async () => Buffer.from(await res.body.arrayBuffer()),
      discard: () => void res.body.dump().catch(() => {}),
    };
  }
}

function safeJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}
