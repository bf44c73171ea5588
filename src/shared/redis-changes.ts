/**
 * Change notices over Redis pub/sub, one channel per account (`cdav:<account>:changes`). Each
 * message names the instance that sent it, which ignores its own. Pub/sub keeps nothing for a
 * subscriber that is away, so when the subscription comes back after a drop the listeners are
 * told to forget everything.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "../log.js";
import type { ChangeBus, ChangeBusListener } from "./changes.js";
import { reportOutages, unavailable } from "./redis.js";

interface Notice {
  from: string;
  paths: string[];
}

export class RedisChangeBus implements ChangeBus {
  private readonly listeners = new Set<ChangeBusListener>();
  private readonly instance = randomUUID();

  private constructor(
    private readonly redis: Redis,
    private readonly subscriber: Redis,
    private readonly channel: string,
    private readonly log: Logger,
  ) {}

  /**
   * Subscribes to `account`'s notices on a connection of its own (a subscribed connection can do
   * nothing else); `redis`, which publishes, may be shared. Throws SharedStateUnavailable.
   */
  static async open(redis: Redis, account: string, log: Logger): Promise<RedisChangeBus> {
    const channel = `cdav:${encodeURIComponent(account)}:changes`;
    // Subscribed again by hand after a reconnect, so that listeners are reset only once it holds.
    const subscriber = redis.duplicate({ autoResubscribe: false, lazyConnect: true });
    reportOutages(subscriber, log, "Redis (change notices)");
    try {
      await subscriber.connect();
      await subscriber.subscribe(channel);
    } catch (err) {
      subscriber.disconnect();
      throw unavailable(err);
    }
    const bus = new RedisChangeBus(redis, subscriber, channel, log);
    subscriber.on("message", (_channel: string, message: string) => bus.receive(message));
    subscriber.on("ready", () => void bus.resubscribe());
    return bus;
  }

  publish(paths: readonly string[]): void {
    if (paths.length === 0) return;
    const notice: Notice = { from: this.instance, paths: [...paths] };
    // The write already succeeded upstream: a notice that cannot be sent leaves the other
    // instances' caches stale for their lifetime at worst, which is no reason to fail it.
    this.redis.publish(this.channel, JSON.stringify(notice)).catch((err: unknown) => {
      this.log.warn({ problem: unavailable(err).message, paths }, "change notice not sent");
    });
  }

  subscribe(listener: ChangeBusListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.subscriber.disconnect();
  }

  private receive(message: string): void {
    const notice = parse(message);
    if (notice === undefined) return this.reset();
    if (notice.from === this.instance) return;
    for (const listener of this.listeners) listener.changed(notice.paths);
  }

  private async resubscribe(): Promise<void> {
    try {
      await this.subscriber.subscribe(this.channel);
    } catch {
      return; // dropped again: the next reconnection tries again
    }
    this.reset();
  }

  private reset(): void {
    for (const listener of this.listeners) listener.reset();
  }
}

/** A notice, or undefined for a message no instance of this version sent: safest to forget all. */
function parse(message: string): Notice | undefined {
  try {
    const notice = JSON.parse(message) as Partial<Notice>;
    const { from, paths } = notice;
    if (typeof from !== "string" || !Array.isArray(paths)) return undefined;
    if (!paths.every((path) => typeof path === "string")) return undefined;
    return { from, paths };
  } catch {
    return undefined;
  }
}
