/**
 * The Redis connection behind shared state (`--redis URL`: locks and change notices shared by
 * several gateway instances serving one drive). While Redis is unreachable every call fails at
 * once with SharedStateUnavailable (a 503 for the WebDAV client) instead of waiting, and the
 * client reconnects in the background; nothing is cached here, so once Redis answers again
 * whatever state it kept is what counts.
 */
import { Redis } from "ioredis";
import { SharedStateUnavailable } from "../errors.js";
import type { Logger } from "../log.js";

/** Turns whatever a Redis call failed with into SharedStateUnavailable. */
export function unavailable(err: unknown): SharedStateUnavailable {
  const reason = err instanceof Error ? err.message : String(err);
  return new SharedStateUnavailable(`shared state (Redis) unavailable: ${reason}`, {
    cause: err,
    retryable: true,
  });
}

export interface RedisOptions {
  /** How long a command may go unanswered (a Redis that hangs) before it fails. */
  commandTimeoutMs?: number;
}

/**
 * Connects to `url` and waits until Redis answers; throws SharedStateUnavailable when the first
 * attempt fails, so that a wrong URL stops the gateway at start rather than failing every lock.
 */
export async function openRedis(
  url: string,
  log: Logger,
  options: RedisOptions = {},
): Promise<Redis> {
  const redis = new Redis(url, {
    lazyConnect: true,
    // Fail fast rather than queue: no offline queue, and a command the connection dropped is
    // rejected, never sent again after the reconnect (an EXEC must not apply twice).
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: options.commandTimeoutMs ?? 2000,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
  });
  // connect() only says "Connection is closed"; the error event says why.
  let firstError: Error | undefined;
  const remember = (err: Error) => (firstError ??= err);
  redis.on("error", remember);
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw unavailable(firstError ?? err);
  } finally {
    redis.off("error", remember);
  }
  reportOutages(redis, log, "Redis");
  return redis;
}

/**
 * Logs once when `redis` loses its connection and once when it is back: ioredis reports an error
 * on every reconnection attempt, and without a listener it would print them all.
 */
export function reportOutages(redis: Redis, log: Logger, what: string): void {
  let down = false;
  redis.on("error", (err: Error) => {
    if (!down) log.warn({ problem: err.message }, `${what} unreachable: reconnecting`);
    down = true;
  });
  redis.on("ready", () => {
    if (down) log.info(`${what} reachable again`);
    down = false;
  });
}
