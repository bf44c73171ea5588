import type { IncomingMessage, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import { paramError, type ApiError } from "./errors.js";
import type { User } from "./model.js";

/** What a handler gets: the request, its route parameters and who is calling. */
export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The caller; null when anonymous (no, expired or invalid bearer token). */
  user: User | null;
  correlationId: string;
  /** Counts request body bytes into the stats. */
  countIn(n: number): void;
  /** Counts response body bytes into the stats. */
  countOut(n: number): void;
}

/** A successful reply with a non-zero code (203). */
export class Envelope {
  constructor(
    readonly code: number,
    readonly data: unknown,
  ) {}
}

/** A handler's result is the envelope's `data`; RAW means the handler answered by itself. */
export const RAW = Symbol("raw");
export type Handler = (ctx: Ctx) => Promise<unknown>;

export interface Route {
  method: string;
  pattern: string;
  handler: Handler;
}

/** Matches `/api/v4/file/content/:id/:speed/:name`-style patterns segment by segment. */
export class Router {
  private readonly routes: { route: Route; segments: string[] }[] = [];

  add(method: string, pattern: string, handler: Handler): void {
    this.routes.push({ route: { method, pattern, handler }, segments: pattern.split("/") });
  }

  match(
    method: string,
    path: string,
  ): { route: Route; params: Record<string, string> } | undefined {
    const parts = path.split("/");
    for (const { route, segments } of this.routes) {
      if (route.method !== method || segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segments.length && ok; i++) {
        const seg = segments[i]!;
        if (seg.startsWith(":")) {
          if (parts[i] === "") ok = false;
          else params[seg.slice(1)] = safeDecode(parts[i]!);
        } else if (seg !== parts[i]) ok = false;
      }
      if (ok) return { route, params };
    }
    return undefined;
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** X-Cr-Correlation-Id is adopted when it parses as a UUID (middleware/common.go). */
export function correlationIdOf(req: IncomingMessage): string {
  const given = req.headers["x-cr-correlation-id"];
  return typeof given === "string" && UUID.test(given) ? given : randomUUID();
}

export function sendJson(ctx: Ctx, body: unknown, status = 200): void {
  const text = JSON.stringify(body);
  ctx.countOut(Buffer.byteLength(text));
  ctx.res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  ctx.res.end(text);
}

/** The error envelope of pkg/serializer/error.go. */
export function errorEnvelope(err: ApiError, correlationId: string): Record<string, unknown> {
  const body: Record<string, unknown> = { code: err.code, msg: err.message };
  if (!err.options.binding) body.correlation_id = correlationId;
  if (err.options.data !== undefined) body.data = err.options.data;
  if (err.options.aggregated) {
    body.aggregated_error = Object.fromEntries(
      [...err.options.aggregated].map(([key, inner]) => [key, errorEnvelope(inner, correlationId)]),
    );
  }
  return body;
}

/** Reads the whole request body, refusing more than `limit` bytes. */
export async function readBody(ctx: Ctx, limit = 16 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    total += chunk.length;
    ctx.countIn(chunk.length);
    if (total > limit) throw paramError();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** A JSON body bound the way gin binds it: malformed JSON or a non-object is a parameter error. */
export async function readJson(ctx: Ctx): Promise<Record<string, unknown>> {
  const raw = await readBody(ctx);
  if (raw.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString("utf8"));
  } catch {
    throw paramError();
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw paramError("JSON marshall error");
  }
  return parsed as Record<string, unknown>;
}

/**
 * The length a body declares: Content-Length, else X-Expected-Entity-Length, else 0 — the
 * server reads a chunked body without either as empty (pkg/request/utils.go).
 */
export function declaredLength(ctx: Ctx): number {
  const headers = ctx.req.headers;
  const raw = headers["content-length"] ?? headers["x-expected-entity-length"];
  const n = Number(Array.isArray(raw) ? raw[0] : raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/**
 * Streams at most `length` body bytes into a new file at `path`, or into an existing
 * (pre-allocated) file at `at.offset`. Resolves to the number of bytes written; fewer than
 * `length` means the client went away.
 */
export async function receiveBody(
  ctx: Ctx,
  path: string,
  length: number,
  at?: { offset: number },
): Promise<number> {
  let written = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _enc, done) {
      const take = Math.min(chunk.length, length - written);
      written += take;
      ctx.countIn(take);
      done(null, take === chunk.length ? chunk : chunk.subarray(0, take));
    },
  });
  const file = at
    ? createWriteStream(path, { flags: "r+", start: at.offset })
    : createWriteStream(path, { flags: "w" });
  try {
    await pipeline(ctx.req, limit, file);
  } catch {
    // An aborted request ends the pipeline early; the byte count tells the caller.
  }
  return written;
}
