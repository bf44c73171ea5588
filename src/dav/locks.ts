/**
 * WebDAV write locks (RFC 4918 §6, §7, §9.10, §9.11), held in memory.
 *
 * Locks live only in this process on purpose: mirroring them to Cloudreve would make API deletes
 * fail with 40073 (docs/clients.md §E.1). Paths are gateway paths: "/" or "/a/b", no trailing slash.
 * A lock protects its root and, at depth infinity, everything below it. Expired locks are dropped
 * lazily, whenever the table is consulted, so no timer keeps the process alive.
 */
import { randomUUID } from "node:crypto";
import { Locked } from "../errors.js";
import { isBelow, isSameOrBelow, parentOf } from "../drive/paths.js";

export type LockDepth = 0 | "infinity";
export type LockScope = "exclusive" | "shared";

export interface LockRequest {
  readonly root: string;
  readonly depth: LockDepth;
  readonly scope: LockScope;
  /** The `<D:owner>` element as the client sent it, echoed back in lockdiscovery. */
  readonly ownerXml: string;
  /** Seconds until the lock expires unless refreshed (see parseTimeout in headers.ts). */
  readonly timeoutSeconds: number;
  /** The authenticated user who took the lock; only they may use its token (§6.4). */
  readonly principal?: string;
}

export interface LockInfo extends LockRequest {
  /** `opaquelocktoken:<uuid>` unless the system was built with another token factory. */
  readonly token: string;
  /** Epoch milliseconds, on the lock system's clock. */
  readonly expiresAt: number;
}

export interface WriteOptions {
  /** The write affects everything below `path` too (DELETE, MOVE of a collection). */
  readonly recursive?: boolean;
  /**
   * The write adds or removes `path` as a member of its parent collection (PUT of a new file,
   * MKCOL, DELETE, MOVE): a depth-0 lock on the parent protects its membership (§7.5).
   */
  readonly membership?: boolean;
  /** The user making the request: a token only counts for the principal who took its lock. */
  readonly principal?: string;
}

export type WriteCheck = { readonly allowed: true } | { readonly allowed: false; lock: LockInfo };

export interface LockSystem {
  /** Takes a new lock; throws LockConflict when an existing lock is incompatible. */
  create(request: LockRequest): LockInfo;
  /**
   * Restarts the lock's timeout. With `path`, the lock must cover it (a refresh is sent to a
   * locked URL, possibly below the lock's root). Throws LockNotFound, LockTokenMismatch or
   * LockForbidden.
   */
  refresh(
    token: string,
    timeoutSeconds: number,
    options?: { path?: string; principal?: string },
  ): LockInfo;
  /** Removes the lock `token`, which must cover `path`. Same errors as refresh. */
  unlock(path: string, token: string, principal?: string): void;
  /** The live lock with this token, if any. */
  get(token: string): LockInfo | undefined;
  /** Whether any lock is live (an account holding one is not let go while idle). */
  holdsAny(): boolean;
  /** Locks on `path` itself and depth-infinity locks on its ancestors (for lockdiscovery). */
  locksCovering(path: string): LockInfo[];
  /** Whether a write to `path` may go ahead given the tokens the request submitted. */
  canWrite(path: string, submittedTokens: readonly string[], options?: WriteOptions): WriteCheck;
  /**
   * Bookkeeping after a successful MOVE: locks do not travel with the resource (§7.7), so locks
   * on the source and below are dropped, and so are locks on a destination that was replaced.
   */
  move(from: string, to: string): void;
  /** Bookkeeping after a successful DELETE (or an overwrite): drops locks on `path` and below. */
  remove(path: string): void;
}

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

export interface MemoryLockSystemOptions {
  /** Epoch milliseconds; injectable so tests can move time forward. */
  now?: () => number;
  /** Token factory, e.g. to issue `urn:uuid:` tokens instead. */
  newToken?: () => string;
}

interface StoredLock {
  token: string;
  root: string;
  depth: LockDepth;
  scope: LockScope;
  ownerXml: string;
  timeoutSeconds: number;
  principal: string | undefined;
  expiresAt: number;
}

/**
 * A linear scan per call: clients hold a handful of locks at a time, so an index by path would
 * cost more code than it saves.
 */
export class MemoryLockSystem implements LockSystem {
  private readonly locks = new Map<string, StoredLock>();
  private readonly now: () => number;
  private readonly newToken: () => string;

  constructor(options: MemoryLockSystemOptions = {}) {
    this.now = options.now ?? Date.now;
    this.newToken = options.newToken ?? (() => `opaquelocktoken:${randomUUID()}`);
  }

  create(request: LockRequest): LockInfo {
    assertGatewayPath(request.root);
    assertTimeout(request.timeoutSeconds);
    const conflicts = this.live().filter((lock) => incompatible(lock, request));
    if (conflicts.length > 0) throw new LockConflict(conflicts.map(snapshot));
    const lock: StoredLock = {
      token: this.newToken(),
      root: request.root,
      depth: request.depth,
      scope: request.scope,
      ownerXml: request.ownerXml,
      timeoutSeconds: request.timeoutSeconds,
      principal: request.principal,
      expiresAt: this.expiry(request.timeoutSeconds),
    };
    this.locks.set(lock.token, lock);
    return snapshot(lock);
  }

