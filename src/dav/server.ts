import { AsyncLocalStorage } from "node:async_hooks";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Logger } from "pino";
import type { FileSystem } from "../drive/types.js";
import { CredentialInvalid, LoginRejected } from "../errors.js";
import type { BasicAuth } from "./basic-auth.js";
import {
  sendText,
  sendXml,
  statIfAny,
  type DavContext,
  type DavOptions,
  type Handler,
} from "./context.js";
import { handleGet } from "./get.js";
import { handleLock, handleUnlock } from "./lock.js";
import type { LockSystem } from "./locks.js";
import { handleCopyMove, handleDelete, handleMkcol } from "./namespace.js";
import { originReader, type RequestOrigin } from "./forwarded.js";
import { readablePath, UrlSpace } from "./paths.js";
import { handlePropfind, handleProppatch } from "./propfind.js";
import { handlePut } from "./put.js";
import { HttpError, statusOf } from "./status.js";
import { errorBodyXml } from "./xml.js";

const HANDLERS: Record<string, Handler> = {
  GET: handleGet,
  HEAD: handleGet,
  PUT: handlePut,
  MKCOL: handleMkcol,
  DELETE: handleDelete,
  COPY: handleCopyMove,
  MOVE: handleCopyMove,
  PROPFIND: handlePropfind,
  PROPPATCH: handleProppatch,
  LOCK: handleLock,
  UNLOCK: handleUnlock,
};

const ALLOW = ["OPTIONS", ...Object.keys(HANDLERS)].join(", ");
/** What each kind of resource allows (RFC 4918 §9: no PUT on a collection, no MKCOL on a file). */
const ALLOW_BY_KIND = {
  collection: "OPTIONS, GET, HEAD, DELETE, PROPFIND, PROPPATCH, COPY, MOVE, LOCK, UNLOCK",
  file: "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, COPY, MOVE, LOCK, UNLOCK",
  unmapped: "OPTIONS, PUT, MKCOL, LOCK",
};

/** The methods that change something: a read-only user gets 403 for each, before any work. */
const WRITES = new Set(["PUT", "MKCOL", "DELETE", "COPY", "MOVE", "PROPPATCH", "LOCK", "UNLOCK"]);
const READS = "OPTIONS, GET, HEAD, PROPFIND";

/** What one signed-in user works with: their account's drive and locks, seen from their root. */
export interface Workspace {
  fs: FileSystem;
  locks: LockSystem;
  /** The drive path the user sees as "/". */
  root: string;
  readOnly: boolean;
  /** The request is over (lets an account that nobody uses go idle). */
  release(): void;
}

export interface DavServerOptions extends DavOptions {
  /** Absent: no sign-in (the gateway then listens on loopback only). */
  auth?: BasicAuth;
  /** The workspace of a signed-in user (undefined without sign-in). */
  workspace(user: string | undefined): Workspace | Promise<Workspace>;
  /** The URL path WebDAV is served under ("" for the root). */
  baseUrl: string;
  /** Proxies whose X-Forwarded-* headers are believed. */
  trustedProxies: readonly string[];
  log: Logger;
  /** Counts upstream calls made on behalf of the current request, for the request log line. */
  upstreamCalls?: AsyncLocalStorage<{ calls: number }>;
  observer?: RequestObserver;
}

/** A request that is over, as the observer is told of it. */
export interface FinishedRequest {
  /** A method the gateway knows, or "other": no client can grow the set. */
  method: string;
  status: number;
  seconds: number;
  /**
   * The bytes its connection carried for it, head and body: read since the connection's
   * previous request ended, and written.
   */
  received: number;
  sent: number;
}

/** Whoever watches the WebDAV requests (the gateway's metrics). */
export interface RequestObserver {
  finished(request: FinishedRequest): void;
  /** Credentials were refused, or their sender is throttled for too many refusals. */
  signInRefused(throttled: boolean): void;
}

