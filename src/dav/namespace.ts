import { header, sendText, hasBody, type DavContext } from "./context.js";
import { parseDepth, parseOcMtime } from "./headers.js";
import { checkWrite } from "./lock.js";
import { isSameOrBelow } from "../drive/paths.js";
import { destinationOf } from "./paths.js";
import { HttpError, statusOf } from "./status.js";

/** MKCOL (RFC 4918 §9.3): 201, 405 when something exists, 409 without a parent, 415 with a body. */
export async function handleMkcol(ctx: DavContext): Promise<void> {
  if (hasBody(ctx.req)) throw new HttpError(415, "MKCOL with a body is not supported");
  if (ctx.path === "/") throw new HttpError(405, "the root exists");
  await checkWrite(ctx, ctx.path, false);
  await ctx.fs.mkdir(ctx.path);
  sendText(ctx, 201);
}

/** DELETE (§9.6): folders with everything in them; locks on what went are dropped. */
export async function handleDelete(ctx: DavContext): Promise<void> {
  if (ctx.path === "/") throw new HttpError(403, "the root cannot be deleted");
  await checkWrite(ctx, ctx.path, true);
  await ctx.fs.remove(ctx.path);
  await ctx.locks.remove(ctx.path);
  sendText(ctx, 204);
}

/** Overwrite: T (the default when absent, §10.6) or F. */
function overwriteOf(ctx: DavContext): boolean {
  const value = header(ctx, "overwrite");
  if (value === undefined) return true;
  if (value === "T" || value === "t") return true;
  if (value === "F" || value === "f") return false;
  throw new HttpError(400, "Overwrite must be T or F");
}

/** COPY and MOVE (§9.8, §9.9). 201 when the destination is new, 204 when it was replaced. */
export async function handleCopyMove(ctx: DavContext): Promise<void> {
  const move = ctx.req.method === "MOVE";
  const destination = ctx.space.place(destinationOf(header(ctx, "destination"), ctx.origin.host));
  // Outside the base URL is not this server's namespace: as another server's (§9.8.5).
  if (!destination) throw new HttpError(502, "Destination is outside this server's URL space");
  const dest = destination.path;
  const overwrite = overwriteOf(ctx);
  // MOVE takes only infinity, COPY 0 or infinity; absent means infinity (RFC 4918 §9.8.3, §9.9.2).
  const depth = parseDepth(header(ctx, "depth")) ?? "infinity";
  if (depth === 1 || (move && depth === 0)) {
    throw new HttpError(400, `Depth ${depth} is not allowed for ${ctx.req.method}`);
  }
  if (ctx.path === "/") throw new HttpError(403, "the root cannot be copied or moved");
  if (dest === ctx.path) throw new HttpError(403, "source and destination are the same");
  if (isSameOrBelow(dest, ctx.path))
    throw new HttpError(403, "the destination is inside the source");

  if (move) await checkWrite(ctx, ctx.path, true);
  await checkWrite(ctx, dest, true);
  let created: boolean;
  try {
    ({ created } = move
      ? await ctx.fs.move(ctx.path, dest, { overwrite })
      : await ctx.fs.copy(ctx.path, dest, { overwrite, depth }));
  } catch (err) {
    // A refused overwrite is a plain 412, not a multistatus (RFC 4918 §9.8.5).
    throw new HttpError(statusOf(err, 412), (err as Error).message);
  }
  if (move) await ctx.locks.move(ctx.path, dest);
  sendText(ctx, created ? 201 : 204, "", await applyOcMtime(ctx, dest));
}

/**
 * ownCloud-style clients (rclone's nextcloud/owncloud vendors) send the file's time with a
 * MOVE or COPY as X-OC-Mtime; the drive keeps a file's time across both anyway, so this only
 * writes when the client asks for another one.
 */
async function applyOcMtime(ctx: DavContext, dest: string): Promise<Record<string, string>> {
  const mtimeMs = parseOcMtime(header(ctx, "x-oc-mtime"));
  if (mtimeMs === undefined) return {};
  const entry = await ctx.fs.stat(dest);
  if (entry.isDir) return {};
  if (Math.floor(entry.mtimeMs / 1000) !== Math.floor(mtimeMs / 1000))
    await ctx.fs.setModTime(dest, mtimeMs);
  return { "x-oc-mtime": "accepted" };
}
