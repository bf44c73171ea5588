import { connect as connectTcp, isIP, type Socket } from "node:net";
import { connect as connectTls } from "node:tls";
import type { Writable } from "node:stream";
import { UpstreamError, UpstreamTimeout } from "../errors.js";
import type { Download, PipeOptions } from "./download.js";
import { DEFAULT_TIMEOUTS } from "./transport.js";

/**
 * A GET for large bodies that reads into a few reused buffers and hands them straight to the
 * destination. A streamed HTTP client allocates a fresh 64 KiB buffer for every socket read;
 * at gigabytes a second that churn (malloc growing and trimming its heap, fresh pages zeroed
 * by the kernel, garbage collection) cost the gateway more CPU than the copying itself
 * (measured: 1.7 CPU-seconds per GiB against 0.4 this way; bench/RESULTS.md).
 *
 * Deliberately small: HTTP/1.1, one request per connection (`Connection: close`, so a large
 * body pays one handshake), bodies framed by Content-Length or by the close. A reply framed
 * any other way (chunked) is refused with {@link UnsupportedReply} for the caller to retry
 * with a general client.
 */

const SLAB_BYTES = 256 * 1024;
/** Per download: bounds memory whatever the client's pace. */
const SLABS_PER_GET = 8;
/** A read is given at least this much room (a TLS record is at most 16 KiB). */
const MIN_READ_BYTES = 64 * 1024;
/** Slabs kept between downloads, so their pages are not faulted in again each time. */
const SPARE_LIMIT = 64;
const MAX_HEAD_BYTES = 64 * 1024;

const spare: Buffer[] = [];

/** A reused buffer, filled read by read; its chunks are lent until the destination is done. */
class Slab {
  used = 0;
  lent = 0;
  constructor(readonly buf: Buffer) {}

  get room(): number {
    return this.buf.length - this.used;
  }
}

/** The upstream answered in a form this client does not read; nothing was consumed. */
export class UnsupportedReply extends Error {}

interface Head {
  statusCode: number;
  headers: Record<string, string | string[]>;
}

/** `idleMs`: silence from the upstream, while the gateway waits for it, that ends the download. */
export async function bulkGet(
  url: URL,
  headers: Record<string, string>,
  signal?: AbortSignal,
  idleMs = DEFAULT_TIMEOUTS.bodyIdleMs,
): Promise<Download> {
  return new BulkGet(url, headers, signal, idleMs).response;
}

/** One download: a connection, its buffers, and the state of the reply read so far. */
class BulkGet {
  readonly response: Promise<Download>;
  private readonly socket: Socket;
  /** Slabs with nothing lent that are not the read target. */
  private readonly idle: Slab[] = [];
  private slabs = 0;
  /** The slab the next read lands in; undefined when it lands in a one-off buffer. */
  private target: Slab | undefined;
  private head: Buffer | undefined = Buffer.alloc(0);
  /** Body bytes still expected; undefined when the body runs to the close. */
  private remaining: number | undefined;
  /** Body bytes that arrived before anyone read the body, copied. */
  private readonly early: Buffer[] = [];
  private sink: Sink | undefined;
  private settle: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private done = false;
  private failure: Error | undefined;
  private paused = false;
  private onHead!: (head: Head) => void;
  private onFail!: (err: Error) => void;