/**
 * OPTIONS (RFC 4918 §18): class 1 and 2, and the Microsoft hint that this is a DAV server.
 * Answered without credentials (clients probe before they log in); only a client that may see
 * the drive learns from Allow what the resource is.
 */
async function handleOptions(ctx: DavContext, look: Workspace | undefined): Promise<void> {
  let allow = ALLOW;
  if (look?.readOnly) allow = READS;
  else if (look) {
    const entry = await statIfAny(ctx.fs, ctx.path);
    if (entry === undefined) allow = ALLOW_BY_KIND.unmapped;
    else allow = entry.isDir ? ALLOW_BY_KIND.collection : ALLOW_BY_KIND.file;
  }
  sendText(ctx, 200, "", { dav: "1, 2", "ms-author-via": "DAV", allow });
}

/**
 * One request as the handlers see it. The abort signal is made when a handler first asks for
 * it: most requests never do, and an AbortController per request showed in the profile.
 */
class RequestContext implements DavContext {
  path = "/";
  slash = true;
  user: string | undefined;
  /** The workspace to release when the exchange is over. */
  held: Workspace | undefined;
  fs!: FileSystem;
  locks!: LockSystem;
  space!: UrlSpace;
  private controller: AbortController | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly origin: RequestOrigin,
    readonly options: DavOptions,
    readonly log: Logger,
  ) {}

  /** Works in `workspace` from now on (none: an OPTIONS before sign-in, which looks at nothing). */
  enter(workspace: Workspace | undefined, space: UrlSpace): void {
    if (workspace) {
      this.fs = workspace.fs;
      this.locks = workspace.locks;
    }
    this.space = space;
  }

  get signal(): AbortSignal {
    return (this.controller ??= new AbortController()).signal;
  }

  /** The client went away before the response was complete. */
  abort(): void {
    (this.controller ??= new AbortController()).abort(new Error("client went away"));
  }
}

/**
 * The WebDAV request handler: authentication, path decoding, dispatch by method, the error →
 * status mapping in one place, and one log line per request.
 */
