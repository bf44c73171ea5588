import { AsyncLocalStorage } from "node:async_hooks";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { FileSystem } from "../drive/types.js";
import { CredentialInvalid, LoginRejected } from "../errors.js";
import { BasicAuth } from "./basic-auth.js";
import type { GatewayUser } from "../config.js";
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
import { decodePath } from "./paths.js";
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

export interface DavServerOptions extends DavOptions {
  fs: FileSystem;
  locks: LockSystem;
  users: readonly GatewayUser[];
  log: Logger;
  /** Counts upstream calls made on behalf of the current request, for the request log line. */
  upstreamCalls?: AsyncLocalStorage<{ calls: number }>;
}

/**
 * OPTIONS (RFC 4918 §18): class 1 and 2, and the Microsoft hint that this is a DAV server.
 * Answered without credentials (clients probe before they log in); only a client that may see
 * the drive learns from Allow what the resource is.
 */
async function handleOptions(ctx: DavContext, mayLook: boolean): Promise<void> {
  let allow = ALLOW;
  if (mayLook) {
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
  private controller: AbortController | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly fs: FileSystem,
    readonly locks: LockSystem,
    readonly options: DavOptions,
    readonly log: Logger,
  ) {}

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
  const auth = new BasicAuth(options.users);
  const counter = options.upstreamCalls ?? new AsyncLocalStorage<{ calls: number }>();
  // Counting a request's upstream calls needs async context tracking, which Node 20 pays for on
  // every promise in the process (a quarter of a small PROPFIND's time, profiled); the count
  // is a debugging aid, so it is kept only when debug lines are.
  const countCalls = options.log.isLevelEnabled("debug");
  // The request line's fields are our own and none is a secret, so its logger skips the
  // redaction pass (profiled: ~10 µs a line). A line carrying an error object keeps it.
  const requestLog = options.log.child({}, { redact: [] });

  async function serve(ctx: RequestContext, outcome: { error?: unknown }): Promise<void> {
    const { req, res } = ctx;
    const method = req.method ?? "GET";
    let authenticated = true;
    if (auth.enabled) {
      const check = await auth.check(req);
      authenticated = check.ok;
      if (!check.ok && method !== "OPTIONS") {
        res.writeHead(check.throttled ? 429 : 401, {
          "www-authenticate": 'Basic realm="cloudreve-dav", charset="UTF-8"',
          "content-length": 0,
        });
        res.end();
        return;
      }
    }
    const url = req.url ?? "/";
    const query = url.indexOf("?");
    try {
      const { path, slash } = decodePath(query < 0 ? url : url.slice(0, query));
      ctx.path = path;
      ctx.slash = slash;
      if (method === "OPTIONS") return await handleOptions(ctx, authenticated);
      const handler = HANDLERS[method];
      if (!handler) throw new HttpError(405, `${method} is not supported`);
      await handler(ctx);
    } catch (err) {
      const status = statusOf(err);
      if (res.headersSent) {
        res.destroy();
      } else if (err instanceof HttpError && err.condition) {
        sendXml(ctx, status, errorBodyXml(err.condition));
      } else {
        sendText(ctx, status, (err as Error).message, status === 405 ? { allow: ALLOW } : {});
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
    const ctx = new RequestContext(req, res, options.fs, options.locks, options, options.log);
    res.once("close", () => {
      if (!res.writableFinished) ctx.abort();
      const status = res.statusCode;
      const fields: Record<string, unknown> = {
        method: req.method,
        path: req.url,
        status,
        bytes: socket.bytesWritten - written,
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
    });
    void (countCalls ? counter.run(stats, () => serve(ctx, outcome)) : serve(ctx, outcome));
  };
}