  constructor(
    url: URL,
    requestHeaders: Record<string, string>,
    signal: AbortSignal | undefined,
    private readonly idleMs: number,
  ) {
    const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`];
    for (const [name, value] of Object.entries({ ...requestHeaders, connection: "close" })) {
      if (/[\r\n]/.test(value)) throw new TypeError(`header ${name} holds a line break`);
      lines.push(`${name}: ${value}`);
    }
    this.response = new Promise<Head>((resolve, reject) => {
      this.onHead = resolve;
      this.onFail = reject;
    }).then((head) => this.wrap(head));

    const secure = url.protocol === "https:";
    const port = Number(url.port) || (secure ? 443 : 80);
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    // Node asks for the next read target right after each callback, whatever it returned.
    const onread = {
      buffer: () => this.nextTarget(),
      callback: (n: number, buf: Buffer) => this.onRead(buf.subarray(0, n)),
    };
    // tls.connect takes onread as net does; its typings leave it out. No SNI for an address.
    const options = { host, port, servername: isIP(host) ? undefined : host, onread };
    this.socket = secure ? connectTls(options) : connectTcp(options);
    this.socket.setTimeout(idleMs, () =>
      this.fail(
        new UpstreamTimeout(`download stalled: the upstream sent nothing for ${idleMs} ms`, {
          retryable: true,
        }),
      ),
    );
    this.socket.on("error", (err) =>
      this.fail(
        new UpstreamError(`download failed: ${err.message}`, { cause: err, retryable: true }),
      ),
    );
    this.socket.on("end", () => this.onEnd());
    this.socket.on("close", () => this.onEnd());
    if (signal) {
      const abort = () => this.fail(abortError(signal));
      if (signal.aborted) {
        abort();
        return;
      }
      signal.addEventListener("abort", abort, { once: true });
      this.socket.once("close", () => signal.removeEventListener("abort", abort));
    }
    // Not end(): some servers take a half-closed connection for a client that left.
    this.socket.write(`${lines.join("\r\n")}\r\n\r\n`);
  }

  /**
   * Where the next read lands: the rest of the target slab while it has room, else another
   * slab. Past the bound, only reads that arrive after a pause get here (TLS hands over records
   * it already holds); they land in a one-off buffer.
   */
  private nextTarget(): Buffer {
    const current = this.target;
    if (current?.lent === 0) current.used = 0;
    if (current && current.room >= MIN_READ_BYTES) return current.buf.subarray(current.used);
    // A slab left with chunks out goes idle when the last comes back.
    this.target = this.idle.pop() ?? (this.slabs < SLABS_PER_GET ? this.newSlab() : undefined);
    if (!this.target) return Buffer.allocUnsafe(MIN_READ_BYTES);
    this.target.used = 0;
    return this.target.buf;
  }

  private newSlab(): Slab {
    this.slabs++;
    return new Slab(spare.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES));
  }

  /** Regions reads could still land in: room in the target, idle slabs, slabs not yet made. */
  private get available(): number {
    const room = this.target && (this.target.lent === 0 || this.target.room >= MIN_READ_BYTES);
    return (room ? 1 : 0) + this.idle.length + SLABS_PER_GET - this.slabs;
  }

  private release(slab: Slab): void {
    if (--slab.lent > 0) return;
    if (this.done) {
      if (spare.length < SPARE_LIMIT) spare.push(slab.buf);
      return;
    }
    if (slab !== this.target) this.idle.push(slab);
    if (this.paused && this.sink) this.setPaused(false);
  }

  /** Returns false to stop reading; the stop lasts until {@link setPaused}(false). */
  private onRead(bytes: Buffer): boolean {
    if (this.done) return false;
    // The head is copied out, so its bytes' room is reused at once.
    if (this.head) return this.readHead(bytes);
    const slab = this.target;
    if (slab) slab.used += bytes.length;
    this.deliver(bytes, slab);
    // The read after this one needs a region too: with one left, it waits as the target
    // until the destination gives chunks back.
    if (!this.done && this.available <= 1) this.setPaused(true);
    return !this.paused && !this.done;
  }

  private readHead(bytes: Buffer): boolean {
    const head = Buffer.concat([this.head!, bytes]);
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) {
      if (head.length > MAX_HEAD_BYTES)
        this.fail(new UpstreamError("download: reply head too large"));
      this.head = head;
      return !this.done;
    }
    let parsed: Head;
    try {
      parsed = parseHead(head.subarray(0, end).toString("latin1"));
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    if (parsed.statusCode < 200) {
      // An interim reply (100 Continue and the like): the real head follows.
      this.head = Buffer.alloc(0);
      return this.readHead(head.subarray(end + 4));
    }
    const { headers } = parsed;
    if (headers["transfer-encoding"] !== undefined) {
      this.fail(new UnsupportedReply(`transfer-encoding ${String(headers["transfer-encoding"])}`));
      return false;
    }
    const length = headers["content-length"];
    this.remaining = length === undefined ? undefined : Number(length);
    if (this.remaining !== undefined && !Number.isSafeInteger(this.remaining)) {
      this.fail(new UpstreamError(`download: bad content-length ${String(length)}`));
      return false;
    }
    this.head = undefined;
    // The body waits for a reader.
    this.setPaused(true);
    const rest = head.subarray(end + 4);
    if (rest.length > 0 || this.remaining === 0) this.deliver(rest, undefined);
    this.onHead(parsed);
    return false;
  }

  /** `slab` holds `chunk` and gets it back once the destination is done with it. */
  private deliver(chunk: Buffer, slab: Slab | undefined): void {
    if (this.remaining !== undefined) {
      if (chunk.length > this.remaining) chunk = chunk.subarray(0, this.remaining);
      this.remaining -= chunk.length;
    }
    if (chunk.length > 0) {
      if (!this.sink) this.early.push(Buffer.from(chunk));
      else if (!slab) this.sink(chunk, undefined);
      else {
        slab.lent++;
        this.sink(chunk, () => this.release(slab));
      }
    }
    if (this.remaining === 0) this.finish();
  }

  private setPaused(paused: boolean): void {
    if (this.done || paused === this.paused) return;
    this.paused = paused;
    // A reader kept waiting by its destination is not a silent upstream.
    this.socket.setTimeout(paused ? 0 : this.idleMs);
    if (paused) this.socket.pause();
    else this.socket.resume();
  }

  private onEnd(): void {
    if (this.done) return;
    // A connection lost on the way is worth another try: the reader resumes where it broke.
    const retryable = true;
    if (this.head)
      this.fail(new UpstreamError("download: the upstream closed before replying", { retryable }));
    else if (this.remaining === undefined) this.finish();
    else
      this.fail(
        new UpstreamError(`download: the upstream closed ${this.remaining} bytes early`, {
          retryable,
        }),
      );
  }

  /** The whole body is read: the connection goes. */
  private finish(): void {
    this.end();
    this.settle?.resolve();
  }

  private fail(err: Error): void {
    if (this.done) return;
    this.failure = err;
    this.end();
    this.onFail(err);
    this.settle?.reject(err);
  }

  private end(): void {
    this.done = true;
    this.socket.destroy();
    const unlent = [...this.idle.splice(0), ...(this.target?.lent === 0 ? [this.target] : [])];
    for (const slab of unlent) if (spare.length < SPARE_LIMIT) spare.push(slab.buf);
  }

  private wrap(head: Head): Download {
    return {
      ...head,
      pipeTo: (dest, options) => this.pipeTo(dest, options),
      readAll: async () => {
        const chunks: Buffer[] = [];
        await this.consume((chunk, done) => {
          chunks.push(Buffer.from(chunk));
          done?.();
        });
        return Buffer.concat(chunks);
      },
      discard: () => this.fail(new Error("download discarded")),
    };
  }

  private async pipeTo(dest: Writable, options: PipeOptions = {}): Promise<void> {
    const gone = () => this.fail(new UpstreamError("download: the destination closed"));
    dest.once("close", gone);
    try {
      await this.consume((chunk, done) => {
        options.sent?.(chunk.length);
        dest.write(chunk, done);
      });
    } finally {
      dest.off("close", gone);
    }
    if (options.end === false) return;
    await new Promise<void>((resolve, reject) =>
      dest.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
  }

  /** Feeds the body to `sink`: first what arrived early, then the rest as it comes. */
  private consume(sink: Sink): Promise<void> {
    if (this.sink) return Promise.reject(new Error("the body is already being read"));
    this.sink = sink;
    for (const chunk of this.early.splice(0)) sink(chunk, undefined);
    if (this.failure) return Promise.reject(this.failure);
    if (this.done) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
      this.setPaused(false);
    });
  }
}

/** Takes a chunk; `done`, when given, must be called once the chunk's bytes are no longer used. */
type Sink = (chunk: Buffer, done: (() => void) | undefined) => void;

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("download aborted");
}
/** Status line and header fields of an HTTP/1.x reply. */
export function parseHead(text: string): Head {
  const [status, ...fields] = text.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(status ?? "");
  if (!m) throw new UpstreamError(`download: not an HTTP/1.1 reply: ${status?.slice(0, 80)}`);
  const headers: Record<string, string | string[]> = {};
  for (const field of fields) {
    const colon = field.indexOf(":");
    if (colon <= 0) throw new UpstreamError(`download: malformed header line in the reply`);
    const name = field.slice(0, colon).trim().toLowerCase();
    const value = field.slice(colon + 1).trim();
    const prior = headers[name];
    if (name === "set-cookie") headers[name] = [...((prior as string[] | undefined) ?? []), value];
    else headers[name] = prior === undefined ? value : `${String(prior)}, ${value}`;
  }
  return { statusCode: Number(m[1]), headers };
}
