import type { Redis } from "ioredis";
import { MemoryLockSystem, type LockSystem } from "../dav/locks.js";
import type { Logger } from "../log.js";
import { LocalChangeBus, type ChangeBus } from "./changes.js";
import { RedisNotices } from "./redis-changes.js";
import { RedisLockSystem } from "./redis-locks.js";
import { openRedis } from "./redis.js";

/**
 * Where each account's WebDAV locks and change notices live: in this process (the default: one
 * instance needs nothing else), or in Redis (`--redis`), so that several gateway instances
 * serving the same drive agree on locks and forget the same cache entries.
 */
export interface SharedState {
  locksOf(account: string): LockSystem;
  changesOf(account: string): Promise<ChangeBus>;
  close(): Promise<void>;
}

export class LocalState implements SharedState {
  locksOf(): LockSystem {
    return new MemoryLockSystem();
  }

  async changesOf(): Promise<ChangeBus> {
    return new LocalChangeBus();
  }

  async close(): Promise<void> {}
}

export class RedisState implements SharedState {
  private readonly notices: RedisNotices;

  private constructor(
    private readonly redis: Redis,
    log: Logger,
  ) {
    this.notices = new RedisNotices(redis, log);
  }

  /** Throws SharedStateUnavailable when Redis cannot be reached at start. */
  static async open(url: string, log: Logger): Promise<RedisState> {
    return new RedisState(await openRedis(url, log), log);
  }

  locksOf(account: string): LockSystem {
    return new RedisLockSystem(this.redis, { account });
  }

  changesOf(account: string): Promise<ChangeBus> {
    return this.notices.busOf(account);
  }

  async close(): Promise<void> {
    await this.notices.close();
    this.redis.disconnect();
  }
}
