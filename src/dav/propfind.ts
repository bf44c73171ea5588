import type { DeadProp, Entry, Member, Quota } from "../drive/types.js";
import { NotFound, SharedStateUnavailable, WrongType } from "../errors.js";
import { header, readSmallBody, sendXml, type DavContext } from "./context.js";
import { parseDepth } from "./headers.js";
import { checkWrite } from "./lock.js";
import { snapshotOf } from "./lock-rules.js";
import type { LockSnapshot } from "./locks.js";
import {
  contentTypeOf,
  encodeSegment,
  findLiveProp,
  livePropsFor,
  renderLiveProp,
  type LiveProp,
  type PropContext,
} from "./props.js";
import { HttpError } from "./status.js";
import {
  DAV_NS,
  MultistatusWriter,
  parsePropfind,
  parseProppatch,
  type PropfindRequest,
  type PropStat,
  type PropValue,
  type QName,
} from "./xml.js";

const QUOTA_PROPS = new Set(["quota-available-bytes", "quota-used-bytes"]);

/**
 * macOS 15.4 and later (Darwin 24.4+) stall about 90 s at mount when quota properties come
 * back (docs/clients.md §D.1), so Finder on those systems does not get them.
 */
function quotaHiddenFor(userAgent: string | undefined): boolean {
  const darwin = /WebDAVFS\/.*Darwin\/(\d+)\.(\d+)/.exec(userAgent ?? "");
  if (!darwin) return false;
  const [major, minor] = [Number(darwin[1]), Number(darwin[2])];
  return major > 24 || (major === 24 && minor >= 4);
}

const key = (name: QName) => `${name.ns}\u0000${name.name}`;

/** A property the request names, resolved once: its live row, if it is a live one. */
interface Wanted {
  name: QName;
  key: string;
  row: LiveProp | undefined;
}

/**
 * The locks to show. Listings go on while the shared lock table (Redis) is away: they show no
 * lock then, and every write, whose lock check cannot be made, is refused meanwhile (503).
 */
async function lockView(ctx: DavContext): Promise<LockSnapshot> {
  try {
    return await ctx.locks.snapshot();
  } catch (err) {
    if (!(err instanceof SharedStateUnavailable)) throw err;
    ctx.log.warn(
      { problem: err.message },
      "listing without lock discovery: shared locks unavailable",
    );
    return snapshotOf([]);
  }
}

/**
 * The resource and, for Depth 1, its members. A folder is listed first: the listing brings the
 * folder's own entry too, so a folder whose cache entry has expired costs one call, not two.
 */
async function rootAndMembers(
  ctx: DavContext,
  depth: number,
  withDeadProps: boolean,
): Promise<{ root: Entry; members: Member[] }> {
  let members: Member[] | undefined;
  if (depth === 1) {
    try {
      members = await ctx.fs.list(ctx.path, { withDeadProps });
    } catch (err) {
      // A file, or nothing: the stat below says which.
      if (!(err instanceof WrongType || err instanceof NotFound)) throw err;
    }
  }
  const root = await ctx.fs.stat(ctx.path);
  if (!root.isDir || depth !== 1) return { root, members: [] };
  return { root, members: members ?? (await ctx.fs.list(ctx.path, { withDeadProps })) };
}

/**
 * The last Depth 0 answer sent for each cached entry, with what it answered (the href and the
 * request body). Finder, Explorer and davfs2 ask for one resource's properties again and again,
 * and rendering them was a third of the cost of such a request, profiled. The drive replaces an
 * entry when the resource changes, never alters it, so an answer made from an entry alone holds
 * as long as the entry does: one is reused only when nothing else went into it (no lock covers
 * the resource, it has no dead properties, no quota is shown), and it goes with its entry.
 */
const depthZeroAnswers = new WeakMap<Entry, { signature: string; body: Buffer }>();
/** Request bodies kept in a signature at most (a propfind naming a few properties is ~300). */
const MAX_REUSED_REQUEST = 4096;

