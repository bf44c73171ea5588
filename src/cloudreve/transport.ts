import { AsyncLocalStorage, AsyncResource } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { Agent, request, type Dispatcher } from "undici";
import { z } from "zod";
import { AuthRequired, GatewayError, Locked, UpstreamError, UpstreamTimeout } from "../errors.js";
import { Authenticator, type AuthOptions, type Credentials } from "./auth.js";
import { errorFromBatch, errorFromEnvelope } from "./errors.js";
import { RequestQueue, type RequestPriority, type RequestQueueOptions } from "./queue.js";
import { EnvelopeSchema } from "./types.js";

export interface TransportOptions extends Credentials {
  /** The Cloudreve site, e.g. https://pan.example.com (the API lives under /api/v4). */
  baseUrl: string;
  queue?: RequestQueueOptions;
  auth?: AuthOptions;
  /** Connections kept to the upstream. Default: twice the queue's concurrency. */
  connections?: number;
  timeouts?: UpstreamTimeouts;
  dispatcher?: Dispatcher;
  /**
   * Sent as `X-Cr-Client-Id` on every call: Cloudreve leaves the changes this client makes out
   * of the change events it sends this client (§5.12).
   */
  clientId?: string;
  observer?: UpstreamObserver;
}

/**
 * Whoever watches the client (the gateway's metrics): told of each exchange with the upstream
 * as it ends, and of each retry the request queue decides on.
 */
export interface UpstreamObserver {
  /**
   * `route` names the call without ids (`/file/info`, `/file/upload/:sessionId/:index`, and
   * `download` or `storage` for content); `outcome` is one of a few words, see {@link outcomeOf}.
   */
  called(method: string, route: string, outcome: string): void;
  retried(): void;
}

/**
 * How a call ended, as a metric label: "ok", the HTTP status of an answer that was not 200,
 * the error's class (NotFound, UpstreamError for a lost connection, UpstreamTimeout, …), or
 * "aborted" when the caller gave up. Never an id or a message: few values.
 */
export function outcomeOf(err: unknown, signal?: AbortSignal): string {
  if (signal?.aborted) return "aborted";
  if (!(err instanceof GatewayError)) return "error";
  return err.httpStatus === undefined ? err.name : String(err.httpStatus);
}

/** Runs one exchange with the upstream and tells `observer` how it ended. */
export async function observed<T>(
  observer: UpstreamObserver | undefined,
  method: string,
  route: string,
  signal: AbortSignal | undefined,
  exchange: () => Promise<T>,
): Promise<T> {
  if (!observer) return exchange();
  try {
    const result = await exchange();
    observer.called(method, route, "ok");
    return result;
  } catch (err) {
    observer.called(method, route, outcomeOf(err, signal));
    throw err;
  }
}

/** Bounds on waiting for the upstream, so a hung server fails a request instead of holding it. */
export interface UpstreamTimeouts {
  /** Establishing a connection. Default 10 s. */
  connectMs?: number;
  /** From the request sent to the reply's head. Default 60 s. */
  headersMs?: number;
  /** Silence while a body is being received. Default 60 s. */
  bodyIdleMs?: number;
}

export const DEFAULT_TIMEOUTS: Required<UpstreamTimeouts> = {
  connectMs: 10_000,
  headersMs: 60_000,
  bodyIdleMs: 60_000,
};

