import { randomUUID } from "node:crypto";
/**
 * What a lock system decides (RFC 4918 §6, §7, §9.10, §9.11), as pure functions of the live
 * locks, and the errors it throws (locks.ts exports them with the interface). Every
 * implementation reads its live locks, decides with these, then writes: locks held in memory
 * and locks shared by several gateways answer alike. Paths are gateway paths: "/" or "/a/b".
 */
import { Locked } from "../errors.js";
import { isBelow, isSameOrBelow, parentOf } from "../drive/paths.js";
import type { LockInfo, LockRequest, LockSnapshot, WriteCheck, WriteOptions } from "./locks.js";

/** An incompatible lock exists (423 Locked). `locks` are the locks in the way. */
export class LockConflict extends Locked {
  constructor(readonly locks: readonly LockInfo[]) {
    super(
      `locked: ${locks.map((lock) => lock.root).join(", ")}`,
      locks.map((lock) => ({ path: lock.root, application: "dav" })),
    );
    this.name = "LockConflict";
  }
}

/** No live lock has this token (unknown, expired or already released). */
export class LockNotFound extends Error {
  constructor(readonly token: string) {
    super(`no such lock: ${token}`);
    this.name = "LockNotFound";
  }
}

/** The lock exists but does not cover the request's path (409, lock-token-matches-request-uri). */
export class LockTokenMismatch extends Error {
  constructor(
    readonly token: string,
    readonly path: string,
  ) {
    super(`lock ${token} does not cover ${path}`);
    this.name = "LockTokenMismatch";
  }
}

/** The lock belongs to another principal (403). */
export class LockForbidden extends Error {
  constructor(readonly token: string) {
    super(`lock ${token} belongs to another user`);
    this.name = "LockForbidden";
  }
}

// ---------------------------------------------------------------------------------------------
// Relations

/** The lock protects `path`: it is the lock's root, or below a depth-infinity root. */
export function covers(lock: Pick<LockInfo, "root" | "depth">, path: string): boolean {
  return lock.root === path || (lock.depth === "infinity" && isBelow(path, lock.root));
}

/** Two locks share a resource and one of them is exclusive (§6.1, §9.10.5). */
export function incompatible(existing: LockInfo, request: LockRequest): boolean {
  const overlap = covers(existing, request.root) || covers(request, existing.root);
  return overlap && (existing.scope === "exclusive" || request.scope === "exclusive");
}

/** The lock stands in the way of a write to `path` with these options. */
export function protects(lock: LockInfo, path: string, options: WriteOptions): boolean {
  if (covers(lock, path)) return true;
  if (options.recursive === true && isBelow(lock.root, path)) return true;
  return options.membership === true && path !== "/" && lock.root === parentOf(path);
}

/** The request submitted the lock's token and may use it. */
export function heldBy(
  lock: LockInfo,
  tokens: readonly string[],
  principal: string | undefined,
): boolean {
  return tokens.includes(lock.token) && principalMatches(lock, principal);
}

/** A lock taken without a principal can be used by anyone holding its token. */
export function principalMatches(lock: LockInfo, principal: string | undefined): boolean {
  return lock.principal === undefined || lock.principal === principal;
}

/** Expired locks count as gone, whether or not the table has dropped them yet. */
export function isLive(lock: LockInfo, now: number): boolean {
  return lock.expiresAt > now;
}

/** Locks dropped with `path` when it is deleted or moved away: on it and below (§7.7). */
export function goesWith(lock: LockInfo, path: string): boolean {
  return isSameOrBelow(lock.root, path);
}

// ---------------------------------------------------------------------------------------------
// Decisions, given the live locks

/** The lock `request` gets, taken at `now`; throws LockConflict when a live lock is in the way. */
export function grant(
  live: readonly LockInfo[],
  request: LockRequest,
  token: string,
  now: number,
): LockInfo {
  assertGatewayPath(request.root);
  assertTimeout(request.timeoutSeconds);
  const conflicts = live.filter((lock) => incompatible(lock, request));
  if (conflicts.length > 0) throw new LockConflict(conflicts);
  const { root, depth, scope, ownerXml, timeoutSeconds, principal } = request;
  return Object.freeze({
    token,
    root,
    depth,
    scope,
    ownerXml,
    timeoutSeconds,
    expiresAt: expiry(now, timeoutSeconds),
    // Absent rather than undefined, so that locks compare equal however they were stored.
    ...(principal === undefined ? {} : { principal }),
  });
}

/** `lock` with its timeout restarted at `now` (a refresh). */
export function renewed(lock: LockInfo, timeoutSeconds: number, now: number): LockInfo {
  assertTimeout(timeoutSeconds);
  return Object.freeze({ ...lock, timeoutSeconds, expiresAt: expiry(now, timeoutSeconds) });
}

/**
 * `lock`, the live lock with this token, checked to cover `path` and to belong to `principal`
 * before a refresh or an unlock. Throws LockNotFound, LockTokenMismatch or LockForbidden.
 */
export function owned(
  lock: LockInfo | undefined,
  token: string,
  path: string | undefined,
  principal: string | undefined,
): LockInfo {
  if (lock === undefined) throw new LockNotFound(token);
  if (path !== undefined) {
    assertGatewayPath(path);
    if (!covers(lock, path)) throw new LockTokenMismatch(token, path);
  }
  if (!principalMatches(lock, principal)) throw new LockForbidden(token);
  return lock;
}

/** Whether a write to `path` may go ahead given the tokens the request submitted. */
export function writeCheck(
  live: readonly LockInfo[],
  path: string,
  submittedTokens: readonly string[],
  options: WriteOptions = {},
): WriteCheck {
  assertGatewayPath(path);
  const blocking = live.find(
    (lock) => protects(lock, path, options) && !heldBy(lock, submittedTokens, options.principal),
  );
  return blocking === undefined ? { allowed: true } : { allowed: false, lock: blocking };
}

/** A view of these live locks for a request that asks about many paths. */
export function snapshotOf(live: readonly LockInfo[]): LockSnapshot {
  return {
    covering(path) {
      assertGatewayPath(path);
      // Asked once per entry of every PROPFIND, nearly always with no lock held at all.
      if (live.length === 0) return [];
      return live.filter((lock) => covers(lock, path));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Input checks, which the decisions make too: a caller may make them before reading the locks

export function assertGatewayPath(path: string): void {
  const ok = path === "/" || (/^\/[^/]/.test(path) && !path.endsWith("/") && !path.includes("//"));
  if (!ok) throw new RangeError(`not a gateway path: ${JSON.stringify(path)}`);
}

export function assertTimeout(seconds: number): void {
  if (!(seconds > 0)) throw new RangeError(`lock timeout must be positive: ${seconds}`);
}

function expiry(now: number, timeoutSeconds: number): number {
  return now + timeoutSeconds * 1000;
}

/** A new lock token (RFC 4918 §6.5): every lock system issues the same kind unless told otherwise. */
export const newLockToken = (): string => `opaquelocktoken:${randomUUID()}`;
