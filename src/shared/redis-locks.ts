/**
 * WebDAV locks kept in Redis, so that every gateway instance serving one account sees the same
 * locks (the in-memory MemoryLockSystem serves one process). Decisions use the same rules
 * (src/dav/lock-rules.ts); only where the locks live differs.
 *
 * Keys, under `cdav:<account>:`: `lock:<token>` holds a lock as JSON with the lock's timeout as
 * its expiry, so Redis drops it even when the instance that took it is gone; `locks` is the set
 * of tokens, pruned of expired ones by the next write. Redis's clock decides expiry: `expiresAt`
 * is this process's clock plus what Redis says is left.
 *
 * Writes are optimistic transactions: WATCH the token set and every lock key, read, decide,
 * MULTI … EXEC; when another instance changed any of them EXEC applies nothing and the write is
 * decided again on fresh state. One Redis, not Cluster: the read script names lock keys itself.
 */
import type { ChainableCommander, Redis } from "ioredis";
import type {
  LockInfo,
  LockRequest,
  LockSnapshot,
  LockSystem,
  WriteCheck,
  WriteOptions,
} from "../dav/locks.js";
import {
  assertGatewayPath,
  goesWith,
  grant,
  owned,
  renewed,
  snapshotOf,
  writeCheck,
  newLockToken,
} from "../dav/lock-rules.js";
import { SharedStateUnavailable } from "../errors.js";
import { unavailable } from "./redis.js";

/** Rounds of a write that other instances keep overtaking before it gives up (503). */
const ATTEMPTS = 10;

/** All live locks and the milliseconds each has left, in one step: one consistent view. */
const READ_LOCKS = `
local out = {}
for _, token in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. token
  local json = redis.call('GET', key)
  if json then
    out[#out + 1] = json
    out[#out + 1] = redis.call('PTTL', key)
  end
end
return out
`;

export interface RedisLockSystemOptions {
  /** The upstream account whose locks these are; accounts never see each other's locks. */
  account: string;
  /** Token factory, e.g. to issue `urn:uuid:` tokens instead. */
  newToken?: () => string;
}

export class RedisLockSystem implements LockSystem {
  private readonly prefix: string;
  private readonly tokens: string;
  private readonly newToken: () => string;

  /**
   * `redis` may be shared with other accounts' lock systems and change buses, but nothing else
   * may run WATCH or MULTI on it: a transaction's EXEC ends every WATCH on the connection.
   */
  constructor(
    private readonly redis: Redis,
    options: RedisLockSystemOptions,
  ) {
    this.prefix = `cdav:${encodeURIComponent(options.account)}:`;
    this.tokens = `${this.prefix}locks`;
    this.newToken = options.newToken ?? newLockToken;
  }

  async create(request: LockRequest): Promise<LockInfo> {
    const token = this.newToken();
    return this.transaction((locks, tx) => {
      const lock = grant(locks, request, token, Date.now());
      tx.set(this.key(token), stored(lock), "PX", ttlMs(lock), "NX").sadd(this.tokens, token);
      return lock;
    });
  }

  async refresh(
    token: string,
    timeoutSeconds: number,
    options: { path?: string; principal?: string } = {},
  ): Promise<LockInfo> {
    return this.transaction((locks, tx) => {
      const lock = owned(find(locks, token), token, options.path, options.principal);
      const refreshed = renewed(lock, timeoutSeconds, Date.now());
      // XX: a refresh must not bring back a lock that expired meanwhile.
      tx.set(this.key(token), stored(refreshed), "PX", ttlMs(refreshed), "XX");
      return refreshed;
    });
  }

  async unlock(path: string, token: string, principal?: string): Promise<void> {
    await this.transaction((locks, tx) => {
      this.drop(tx, [owned(find(locks, token), token, path, principal)]);
    });
  }

  async get(token: string): Promise<LockInfo | undefined> {
    return find(await this.read(), token);
  }

  async holdsAny(): Promise<boolean> {
    return (await this.read()).length > 0;
  }

  async snapshot(): Promise<LockSnapshot> {
    return snapshotOf(await this.read());
  }

  async canWrite(
    path: string,
    submittedTokens: readonly string[],
    options: WriteOptions = {},
  ): Promise<WriteCheck> {
    return writeCheck(await this.read(), path, submittedTokens, options);
  }

  async move(from: string, to: string): Promise<void> {
    assertGatewayPath(from);
    assertGatewayPath(to);
    await this.transaction((locks, tx) => {
      this.drop(
        tx,
        locks.filter((lock) => goesWith(lock, from) || goesWith(lock, to)),
      );
    });
  }