export function createDavHandler(
  options: DavServerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const auth = options.auth;
  const originOf = originReader(options.trustedProxies);
  /** One URL space per root folder in use (most gateways: one). */
  const spaces = new Map<string, UrlSpace>();
  const spaceOf = (root: string) => {
    let space = spaces.get(root);
    if (!space) spaces.set(root, (space = new UrlSpace(options.baseUrl, root)));
    return space;
  };
  const counter = options.upstreamCalls ?? new AsyncLocalStorage<{ calls: number }>();
  // Counting a request's upstream calls needs async context tracking, which Node 20 pays for on
  // every promise in the process (a quarter of a small PROPFIND's time, profiled); the count
  // is a debugging aid, so it is kept only when debug lines are.
  const countCalls = options.log.isLevelEnabled("debug");
  // The request line's fields are our own and none is a secret, so its logger skips the
  // redaction pass (profiled: ~10 µs a line). A line carrying an error object keeps it.
  const requestLog = options.log.child({}, { redact: [] });
  /** Per kept-alive connection: its bytes read when its last request ended. */
  const readUpTo = new WeakMap<Socket, number>();

  /** Who is asking: a user, or a refusal already sent. */
  async function signIn(
    ctx: RequestContext,
    auth: BasicAuth,
  ): Promise<{ user?: string } | "refused"> {
    const { req, res } = ctx;
    const outcome = await auth.authenticate(req.headers.authorization, ctx.origin.address);
    if (outcome.ok) return { user: outcome.user };
    // A request without credentials is a challenge (clients send them once asked), not a refusal.
    if (outcome.throttled || req.headers.authorization !== undefined)
      options.observer?.signInRefused(outcome.throttled);
    // OPTIONS is answered without credentials: clients probe before they sign in.
    if (req.method === "OPTIONS") return {};
    const headers: Record<string, string | number> = {
      "www-authenticate": 'Basic realm="cloudreve-dav", charset="UTF-8"',
      "content-length": 0,
    };
    if (outcome.throttled) headers["retry-after"] = outcome.retryAfterSeconds;
    res.writeHead(outcome.throttled ? 429 : 401, headers).end();
    return "refused";
  }

  async function serve(ctx: RequestContext, outcome: { error?: unknown }): Promise<void> {
    const { req, res } = ctx;
    const method = req.method ?? "GET";
    let workspace: Workspace | undefined;
    try {
      const who = auth ? await signIn(ctx, auth) : {};
      if (who === "refused") return;
      ctx.user = who.user;
      // An OPTIONS without credentials looks at nothing, so it opens no account either.
      if (!auth || who.user !== undefined) {
        const opened = options.workspace(who.user);
        workspace = opened instanceof Promise ? await opened : opened;
        // Released when the exchange is over, however it ends.
        if (res.closed) workspace.release();
        else ctx.held = workspace;
      }
      const space = spaceOf(workspace?.root ?? "/");
      ctx.enter(workspace, space);
      const url = req.url ?? "/";
      const query = url.indexOf("?");
      const target = space.pathOf(query < 0 ? url : url.slice(0, query));
      if (!target) throw new HttpError(404, `not under ${options.baseUrl}/`);
      ctx.path = target.path;
      ctx.slash = target.slash;
      if (method === "OPTIONS") return await handleOptions(ctx, workspace);
      const handler = HANDLERS[method];
      if (!handler) throw new HttpError(405, `${method} is not supported`);
      if (workspace?.readOnly && WRITES.has(method)) throw new HttpError(403, "read-only");
      await handler(ctx);
    } catch (err) {
      const status = statusOf(err);
      if (res.headersSent) {
        res.destroy();
      } else if (err instanceof HttpError && err.condition) {
        sendXml(ctx, status, errorBodyXml(err.condition));
      } else {
        const allow = workspace?.readOnly ? READS : ALLOW;
        sendText(ctx, status, (err as Error).message, status === 405 ? { allow } : {});
      }
      // Told once, in the request's own log line.
      outcome.error = err;
    }
  }

  return (req, res) => {
    const started = performance.now();
    // Kept here: by the time the response closes, req.socket may already be detached (null).
    const socket = req.socket;
    const written = socket.bytesWritten;
    const stats = { calls: 0 };
    const outcome: { error?: unknown } = {};
    const ctx = new RequestContext(req, res, originOf(req), options, options.log);
    res.once("close", () => {
      ctx.held?.release();
      if (!res.writableFinished) ctx.abort();
      const status = res.statusCode;
      const sent = socket.bytesWritten - written;
      const fields: Record<string, unknown> = {
        method: req.method,
        path: readablePath(req.url ?? "/"),
        status,
        client: ctx.origin.address,
        user: ctx.user,
        bytes: sent,
        ms: Math.floor(performance.now() - started),
        ua: req.headers["user-agent"],
      };
      if (countCalls) fields.upstream = stats.calls;
      // The cause of a failure: its message for client errors, all of it for our own. Refused
      // credentials were told once already, when they were refused; each request only notes it.
      const refused =
        outcome.error instanceof CredentialInvalid || outcome.error instanceof LoginRejected;
      if (status >= 500 && !refused) {
        if (outcome.error !== undefined) fields.err = outcome.error;
        options.log.error(fields, "request");
      } else {
        if (outcome.error !== undefined) fields.error = (outcome.error as Error).message;
        if (refused) requestLog.warn(fields, "request");
        else requestLog.info(fields, "request");
      }
      if (options.observer) {
        const read = socket.bytesRead;
        const method = req.method ?? "GET";
        options.observer.finished({
          method: method === "OPTIONS" || Object.hasOwn(HANDLERS, method) ? method : "other",
          status,
          seconds: (performance.now() - started) / 1000,
          received: read - (readUpTo.get(socket) ?? 0),
          sent,
        });
        readUpTo.set(socket, read);
      }
    });
    void (countCalls ? counter.run(stats, () => serve(ctx, outcome)) : serve(ctx, outcome));
  };
}