/** PROPFIND (RFC 4918 §9.1): Depth 0 and 1; infinity is refused with propfind-finite-depth. */
export async function handlePropfind(ctx: DavContext): Promise<void> {
  // Absent means infinity (RFC 4918 §10.2).
  const depth = parseDepth(header(ctx, "depth")) ?? "infinity";
  if (depth === "infinity") {
    throw new HttpError(
      403,
      "PROPFIND with Depth infinity is not supported",
      "propfind-finite-depth",
    );
  }
  const text = await readSmallBody(ctx.req);
  const request = parsePropfind(text);

  const names =
    request.kind === "prop"
      ? request.props
      : request.kind === "allprop"
        ? (request.include ?? [])
        : [];
  const wanted: Wanted[] = names.map((name) => ({ name, key: key(name), row: findLiveProp(name) }));
  const wantsQuota =
    names.some((q) => q.ns === "DAV:" && QUOTA_PROPS.has(q.name)) &&
    !quotaHiddenFor(header(ctx, "user-agent"));
  const quota: Quota | undefined = wantsQuota ? await ctx.fs.quota() : undefined;
  const needsDead = request.kind !== "prop" || wanted.some((w) => !w.row);
  const { root, members } = await rootAndMembers(ctx, depth, needsDead);
  const rootDead = needsDead ? (await ctx.fs.getDeadProps([root.path]))[0] : undefined;
  // One view of the locks for all entries: a shared table would pay for a look per entry.
  const locks = await lockView(ctx);
  // Members' hrefs extend the folder's: only their own name is encoded.
  const rootHref = ctx.space.href(root.path, root.isDir);

  // What the answer was made from besides the entry; none when something else went into it.
  const signature =
    depth === 0 &&
    quota === undefined &&
    (rootDead ?? []).length === 0 &&
    locks.covering(root.path).length === 0 &&
    text.length <= MAX_REUSED_REQUEST
      ? `${rootHref}\u0000${text}`
      : undefined;
  const earlier = signature === undefined ? undefined : depthZeroAnswers.get(root);
  if (earlier && earlier.signature === signature) return sendMultistatus(ctx, earlier.body);

  const entries: Member[] = [{ ...root, deadProps: rootDead }, ...members];
  const now = Date.now();
  const which = request.kind === "propname" ? "propname" : "allprop";
  const writer = new MultistatusWriter();
  const memberPrefix = root.path === "/" ? "/" : `${root.path}/`;
  const lockHref = (path: string, isDir: boolean) => ctx.space.href(path, isDir);
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    const propCtx: PropContext = {
      entry,
      quota: entry.isDir ? quota : undefined,
      locks: locks.covering(entry.path),
      now,
      contentType: contentTypeOf,
      href: lockHref,
    };
    const rows = liveRows(which, entry.isDir, quota !== undefined);
    const href =
      i === 0
        ? rootHref
        : entry.name !== "" && entry.path === `${memberPrefix}${entry.name}`
          ? `${rootHref}${encodeSegment(entry.name)}${entry.isDir ? "/" : ""}`
          : ctx.space.href(entry.path, entry.isDir);
    writer.propstats(
      href,
      propstatsFor(request.kind, propCtx, entry.deadProps ?? [], wanted, rows),
    );
  }
  const body = writer.endBytes();
  if (signature !== undefined) depthZeroAnswers.set(root, { signature, body });
  sendMultistatus(ctx, body);
}

function sendMultistatus(ctx: DavContext, body: Buffer): void {
  ctx.res.writeHead(207, {
    "content-type": "application/xml; charset=utf-8",
    "content-length": body.length,
  });
  ctx.res.end(body);
}

/**
 * The live rows an entry shows: they depend only on the request's kind, file or folder, and
 * whether quota is shown, so each of the eight lists is worked out once.
 */
const LIVE_ROWS: (readonly LiveProp[])[] = [];
function liveRows(which: "allprop" | "propname", isDir: boolean, withQuota: boolean) {
  const id = (which === "propname" ? 4 : 0) + (isDir ? 2 : 0) + (withQuota ? 1 : 0);
  return (LIVE_ROWS[id] ??= livePropsFor({ isDir }, which).filter(
    (row) => withQuota || !QUOTA_PROPS.has(row.name),
  ));
}

