/**
 * Change notices over Redis pub/sub, one channel per account (`cdav:<account>:changes`), all of
 * a process's accounts on one subscribed connection (a subscribed connection can do nothing
 * else, and a gateway serving many users would otherwise hold one per account). Each message
 * names the process that sent it, which ignores its own. Pub/sub keeps nothing for a subscriber
 * that is away, so when the subscription comes back after a drop every listener is told to
 * forget everything.
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

/** This process's change notices: a bus per account, one subscribed connection for all. */
export class RedisNotices {
  private readonly instance = randomUUID();
  private subscriber: Promise<Redis> | undefined;
  /** The open buses by channel. */
  private readonly buses = new Map<string, Set<AccountBus>>();

  /** `redis` publishes and may be shared; the subscribed connection is a duplicate of it. */
  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
  ) {}

  /** Subscribes to `account`'s notices. Throws SharedStateUnavailable. */
  async busOf(account: string): Promise<ChangeBus> {
    const channel = `cdav:${encodeURIComponent(account)}:changes`;
    const subscriber = await this.connection();
    const bus = new AccountBus(this, channel);
    let open = this.buses.get(channel);
    if (!open) this.buses.set(channel, (open = new Set()));
    open.add(bus);
    try {
      await subscriber.subscribe(channel);
    } catch (err) {
      this.closed(bus);
      throw unavailable(err);
    }
    return bus;
  }

  publish(channel: string, paths: readonly string[]): void {
    if (paths.length === 0) return;
    const notice: Notice = { from: this.instance, paths: [...paths] };
    // The write already succeeded upstream: a notice that cannot be sent leaves the other
    // instances' caches stale for their lifetime at worst, which is no reason to fail it.
    this.redis.publish(channel, JSON.stringify(notice)).catch((err: unknown) => {
      this.log.warn({ problem: unavailable(err).message, paths }, "change notice not sent");
    });
  }

  /** `bus` is closed: its channel is left once no bus of this process listens on it. */
  closed(bus: AccountBus): void {
    const open = this.buses.get(bus.channel);
    if (!open?.delete(bus) || open.size > 0) return;
    this.buses.delete(bus.channel);
    // A failed UNSUBSCRIBE needs no word: only a lost connection fails it, and the reconnection
    // subscribes only to the channels still open.
    void this.subscriber
      ?.then((subscriber) => subscriber.unsubscribe(bus.channel))
      .catch(() => undefined);
  }

  async close(): Promise<void> {
    this.buses.clear();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    // A connection that failed to open was disconnected then, and its failure went to the
    // busOf that asked for it: nothing is left to close.
    (await subscriber?.catch(() => undefined))?.disconnect();
  }

  /** The subscribed connection, opened on first use; a failed opening is tried again next time. */
  private connection(): Promise<Redis> {
    this.subscriber ??= this.connect().catch((err: unknown) => {
      this.subscriber = undefined;
      throw err;
    });
    return this.subscriber;
  }

  private async connect(): Promise<Redis> {
    // Subscribed again by hand after a reconnect, so that listeners are reset only once it holds.
    const subscriber = this.redis.duplicate({ autoResubscribe: false, lazyConnect: true });
    reportOutages(subscriber, this.log, "Redis (change notices)");
    try {
      await subscriber.connect();
    } catch (err) {
      subscriber.disconnect();
      throw unavailable(err);
    }
    subscriber.on("message", (channel: string, message: string) => this.receive(channel, message));
    subscriber.on("ready", () => void this.resubscribe(subscriber));
    return subscriber;
  }

  private receive(channel: string, message: string): void {
    const notice = parse(message);
    for (const bus of this.buses.get(channel) ?? []) {
      if (notice === undefined) bus.reset();
      else if (notice.from !== this.instance) bus.changed(notice.paths);
    }
  }

  private async resubscribe(subscriber: Redis): Promise<void> {
    const channels = [...this.buses.keys()];
    try {
      if (channels.length > 0) await subscriber.subscribe(...channels);
    } catch {
      return; // dropped again: the next reconnection tries again
    }
    for (const open of this.buses.values()) for (const bus of open) bus.reset();
  }
}

/** One account's notices, as one user of this process's connection sees them. */
class AccountBus implements ChangeBus {
  private readonly listeners = new Set<ChangeBusListener>();

  constructor(
    private readonly notices: RedisNotices,
    readonly channel: string,
  ) {}

  publish(paths: readonly string[]): void {
    this.notices.publish(this.channel, paths);
  }

  subscribe(listener: ChangeBusListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.notices.closed(this);
  }

  changed(paths: string[]): void {
    for (const listener of this.listeners) listener.changed(paths);
  }

  reset(): void {
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
