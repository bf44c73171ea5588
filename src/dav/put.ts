import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { sendText, statIfAny, type DavContext } from "./context.js";
import { etagListMatches, parseOcMtime, quoteEtag } from "./headers.js";
import { checkWrite } from "./lock.js";
import { HttpError } from "./status.js";

/** Spool file I/O in large pieces: the default 64 KiB costs a thread-pool round trip each. */
const SPOOL_IO_BYTES = 1024 * 1024;

function declaredSize(ctx: DavContext): number | undefined {
  const headers = ctx.req.headers;
  // Finder sends chunked bodies with the real size in X-Expected-Entity-Length.
  for (const raw of [headers["content-length"], headers["x-expected-entity-length"]]) {
    if (typeof raw !== "string") continue;
    if (!/^\d+$/.test(raw.trim())) throw new HttpError(400, "invalid length header");
    return Number(raw);
  }
  return undefined;
}

/** How much of a failed upload's body is still read (and dropped) so the client hears why. */
const DISCARD_BYTES = 64 * 1024 * 1024;
const DISCARD_MS = 15_000;

/**
 * Reads and drops what is left of a request body. A server that answers while the client is
 * still sending and then closes makes the client's TCP stack reset the connection, and most
 * clients, which read the answer only after sending, then see a network error instead of the
 * status. Bounded: past it the answer goes out anyway.
 */
function discardRest(req: Readable & { complete?: boolean }): Promise<void> {
  if (req.complete || req.destroyed || req.readableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = () => {
      clearTimeout(timer);
      req.off("data", count);
      req.off("end", done);
      req.off("close", done);
      req.off("error", done);
      resolve();
    };
    const count = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > DISCARD_BYTES) done();
    };
    const timer = setTimeout(done, DISCARD_MS);
    req.on("data", count);
    req.once("end", done);
    req.once("close", done);
    req.once("error", done);
    // A reader that gave up (the upload's) may still listen for "readable", which keeps the
    // stream from flowing.
    req.removeAllListeners("readable");
    req.resume();
  });
}

/** PUT: create or replace a file, streamed upstream; a body of unknown length is spooled first. */
export async function handlePut(ctx: DavContext): Promise<void> {
  if (ctx.path === "/" || ctx.slash) throw new HttpError(405, "PUT needs a file path");
  // Replacing a file leaves its parent's membership alone: a depth-0 lock there does not apply.
  const isNew = async () => (await statIfAny(ctx.fs, ctx.path)) === undefined;
  await checkWrite(ctx, ctx.path, false, isNew);
  const { "if-match": ifMatch, "if-none-match": ifNoneMatch } = ctx.req.headers;
  if (ifMatch || ifNoneMatch) {
    const current = await statIfAny(ctx.fs, ctx.path);
    if (ifMatch && !etagListMatches(ifMatch, current?.etag, false))
      throw new HttpError(412, "If-Match failed");
    if (ifNoneMatch && current && etagListMatches(ifNoneMatch, current.etag, false)) {
      throw new HttpError(412, "If-None-Match failed");
    }
  }

  const mtimeMs = parseOcMtime(ctx.req.headers["x-oc-mtime"]);
  let size = declaredSize(ctx);
  let source: Readable = ctx.req;
  let spool: string | undefined;
  try {
    if (size === undefined) {
      spool = await mkdtemp(join(tmpdir(), "cloudreve-dav-put-"));
      const file = join(spool, "body");
      await pipeline(ctx.req, createWriteStream(file, { highWaterMark: SPOOL_IO_BYTES }));
      size = (await stat(file)).size;
      source = createReadStream(file, { highWaterMark: SPOOL_IO_BYTES });
    }
    const { entry, created } = await ctx.fs
      .write(ctx.path, {
        source,
        size,
        mtimeMs,
        signal: ctx.signal,
      })
      .catch(async (err: unknown) => {
        await discardRest(ctx.req);
        throw err;
      });
    const headers: Record<string, string> = { etag: quoteEtag(entry.etag) };
    if (mtimeMs !== undefined) headers["x-oc-mtime"] = "accepted";
    sendText(ctx, created ? 201 : 204, "", headers);
  } finally {
    if (spool) await rm(spool, { recursive: true, force: true });
  }
}