  refresh(
    token: string,
    timeoutSeconds: number,
    options: { path?: string; principal?: string } = {},
  ): LockInfo {
    assertTimeout(timeoutSeconds);
    const lock = this.owned(token, options.path, options.principal);
    lock.timeoutSeconds = timeoutSeconds;
    lock.expiresAt = this.expiry(timeoutSeconds);
    return snapshot(lock);
  }

  unlock(path: string, token: string, principal?: string): void {
    this.owned(token, path, principal);
    this.locks.delete(token);
  }

  get(token: string): LockInfo | undefined {
    this.purgeExpired();
    const lock = this.locks.get(token);
    return lock === undefined ? undefined : snapshot(lock);
  }

  holdsAny(): boolean {
    return this.live().length > 0;
  }

  locksCovering(path: string): LockInfo[] {
    assertGatewayPath(path);
    // Asked once per entry of every PROPFIND, nearly always with no lock held at all.
    if (this.locks.size === 0) return [];
    return this.live()
      .filter((lock) => covers(lock, path))
      .map(snapshot);
  }

  canWrite(
    path: string,
    submittedTokens: readonly string[],
    options: WriteOptions = {},
  ): WriteCheck {
    assertGatewayPath(path);
    const blocking = this.live().find(
      (lock) => protects(lock, path, options) && !heldBy(lock, submittedTokens, options.principal),
    );
    return blocking === undefined
      ? { allowed: true }
      : { allowed: false, lock: snapshot(blocking) };
  }

  move(from: string, to: string): void {
    this.remove(from);
    this.remove(to);
  }

  remove(path: string): void {
    assertGatewayPath(path);
    for (const lock of this.live()) {
      if (isSameOrBelow(lock.root, path)) this.locks.delete(lock.token);
    }
  }

  /** The live lock `token`, checked to cover `path` and to belong to `principal`. */
  private owned(
    token: string,
    path: string | undefined,
    principal: string | undefined,
  ): StoredLock {
    this.purgeExpired();
    const lock = this.locks.get(token);
    if (lock === undefined) throw new LockNotFound(token);
    if (path !== undefined) {
      assertGatewayPath(path);
      if (!covers(lock, path)) throw new LockTokenMismatch(token, path);
    }
    if (!principalMatches(lock, principal)) throw new LockForbidden(token);
    return lock;
  }

  private live(): StoredLock[] {
    this.purgeExpired();
    return [...this.locks.values()];
  }

  private purgeExpired(): void {
    const now = this.now();
    for (const lock of this.locks.values()) {
      if (lock.expiresAt <= now) this.locks.delete(lock.token);
    }
  }

  private expiry(timeoutSeconds: number): number {
    return this.now() + timeoutSeconds * 1000;
  }
}

// ---------------------------------------------------------------------------------------------
// Path and lock relations

/** The lock protects `path`: it is the lock's root, or below a depth-infinity root. */
function covers(lock: Pick<LockInfo, "root" | "depth">, path: string): boolean {
  return lock.root === path || (lock.depth === "infinity" && isBelow(path, lock.root));
}

/** Two locks share a resource and one of them is exclusive (§6.1, §9.10.5). */
function incompatible(existing: StoredLock, request: LockRequest): boolean {
  const overlap = covers(existing, request.root) || covers(request, existing.root);
  return overlap && (existing.scope === "exclusive" || request.scope === "exclusive");
}

/** The lock stands in the way of a write to `path` with these options. */
function protects(lock: StoredLock, path: string, options: WriteOptions): boolean {
  if (covers(lock, path)) return true;
  if (options.recursive === true && isBelow(lock.root, path)) return true;
  return options.membership === true && path !== "/" && lock.root === parentOf(path);
}

function heldBy(lock: StoredLock, tokens: readonly string[], principal: string | undefined) {
  return tokens.includes(lock.token) && principalMatches(lock, principal);
}

/** A lock taken without a principal can be used by anyone holding its token. */
function principalMatches(lock: StoredLock, principal: string | undefined): boolean {
  return lock.principal === undefined || lock.principal === principal;
}

function snapshot(lock: StoredLock): LockInfo {
  const { principal, ...rest } = lock;
  return Object.freeze(principal === undefined ? rest : { ...rest, principal });
}

function assertGatewayPath(path: string): void {
  const ok = path === "/" || (/^\/[^/]/.test(path) && !path.endsWith("/") && !path.includes("//"));
  if (!ok) throw new RangeError(`not a gateway path: ${JSON.stringify(path)}`);
}

function assertTimeout(seconds: number): void {
  if (!(seconds > 0)) throw new RangeError(`lock timeout must be positive: ${seconds}`);
}