const TIMEOUT_CODES = new Set([
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

/** A failure to talk to the upstream as a retryable gateway error; UpstreamTimeout for a timeout. */
export function unreachable(what: string, err: unknown): UpstreamError {
  const code = (err as { code?: unknown } | undefined)?.code;
  const message = `${what}: ${(err as Error)?.message ?? String(err)}`;
  return typeof code === "string" && TIMEOUT_CODES.has(code)
    ? new UpstreamTimeout(message, { cause: err, retryable: true })
    : new UpstreamError(message, { cause: err, retryable: true });
}

export interface ApiCall<T> {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** Route below /api/v4, e.g. "/file/info". */
  path: string;
  /** `path` with its ids as placeholders, for the observer; default `path` (which has none). */
  route?: string;
  query?: Record<string, string | number | boolean | undefined>;
  json?: unknown;
  /**
   * A raw body (chunks, whole-file writes) with its exact length; given per try, a body can be
   * streamed on the first and resent from memory on a retry.
   */
  raw?: {
    body: Buffer | Readable | ((attempt: number) => Promise<Buffer | Readable>);
    length: number;
  };
  schema: z.ZodType<T>;
  /** Safe to repeat: only idempotent calls are retried on transient failures. */
  idempotent: boolean;
  /** Not idempotent, but worth repeating after a failure that came as an HTTP status. */
  retryAnswered?: boolean;
  priority?: RequestPriority;
  /** How many URIs the call names: a 40081 for one URI is unwrapped to its inner error. */
  uris?: number;
  /** Calls made before there is a session (login, refresh) carry no bearer token. */
  anonymous?: boolean;
  signal?: AbortSignal;
}

/** A server-sent event stream to open: an authenticated GET that stays open. */
export interface StreamCall {
  path: string;
  query?: Record<string, string>;
  signal: AbortSignal;
  /** A stream silent for longer than this is dead (Cloudreve's keep-alives come more often). */
  idleMs: number;
}

/** Data that is never an acceptable answer: a route that streams answered with JSON. */
const NotAStream = z.never();

const RETRYABLE_STATUS = new Set([502, 503, 504]);

/** Upstream calls made within a scope (e.g. one WebDAV request), for its log line. */
export const upstreamCalls = new AsyncLocalStorage<{ calls: number }>();

/** Seconds or an HTTP date, as Retry-After allows. */
function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/**
 * Every call to the Cloudreve API goes through here: queued per account, authenticated,
 * decoded from Cloudreve's envelope (HTTP 200 with a code, §1) into data or a typed error.
 */
export class Transport {
  readonly queue: RequestQueue;
  readonly auth: Authenticator;
  readonly dispatcher: Dispatcher;
  readonly origin: string;
  readonly timeouts: Required<UpstreamTimeouts>;
  readonly observer: UpstreamObserver | undefined;
  private readonly clientId: string | undefined;
  /**
   * Frees the locks of a 40073 that nothing alive holds (an upload session a crash left
   * behind); when it did, the call is made once more.
   */
  freeLocks: ((err: Locked) => Promise<boolean>) | undefined;

  constructor(options: TransportOptions) {
    const url = new URL(options.baseUrl);
    this.origin = `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
    this.observer = options.observer;
    this.queue = new RequestQueue({ ...options.queue, onRetry: () => this.observer?.retried() });
    const concurrency = options.queue?.concurrency ?? 8;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.clientId = options.clientId;
    this.dispatcher =
      options.dispatcher ??
      new Agent({
        connections: options.connections ?? concurrency * 2,
        keepAliveTimeout: 30_000,
        connect: { timeout: this.timeouts.connectMs },
        headersTimeout: this.timeouts.headersMs,
        bodyTimeout: this.timeouts.bodyIdleMs,
      });
    this.auth = new Authenticator(
      options,
      // Token calls bypass the queue: they run while queued calls hold every slot waiting for
      // a token, so queueing them could deadlock.
      (path, body, schema) =>
        this.exchange({ method: "POST", path, json: body, schema, idempotent: false }, undefined),
      options.auth,
    );
  }

  async call<T>(spec: ApiCall<T>): Promise<T> {
    try {
      return await this.queued(spec);
    } catch (err) {
      // Outside the queue: freeing a lock makes calls of its own, which need a slot.
      const repeatable = !(spec.raw && spec.raw.body instanceof Readable);
      if (!(err instanceof Locked) || !repeatable || !(await this.freeLocks?.(err))) throw err;
      return this.queued(spec);
    }
  }

  private queued<T>(spec: ApiCall<T>): Promise<T> {
    // Bound to the caller's async context: the queue starts tasks from other tasks' contexts.
    const attempt = AsyncResource.bind((n: number) => this.attempt(spec, n));
    return this.queue.run(attempt, {
      idempotent: spec.idempotent,
      retryAnswered: spec.retryAnswered,
      priority: spec.priority,
      signal: spec.signal,
    });
  }

  /** One try. */
  private attempt<T>(spec: ApiCall<T>, n: number): Promise<T> {
    if (spec.anonymous) return this.exchange(spec, undefined, n);
    // A streamed body is gone once sent; only one that can be given again can be repeated.
    const repeatable = !(spec.raw && spec.raw.body instanceof Readable);
    return this.authorized(
      (token, renewed) => this.exchange(spec, token, renewed ? n + 1 : n),
      repeatable,
    );
  }

  /** Runs `send` with the access token; a 401 (the token died early) costs one renewal and one repeat. */
  private async authorized<T>(
    send: (token: string, renewed: boolean) => Promise<T>,
    repeatable = true,
  ): Promise<T> {
    const token = await this.auth.accessToken();
    try {
      return await send(token, false);
    } catch (err) {
      if (!(err instanceof AuthRequired) || !repeatable) throw err;
      return send(await this.auth.rejected(token), true);
    }
  }

  /**
   * Opens a server-sent event stream and resolves with its body once Cloudreve answered with
   * events; an error envelope or status rejects as a call does. Outside the queue: the stream
   * would hold a slot for as long as it runs.
   */
  stream(spec: StreamCall): Promise<Readable> {
    return this.authorized((token) =>
      observed(this.observer, "GET", spec.path, spec.signal, () => this.openStream(spec, token)),
    );
  }

  private async openStream(spec: StreamCall, token: string): Promise<Readable> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.url(spec.path, spec.query), {
        method: "GET",
        headers: { ...this.headers(token), accept: "text/event-stream" },
        dispatcher: this.dispatcher,
        signal: spec.signal,
        bodyTimeout: spec.idleMs,
      });
    } catch (err) {
      if (spec.signal.aborted) throw err;
      throw unreachable(`Cloudreve unreachable for GET ${spec.path}`, err);
    }
    const type = String(res.headers["content-type"] ?? "");
    if (res.statusCode === 200 && type.startsWith("text/event-stream")) return res.body;
    const text = await res.body.text().catch(() => "");
    return this.decode({ method: "GET", path: spec.path, schema: NotAStream }, res, text);
  }

  private url(path: string, query: ApiCall<unknown>["query"] = {}): URL {
    const url = new URL(`${this.origin}/api/v4${path}`);
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    return url;
  }

  private headers(token: string | undefined): Record<string, string> {
    const headers: Record<string, string> = { "x-cr-correlation-id": randomUUID() };
    if (token) headers.authorization = `Bearer ${token}`;
    if (this.clientId) headers["x-cr-client-id"] = this.clientId;
    return headers;
  }

  private exchange<T>(spec: ApiCall<T>, token: string | undefined, n = 0): Promise<T> {
    const route = spec.route ?? spec.path;
    return observed(this.observer, spec.method, route, spec.signal, () =>
      this.send(spec, token, n),
    );
  }

  private async send<T>(spec: ApiCall<T>, token: string | undefined, n: number): Promise<T> {
    const url = this.url(spec.path, spec.query);
    const headers = this.headers(token);
    let body: string | Buffer | Readable | undefined;
    if (spec.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(spec.json);
    } else if (spec.raw) {
      headers["content-type"] = "application/octet-stream";
      headers["content-length"] = String(spec.raw.length);
      body = typeof spec.raw.body === "function" ? await spec.raw.body(n) : spec.raw.body;
    }

    const scope = upstreamCalls.getStore();
    if (scope) scope.calls++;
    let res: Dispatcher.ResponseData;
    let text: string;
    try {
      res = await request(url, {
        method: spec.method,
        headers,
        body,
        dispatcher: this.dispatcher,
        signal: spec.signal,
      });
      text = await res.body.text();
    } catch (err) {
      if (spec.signal?.aborted) throw err;
      throw unreachable(`Cloudreve unreachable for ${spec.method} ${spec.path}`, err);
    }
    return this.decode(spec, res, text);
  }

  /** Cloudreve's answer as data, or as the typed error its status or envelope says. */
  private decode<T>(
    spec: Pick<ApiCall<T>, "method" | "path" | "schema" | "uris">,
    res: Dispatcher.ResponseData,
    text: string,
  ): T {
    if (res.statusCode !== 200) {
      throw new UpstreamError(
        `Cloudreve answered HTTP ${res.statusCode} for ${spec.method} ${spec.path}`,
        {
          retryable: RETRYABLE_STATUS.has(res.statusCode),
          retryAfterMs: retryAfterMs(res.headers["retry-after"]),
          httpStatus: res.statusCode,
        },
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new UpstreamError(
        `Cloudreve sent a reply that is not JSON for ${spec.method} ${spec.path}`,
      );
    }
    const env = EnvelopeSchema.safeParse(json);
    if (!env.success)
      throw new UpstreamError(`Cloudreve sent a reply without an envelope for ${spec.path}`);
    const { code } = env.data;
    // 203 is "continue", not an error: login hands back the 2FA session id (§1.1).
    if (code !== 0 && code !== 203) {
      throw code === 40081 ? errorFromBatch(env.data, spec.uris ?? 1) : errorFromEnvelope(env.data);
    }
    const data = spec.schema.safeParse(env.data.data);
    if (!data.success) {
      throw new UpstreamError(
        `Cloudreve's reply to ${spec.method} ${spec.path} has an unexpected shape: ${data.error.issues
          .slice(0, 3)
          .map((i) => `${i.path.join(".")}: ${i.message}`)
          .join("; ")}`,
      );
    }
    return data.data;
  }

  async close(): Promise<void> {
    this.auth.close();
    await this.dispatcher.close();
  }
}
