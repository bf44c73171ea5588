import { Readable } from "node:stream";
import { header, readSmallBody, sendText, sendXml, statIfAny, type DavContext } from "./context.js";
import {
  evaluateIf,
  ifResourcePaths,
  parseIfHeader,
  submittedTokens,
  tagToPath,
  type IfHeader,
  type IfResourceState,
} from "./if-header.js";
import { parseDepth, parseTimeout, quoteEtag } from "./headers.js";
import { LockForbidden, LockNotFound, LockTokenMismatch } from "./locks.js";
import { activeLockOf } from "./props.js";
import { HttpError } from "./status.js";
import { lockResponseXml, parseLockinfo } from "./xml.js";

/** Without a Timeout header a lock lasts this long (capped by the configured maximum). */
const DEFAULT_LOCK_SECONDS = 3600;

/** If-header resource tags are URLs or absolute paths of this server, percent-encoded. */
function tagMapper(ctx: DavContext): (tag: string) => string | undefined {
  return (tag) => {
    const raw = tagToPath(tag);
    if (raw === undefined) return undefined;
    try {
      return ctx.space.pathOf(raw)?.path;
    } catch {
      return undefined;
    }
  };
}

function parseIf(ctx: DavContext): IfHeader | undefined {
  const value = header(ctx, "if");
  return value ? parseIfHeader(value) : undefined;
}

/** The state an If header is checked against: each named resource's ETag and lock tokens. */
async function resolveIfStates(
  ctx: DavContext,
  header: IfHeader,
): Promise<Map<string, IfResourceState>> {
  const states = new Map<string, IfResourceState>();
  // One view of the locks for every resource the header names.
  const locks = await ctx.locks.snapshot();
  for (const path of ifResourcePaths(header, ctx.path, tagMapper(ctx))) {
    const lockTokens = locks.covering(path).map((lock) => lock.token);
    const entry = await statIfAny(ctx.fs, path);
    if (entry !== undefined) states.set(path, { etag: quoteEtag(entry.etag), lockTokens });
    else if (lockTokens.length > 0) states.set(path, { lockTokens });
  }
  return states;
}

/**
 * Every write evaluates the If header (412 when no list holds) and then the locks (423 unless
 * the request presents the token of each lock in the way). `recursive` for operations on a
 * whole subtree (DELETE, MOVE, the destination of COPY). `membership`: the write adds or
 * removes `path` as a member of its parent, so a depth-0 lock on the parent is in the way too
 * (RFC 4918 §7.5); false for a change of the resource alone (PROPPATCH), or a function deciding
 * it only when such a lock exists (PUT: only when the file is new).
 */
export async function checkWrite(
  ctx: DavContext,
  path: string,
  recursive: boolean,
  membership: boolean | (() => Promise<boolean>) = true,
): Promise<void> {
  const ifHeader = parseIf(ctx);
  let tokens: string[] = [];
  if (ifHeader) {
    const states = await resolveIfStates(ctx, ifHeader);
    const holds = evaluateIf(
      ifHeader,
      (resourcePath) => states.get(resourcePath),
      ctx.path,
      tagMapper(ctx),
    );
    if (!holds) {
      throw new HttpError(412, "no list of the If header holds");
    }
    tokens = submittedTokens(ifHeader);
  }
  const principal = ctx.user;
  const blocks = async (withParent: boolean) => {
    const check = await ctx.locks.canWrite(path, tokens, {
      recursive,
      membership: withParent,
      principal,
    });
    return !check.allowed;
  };
  // The wider check first: with no lock in the way, as nearly always, one look decides.
  let blocked = await blocks(membership !== false);
  if (blocked && typeof membership === "function") {
    // Unless the resource's own locks are in the way, it is a lock on the parent: it applies
    // only when the write adds a member.
    blocked = (await blocks(false)) || (await membership());
  }
  if (blocked) throw new HttpError(423, `${path} is locked`, "lock-token-submitted");
}

/** LOCK (RFC 4918 §9.10): a new lock, or a refresh (empty body with the token in If). */
export async function handleLock(ctx: DavContext): Promise<void> {
  const max = ctx.options.lockTimeoutMaxSeconds;
  const timeout = parseTimeout(header(ctx, "timeout"), max, Math.min(DEFAULT_LOCK_SECONDS, max));
  const info = parseLockinfo(await readSmallBody(ctx.req));

  if (!info) {
    const ifHeader = parseIf(ctx);
    if (!ifHeader) throw new HttpError(400, "a lock refresh needs the lock token in an If header");
    for (const token of submittedTokens(ifHeader)) {
      try {
        const lock = await ctx.locks.refresh(token, timeout, {
          path: ctx.path,
          principal: ctx.user,
        });
        return sendXml(
          ctx,
          200,
          lockResponseXml(activeLockOf(lock, ctx.space.href(lock.root, false), Date.now())),
        );
      } catch (err) {
        if (err instanceof LockForbidden) throw new HttpError(403, err.message);
        if (!(err instanceof LockNotFound || err instanceof LockTokenMismatch)) throw err;
      }
    }
    throw new HttpError(
      412,
      "no lock of the If header covers this resource",
      "lock-token-matches-request-uri",
    );
  }

  // Absent means infinity (§9.10.3).
  const depth = parseDepth(header(ctx, "depth")) ?? "infinity";
  if (depth === 1) throw new HttpError(400, "LOCK Depth must be 0 or infinity");
  const exists = (await statIfAny(ctx.fs, ctx.path)) !== undefined;
  // Creating the empty resource adds a member to the parent: its locks apply (§7.3, §7.5).
  if (!exists) await checkWrite(ctx, ctx.path, false);
  // The lock comes first so that a conflict is found before anything is created.
  const lock = await ctx.locks.create({
    root: ctx.path,
    depth,
    scope: info.scope,
    ownerXml: info.ownerXml,
    timeoutSeconds: timeout,
    principal: ctx.user,
  });
  if (!exists) {
    // A lock on an unmapped URL creates an empty resource (RFC 4918 §7.3).
    try {
      await ctx.fs.write(ctx.path, { source: Readable.from([]), size: 0, signal: ctx.signal });
    } catch (err) {
      await ctx.locks.unlock(ctx.path, lock.token, ctx.user);
      throw err;
    }
  }
  sendXml(
    ctx,
    exists ? 200 : 201,
    lockResponseXml(activeLockOf(lock, ctx.space.href(lock.root, false), Date.now())),
    {
      "lock-token": `<${lock.token}>`,
    },
  );
}

/** UNLOCK (§9.11): 204; 409 when the token does not lock this resource. */
export async function handleUnlock(ctx: DavContext): Promise<void> {
  const lockToken = header(ctx, "lock-token");
  const token = lockToken ? /^\s*<([^>]+)>\s*$/.exec(lockToken)?.[1] : undefined;
  if (!token) throw new HttpError(400, "UNLOCK needs a Lock-Token header");
  try {
    await ctx.locks.unlock(ctx.path, token, ctx.user);
  } catch (err) {
    if (err instanceof LockForbidden) throw new HttpError(403, err.message);
    if (err instanceof LockNotFound || err instanceof LockTokenMismatch) {
      throw new HttpError(409, err.message, "lock-token-matches-request-uri");
    }
    throw err;
  }
  sendText(ctx, 204);
}