/** One entry's propstats; `rows` are its live rows for allprop or propname. */
function propstatsFor(
  kind: PropfindRequest["kind"],
  ctx: PropContext,
  dead: readonly DeadProp[],
  wanted: readonly Wanted[],
  rows: readonly LiveProp[],
): PropStat[] {
  // A stored property named like a live one (set through Cloudreve's own WebDAV server) is
  // not the live one and is not shown: a stale oc:checksums would pass for current.
  const deadShown = () => dead.filter((d) => !findLiveProp(d));
  if (kind === "propname") {
    const names = [
      ...rows.map((r) => ({ ns: r.ns ?? DAV_NS, name: r.name })),
      ...deadShown().map((d) => ({ ns: d.ns, name: d.name })),
    ];
    return [{ status: 200, props: names }];
  }
  const found: PropValue[] = [];
  const missing: PropValue[] = [];
  const live = (row: LiveProp) => {
    const inner = renderLiveProp(row, ctx);
    const ns = row.ns ?? DAV_NS;
    if (inner === undefined) missing.push({ ns, name: row.name });
    else found.push({ ns, name: row.name, innerXml: inner });
  };
  let deadByName: Map<string, DeadProp> | undefined;
  const render = (prop: Wanted) => {
    if (prop.row) return live(prop.row);
    deadByName ??= new Map(dead.map((d) => [key(d), d]));
    const deadProp = deadByName.get(prop.key);
    if (deadProp) found.push(deadProp);
    else missing.push(prop.name);
  };
  if (kind === "allprop") {
    for (const row of rows) live(row);
    found.push(...deadShown());
    for (const prop of wanted) {
      if (!found.some((f) => f.ns === prop.name.ns && f.name === prop.name.name)) render(prop);
    }
  } else {
    for (const prop of wanted) render(prop);
  }
  const stats: PropStat[] = [];
  if (found.length > 0 || missing.length === 0) stats.push({ status: 200, props: found });
  if (missing.length > 0) stats.push({ status: 404, props: missing });
  return stats;
}

const isDavLastModified = (prop: QName) => prop.ns === "DAV:" && prop.name === "lastmodified";

/**
 * A modification time a client sets after uploading: rclone's ownCloud/Nextcloud vendors send
 * DAV:lastmodified in Unix seconds, Windows sends Win32LastModifiedTime as an HTTP date (and
 * keeps it as a dead property too). Both become the file's getlastmodified.
 */
function requestedMtime(set: readonly DeadProp[]): number | undefined {
  for (const prop of set) {
    const value = prop.innerXml.trim();
    if (isDavLastModified(prop) && /^\d+$/.test(value)) return Number(value) * 1000;
    if (prop.ns === "urn:schemas-microsoft-com:" && prop.name === "Win32LastModifiedTime") {
      const ms = Date.parse(value);
      if (!Number.isNaN(ms)) return ms;
    }
  }
  return undefined;
}

/**
 * PROPPATCH (§9.2): instructions apply in document order and all or none. Live properties
 * are protected (403, the rest 424); dead ones, Windows' Win32* among them, are stored.
 */
export async function handleProppatch(ctx: DavContext): Promise<void> {
  const ops = parseProppatch(await readSmallBody(ctx.req));
  await checkWrite(ctx, ctx.path, false, false);
  const entry: Entry = await ctx.fs.stat(ctx.path);
  const names = ops.map((op) =>
    op.op === "set" ? { ns: op.prop.ns, name: op.prop.name } : op.name,
  );
  const protectedNames = names.filter((q) => findLiveProp(q));

  const writer = new MultistatusWriter();
  const href = ctx.space.href(entry.path, entry.isDir);
  if (protectedNames.length > 0) {
    const others = names.filter((q) => !findLiveProp(q));
    const stats: PropStat[] = [
      { status: 403, props: protectedNames, error: "cannot-modify-protected-property" },
    ];
    if (others.length > 0) stats.push({ status: 424, props: others });
    return sendXml(ctx, 207, writer.propstats(href, stats).end());
  }

  // The last instruction for a name wins, as applying them in order would leave it.
  const final = new Map<string, (typeof ops)[number]>();
  for (const op of ops) final.set(key(op.op === "set" ? op.prop : op.name), op);
  const set: DeadProp[] = [];
  const remove: QName[] = [];
  for (const op of final.values()) {
    if (op.op === "set") set.push(op.prop);
    else remove.push(op.name);
  }
  const mtimeMs = entry.isDir ? undefined : requestedMtime(set);
  await ctx.fs.setDeadProps(ctx.path, {
    set: set.filter((p) => !(mtimeMs !== undefined && isDavLastModified(p))),
    remove,
  });
  if (mtimeMs !== undefined) await ctx.fs.setModTime(ctx.path, mtimeMs);
  const unique = [...new Map(names.map((q) => [key(q), q])).values()];
  sendXml(ctx, 207, writer.propstats(href, [{ status: 200, props: unique }]).end());
}
