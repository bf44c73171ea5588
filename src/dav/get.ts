import type { Entry } from "../drive/types.js";
import { StaleVersion } from "../errors.js";
import { header, type DavContext } from "./context.js";
import { childOf, parentOf } from "../drive/paths.js";
import { folderPage, FOLDER_PAGE_CSP } from "./folder-page.js";
import { etagListMatches, httpDate, parseByteRange, quoteEtag } from "./headers.js";
import { contentTypeOf } from "./props.js";

/** 304 or 412 from the validators of a GET/HEAD, or undefined to go on. */
function conditionalStatus(ctx: DavContext, entry: Entry): number | undefined {
  const headers = ctx.req.headers;
  if (headers["if-match"] && !etagListMatches(headers["if-match"], entry.etag, false)) return 412;
  const unmodifiedSince = Date.parse(headers["if-unmodified-since"] ?? "");
  if (
    !headers["if-match"] &&
    !Number.isNaN(unmodifiedSince) &&
    Math.floor(entry.mtimeMs / 1000) * 1000 > unmodifiedSince
  ) {
    return 412;
  }
  if (headers["if-none-match"])
    return etagListMatches(headers["if-none-match"], entry.etag, true) ? 304 : undefined;
  const modifiedSince = Date.parse(headers["if-modified-since"] ?? "");
  if (!Number.isNaN(modifiedSince) && Math.floor(entry.mtimeMs / 1000) * 1000 <= modifiedSince)
    return 304;
  return undefined;
}

/** If-Range: a strong ETag or an HTTP date; a mismatch means "send it all". */
function rangeStillValid(ctx: DavContext, entry: Entry): boolean {
  const ifRange = header(ctx, "if-range");
  if (!ifRange) return true;
  if (ifRange.startsWith('"')) return ifRange === quoteEtag(entry.etag);
  const date = Date.parse(ifRange);
  return !Number.isNaN(date) && Math.floor(entry.mtimeMs / 1000) * 1000 <= date;
}

/**
 * GET and HEAD of files (proxied with the client's range) and of folders (a small HTML index).
 * A file that changed outside the gateway since it was listed is looked at again, once, so
 * the headers always describe the bytes sent.
 */
export async function handleGet(ctx: DavContext): Promise<void> {
  try {
    await getOnce(ctx);
  } catch (err) {
    if (!(err instanceof StaleVersion) || ctx.res.headersSent) throw err;
    await getOnce(ctx);
  }
}

async function getOnce(ctx: DavContext): Promise<void> {
  const entry = await ctx.fs.stat(ctx.path);
  if (entry.isDir) return sendIndex(ctx, entry);

  const lastModified = httpDate(entry.mtimeMs);
  const headers: Record<string, string | number> = {
    etag: quoteEtag(entry.etag),
    ...(lastModified === undefined ? {} : { "last-modified": lastModified }),
    "accept-ranges": "bytes",
    "content-type": contentTypeOf(entry.name),
  };
  const conditional = conditionalStatus(ctx, entry);
  if (conditional) {
    ctx.res.writeHead(conditional, conditional === 304 ? headers : {}).end();
    return;
  }

  const size = entry.size;
  let range: { start: number; end: number } | undefined;
  const rangeHeader = ctx.req.headers.range;
  if (rangeHeader && size > 0 && rangeStillValid(ctx, entry)) {
    const asked = parseByteRange(rangeHeader, size);
    if (asked === "unsatisfiable") {
      ctx.res.writeHead(416, { ...headers, "content-range": `bytes */${size}` }).end();
      return;
    }
    range = asked;
  }

  if (ctx.req.method === "HEAD" || size === 0) {
    ctx.res.writeHead(200, { ...headers, "content-length": size }).end();
    return;
  }
  const url =
    ctx.options.downloadMode === "redirect" ? await ctx.fs.downloadUrl?.(ctx.path) : undefined;
  if (url) {
    ctx.res.writeHead(302, { location: url, "cache-control": "no-store" }).end();
    return;
  }

  const content = await ctx.fs.read(ctx.path, { range, signal: ctx.signal });
  const served = content.range;
  const outHeaders: Record<string, string | number> = {
    ...headers,
    "content-length": content.length,
  };
  if (served) outHeaders["content-range"] = `bytes ${served.start}-${served.end}/${size}`;
  ctx.res.writeHead(served ? 206 : 200, outHeaders);
  if (content.bytes) {
    ctx.res.end(content.bytes);
    return;
  }
  try {
    await content.pipeTo(ctx.res);
  } catch (err) {
    // The client went away (the signal aborted the upstream fetch) or the upstream broke
    // mid-stream; either way the response cannot be completed.
    ctx.res.destroy();
    if (!ctx.signal.aborted) ctx.log.warn({ err }, "download stream broke");
  }
}

/** A browser looking at a folder gets a table of its members; HEAD the same headers. */
async function sendIndex(ctx: DavContext, folder: Entry): Promise<void> {
  if (!ctx.slash) {
    ctx.res.writeHead(301, { location: ctx.space.href(folder.path, true) }).end();
    return;
  }
  const members = await ctx.fs.list(folder.path);
  const html = folderPage({
    title: decodeURIComponent(ctx.space.href(folder.path, true)),
    parentHref:
      folder.path === ctx.space.root ? undefined : ctx.space.href(parentOf(folder.path), true),
    members: members.map((entry) => ({
      entry,
      href: ctx.space.href(childOf(folder.path, entry.name), entry.isDir),
    })),
  });
  ctx.res.writeHead(200, {
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(html),
    "content-security-policy": FOLDER_PAGE_CSP,
  });
  ctx.res.end(ctx.req.method === "HEAD" ? undefined : html);
}