  async remove(path: string): Promise<void> {
    assertGatewayPath(path);
    await this.transaction((locks, tx) => {
      this.drop(
        tx,
        locks.filter((lock) => goesWith(lock, path)),
      );
    });
  }

  private key(token: string): string {
    return `${this.prefix}lock:${token}`;
  }

  private drop(tx: ChainableCommander, locks: readonly LockInfo[]): void {
    if (locks.length === 0) return;
    const tokens = locks.map((lock) => lock.token);
    tx.del(...tokens.map((token) => this.key(token))).srem(this.tokens, ...tokens);
  }

  /** The live locks, as Redis has them now (nothing is cached that could go stale). */
  private async read(): Promise<LockInfo[]> {
    const reply = (await call(this.redis.eval(READ_LOCKS, 1, this.tokens, this.key("")))) as (
      string | number
    )[];
    const now = Date.now();
    const locks: LockInfo[] = [];
    for (let i = 0; i < reply.length; i += 2) {
      locks.push(revived(reply[i] as string, reply[i + 1] as number, now));
    }
    return locks;
  }

  /**
   * Runs `decide` on the live locks and applies what it queued on `tx`, atomically: if another
   * instance changed the locks in between, nothing is applied and `decide` runs again on fresh
   * state. Errors `decide` throws (a conflict, a wrong token) pass through as they are.
   */
  private transaction<T>(decide: (locks: LockInfo[], tx: ChainableCommander) => T): Promise<T> {
    return takeTurn(this.redis, async () => {
      for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
        const applied = await this.attempt(decide);
        if (applied !== undefined) return applied.result;
      }
      throw new SharedStateUnavailable(
        `the locks kept changing under ${ATTEMPTS} attempts to update them; try again`,
        { retryable: true },
      );
    });
  }

  /** One round of `transaction`: undefined when another instance got in first. */
  private async attempt<T>(
    decide: (locks: LockInfo[], tx: ChainableCommander) => T,
  ): Promise<{ result: T } | undefined> {
    const redis = this.redis;
    try {
      await call(redis.watch(this.tokens));
      const tokens = await call(redis.smembers(this.tokens));
      if (tokens.length > 0) await call(redis.watch(...tokens.map((token) => this.key(token))));
      const locks = await this.read();
      const tx = redis.multi();
      const live = new Set(locks.map((lock) => lock.token));
      const expired = tokens.filter((token) => !live.has(token));
      if (expired.length > 0) tx.srem(this.tokens, ...expired);
      const result = decide(locks, tx);
      const replies = await call(tx.exec());
      // null: a watched key changed. A null reply inside: a SET NX/XX that did not apply (a
      // Redis older than 6.0.9 does not abort EXEC when a watched key expires).
      if (replies === null || replies.some(([, reply]) => reply === null)) return undefined;
      const failed = replies.find(([err]) => err !== null);
      if (failed !== undefined) throw unavailable(failed[0]);
      return { result };
    } catch (err) {
      // Without an EXEC the WATCH would outlive this round. An UNWATCH that fails needs no
      // word: only a lost connection fails it, and a lost connection holds no WATCH.
      redis.unwatch().catch(() => undefined);
      throw err;
    }
  }
}

/** WATCH belongs to the connection: transactions on one client take turns. */
const turns = new WeakMap<Redis, Promise<unknown>>();

function takeTurn<T>(redis: Redis, work: () => Promise<T>): Promise<T> {
  const mine = (turns.get(redis) ?? Promise.resolve()).then(work);
  // The caller hears of its failure through `mine`; the next turn waits only for it to end.
  turns.set(
    redis,
    mine.catch(() => undefined),
  );
  return mine;
}

/** A Redis call whose failure, whatever it is, means the shared state is out of reach. */
function call<T>(promise: Promise<T>): Promise<T> {
  return promise.catch((err: unknown) => {
    throw unavailable(err);
  });
}

function find(locks: readonly LockInfo[], token: string): LockInfo | undefined {
  return locks.find((lock) => lock.token === token);
}

/** A lock key's value: the lock without its expiry, as the key's own expiry is what counts. */
function stored(lock: LockInfo): string {
  return JSON.stringify(lock, (field, value: unknown) =>
    field === "expiresAt" ? undefined : value,
  );
}

/** The lock a key holds, which Redis will drop in `remainingMs`. */
function revived(json: string, remainingMs: number, now: number): LockInfo {
  const lock = JSON.parse(json) as Omit<LockInfo, "expiresAt">;
  return Object.freeze({ ...lock, expiresAt: now + remainingMs });
}

function ttlMs(lock: LockInfo): number {
  return Math.ceil(lock.timeoutSeconds * 1000);
}
