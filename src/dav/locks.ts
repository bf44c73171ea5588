/**
 * WebDAV write locks (RFC 4918 §6, §7, §9.10, §9.11): the lock system's interface and the one
 * held in memory. Asynchronous, so that a lock table shared by several gateways can stand
 * behind it; lock-rules.ts decides for every implementation.
 *
 * Locks are the gateway's own, never mirrored to Cloudreve: that would make API deletes fail
 * with 40073 (docs/clients.md §E.1). Paths are gateway paths: "/" or "/a/b", no trailing slash.
 * A lock protects its root and, at depth infinity, everything below it.
 */
import {
  assertGatewayPath,
  goesWith,
  grant,
  newLockToken,
  isLive,
  owned,
  renewed,
  snapshotOf,
  writeCheck,
} from "./lock-rules.js";

// The errors are part of the interface; lock-rules.ts throws them.
export { LockConflict, LockForbidden, LockNotFound, LockTokenMismatch } from "./lock-rules.js";

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
  /** Takes a new lock; rejects with LockConflict when an existing lock is incompatible. */
  create(request: LockRequest): Promise<LockInfo>;
  /**
   * Restarts the lock's timeout. With `path`, the lock must cover it (a refresh is sent to a
   * locked URL, possibly below the lock's root). Rejects with LockNotFound, LockTokenMismatch or
   * LockForbidden.
   */
  refresh(
    token: string,
    timeoutSeconds: number,
    options?: { path?: string; principal?: string },
  ): Promise<LockInfo>;
  /** Removes the lock `token`, which must cover `path`. Same errors as refresh. */
  unlock(path: string, token: string, principal?: string): Promise<void>;
  /** The live lock with this token, if any. */
  get(token: string): Promise<LockInfo | undefined>;
  /** Whether any lock is live (an account holding one is not let go while idle). */
  holdsAny(): Promise<boolean>;
  /**
   * The live locks as one consistent view, for a request that asks about many paths (PROPFIND
   * asks per entry): one look at the table, however many entries.
   */
  snapshot(): Promise<LockSnapshot>;
  /** Whether a write to `path` may go ahead given the tokens the request submitted. */
  canWrite(
    path: string,
    submittedTokens: readonly string[],
    options?: WriteOptions,
  ): Promise<WriteCheck>;
  /**
   * Bookkeeping after a successful MOVE: locks do not travel with the resource (§7.7), so locks
   * on the source and below are dropped, and so are locks on a destination that was replaced.
   */
  move(from: string, to: string): Promise<void>;
  /** Bookkeeping after a successful DELETE (or an overwrite): drops locks on `path` and below. */
  remove(path: string): Promise<void>;
}

export interface LockSnapshot {
  /** Locks on `path` itself and depth-infinity locks on its ancestors (for lockdiscovery). */
  covering(path: string): LockInfo[];
}

export interface MemoryLockSystemOptions {
  /** Epoch milliseconds; injectable so tests can move time forward. */
  now?: () => number;
  /** Token factory, e.g. to issue `urn:uuid:` tokens instead. */
  newToken?: () => string;
}

/**
 * Locks in this process alone. Each method runs to completion without awaiting, so reading the
 * locks, deciding and writing cannot interleave with another request. Expired locks are dropped
 * lazily, whenever the table is consulted, so no timer keeps the process alive. A linear scan
 * per call: clients hold a handful of locks at a time, so an index by path would cost more code
 * than it saves.
 */
export class MemoryLockSystem implements LockSystem {
  private readonly locks = new Map<string, LockInfo>();
  private readonly now: () => number;
  private readonly newToken: () => string;

  constructor(options: MemoryLockSystemOptions = {}) {
    this.now = options.now ?? Date.now;
    this.newToken = options.newToken ?? newLockToken;
  }

  async create(request: LockRequest): Promise<LockInfo> {
    const lock = grant(this.live(), request, this.newToken(), this.now());
    this.locks.set(lock.token, lock);
    return lock;
  }

  async refresh(
    token: string,
    timeoutSeconds: number,
    options: { path?: string; principal?: string } = {},
  ): Promise<LockInfo> {
    const lock = owned(this.liveLock(token), token, options.path, options.principal);
    const refreshed = renewed(lock, timeoutSeconds, this.now());
    this.locks.set(token, refreshed);
    return refreshed;
  }

  async unlock(path: string, token: string, principal?: string): Promise<void> {
    owned(this.liveLock(token), token, path, principal);
    this.locks.delete(token);
  }

  async get(token: string): Promise<LockInfo | undefined> {
    return this.liveLock(token);
  }

  async holdsAny(): Promise<boolean> {
    return this.live().length > 0;
  }

  async snapshot(): Promise<LockSnapshot> {
    return snapshotOf(this.live());
  }

  /** The live locks themselves, now (the primary of `--workers` sends them to the workers). */
  liveLocks(): LockInfo[] {
    return this.live();
  }

  async canWrite(
    path: string,
    submittedTokens: readonly string[],
    options: WriteOptions = {},
  ): Promise<WriteCheck> {
    return writeCheck(this.live(), path, submittedTokens, options);
  }

  async move(from: string, to: string): Promise<void> {
    this.drop(from);
    this.drop(to);
  }

  async remove(path: string): Promise<void> {
    this.drop(path);
  }

  private drop(path: string): void {
    assertGatewayPath(path);
    for (const lock of this.live()) {
      if (goesWith(lock, path)) this.locks.delete(lock.token);
    }
  }

  private liveLock(token: string): LockInfo | undefined {
    this.purgeExpired();
    return this.locks.get(token);
  }

  private live(): LockInfo[] {
    this.purgeExpired();
    return [...this.locks.values()];
  }

  private purgeExpired(): void {
    const now = this.now();
    for (const lock of this.locks.values()) {
      if (!isLive(lock, now)) this.locks.delete(lock.token);
    }
  }
}
