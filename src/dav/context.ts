import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { Entry, FileSystem } from "../drive/types.js";
import { NotFound } from "../errors.js";
import type { RequestOrigin } from "./forwarded.js";
import type { LockSystem } from "./locks.js";
import type { UrlSpace } from "./paths.js";
import { HttpError } from "./status.js";

export interface DavOptions {
  /** GET streams content through the gateway (proxy) or redirects to the signed URL. */
  downloadMode: "proxy" | "redirect";
  lockTimeoutMaxSeconds: number;
}

/** One request as the handlers see it. */
export interface DavContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** Decoded gateway path of the request URL. */
  path: string;
  /** The URL ended with "/". */
  slash: boolean;
  fs: FileSystem;
  locks: LockSystem;
  /** Maps URL paths to drive paths and back (base URL, the user's root). */
  space: UrlSpace;
  /** The signed-in user (undefined without sign-in): a lock is theirs alone to use. */
  user: string | undefined;
  origin: RequestOrigin;
  options: DavOptions;
  log: Logger;
  /** Aborted when the client goes away before the response is complete. */
  signal: AbortSignal;
}

export type Handler = (ctx: DavContext) => Promise<void>;

/** A small text answer (errors, plain statuses). */
export function sendText(
  ctx: DavContext,
  status: number,
  text = "",
  headers: Record<string, string> = {},
): void {
  const body = text ? `${text}\n` : "";
  ctx.res.writeHead(status, {
    ...headers,
    ...(body ? { "content-type": "text/plain; charset=utf-8" } : {}),
    "content-length": Buffer.byteLength(body),
  });
  ctx.res.end(ctx.req.method === "HEAD" ? undefined : body);
}

/** An XML document (the builders in xml.ts write the declaration). */
export function sendXml(
  ctx: DavContext,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  ctx.res.writeHead(status, {
    ...headers,
    "content-type": "application/xml; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  ctx.res.end(body);
}

/** The request carries a body (a length above zero, or chunked). */
export function hasBody(req: IncomingMessage): boolean {
  const length = Number(req.headers["content-length"] ?? 0);
  return length > 0 || req.headers["transfer-encoding"] !== undefined;
}

/** Reads a small request body (XML), refusing anything over `limit` bytes. */
export async function readSmallBody(req: IncomingMessage, limit = 1024 * 1024): Promise<string> {
  if (!hasBody(req)) return "";
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw new HttpError(413, "request body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** One request header as a string (repeated headers joined as Node does for most). */
export function header(ctx: DavContext, name: string): string | undefined {
  const value = ctx.req.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

/** The entry at `path`, or undefined when nothing is there; other failures propagate. */
export async function statIfAny(fs: FileSystem, path: string): Promise<Entry | undefined> {
  try {
    return await fs.stat(path);
  } catch (err) {
    if (err instanceof NotFound) return undefined;
    throw err;
  }
}
