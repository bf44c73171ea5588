import { posix } from "node:path";
import type { Clock } from "./clock.js";
import { encodeId, IdType } from "./hashid.js";
import type { Ctx } from "./http.js";
import type { FileNode } from "./model.js";

/**
 * Cloudreve's change events (§5.12): pkg/filemanager/eventhub/ (the hub, its subscribers and
 * their merging) and the emitters of pkg/filemanager/fs/dbfs/events.go. Delivery is a hint,
 * not a log: a flush of more than 16 events drops the rest, and a restart forgets everything.
 */

export type EventType = "create" | "modify" | "rename" | "delete";

/** eventhub.Event; its JSON has `to` always, empty unless a rename. */
export interface FsEvent {
  type: EventType;
  file_id: string;
  from: string;
  to: string;
}

/** The subscriber's channel (bufSize): events a flush cannot put in are dropped. */
const CHANNEL_SLOTS = 16;
/** Setting EventHubMaxOfflineDuration: an offline subscriber is kept this long. */
const OFFLINE_MAX_AGE_MS = 14 * 86_400_000;

const event = (type: EventType, fileId: string, from: string, to = ""): FsEvent => ({
  type,
  file_id: fileId,
  from,
  to,
});

/**
 * DebounceEvents (eventhub/event.go): events of one file folded into one, in the order files
 * first appeared, including its quirks (a rename after a create keeps the create at the new
 * path; a rename there and back, or a create then a delete, leave nothing).
 */
export function mergeEvents(events: readonly FsEvent[]): FsEvent[] {
  const states = new Map<string, { type: EventType; from: string; to: string }>();
  for (const e of events) {
    const s = states.get(e.file_id);
    if (!s) {
      states.set(e.file_id, { type: e.type, from: e.from, to: e.to });
      continue;
    }
    switch (e.type) {
      case "create":
        // Delete + Create (a restore): a Create.
        if (s.type === "delete") Object.assign(s, { type: "create", from: e.from, to: "" });
        break;
      case "modify":
        break; // folded into whatever came first
      case "rename":
        if (s.type === "create") Object.assign(s, { from: e.to, to: "" });
        else if (s.type === "modify") Object.assign(s, { type: "rename", from: e.from, to: e.to });
        else if (s.type === "rename") {
          if (s.from === e.to) states.delete(e.file_id);
          else s.to = e.to;
        }
        break;
      case "delete":
        if (s.type === "create") states.delete(e.file_id);
        else if (s.type !== "delete") Object.assign(s, { type: "delete", from: e.from, to: "" });
        break;
    }
  }
  return [...states].map(([id, s]) => event(s.type, id, s.from, s.type === "rename" ? s.to : ""));
}

/** One client id's subscription to one folder (eventhub/subscriber.go). */
export class Subscriber {
  private online = true;
  private offlineSince = 0;
  /** Events waiting for the debounce to end. */
  private buffer: FsEvent[] = [];
  /** Flushed while offline (Cloudreve's fs_events table), taken back when it resumes. */
  private stored: FsEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The channel the connections read from. */
  private readonly channel: FsEvent[] = [];
  private readonly readers = new Set<(events: FsEvent[]) => void>();

  constructor(
    readonly clientId: string,
    private readonly debounceMs: number,
  ) {}

  /** Buffers an event and restarts the debounce: a steady trickle delays every event. */
  publish(e: FsEvent): void {
    this.buffer.push(e);
    this.restartTimer();
  }

  private restartTimer(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), this.debounceMs);
    this.timer.unref();
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.buffer.length === 0) return;
    if (!this.online) this.stored.push(...this.buffer);
    else {
      for (const e of mergeEvents(this.buffer)) {
        // A non-blocking send: what does not fit is gone.
        if (this.channel.length < CHANNEL_SLOTS) this.channel.push(e);
      }
      // The connections read after the flush is over, as the handler's goroutine does.
      setImmediate(() => this.drain());
    }
    this.buffer = [];
  }

  private drain(): void {
    if (this.channel.length === 0) return;
    const first = this.readers.values().next();
    if (!first.done) first.value(this.channel.splice(0));
  }

  /** A connection reads the channel; what it holds already (flushed at a disconnect) comes now. */
  attach(reader: (events: FsEvent[]) => void): () => void {
    this.readers.add(reader);
    this.drain();
    return () => this.readers.delete(reader);
  }

  /** Subscribe of a known client id: what was stored offline is merged one debounce later. */
  setOnline(): void {
    this.online = true;
    this.offlineSince = 0;
    this.buffer.push(...this.stored);
    this.stored = [];
    if (this.buffer.length > 0) this.restartTimer();
  }

  /** Unsubscribe: pending events go to the channel (Stop), later ones are stored. */
  setOffline(now: number): void {
    this.flush();
    this.online = false;
    this.offlineSince = now;
  }

  expired(now: number): boolean {
    return !this.online && now - this.offlineSince > OFFLINE_MAX_AGE_MS;
  }

  close(): void {
    clearTimeout(this.timer);
  }
}

/** A subscriber found for a changed file, with the file's path relative to its folder. */
interface Watcher {
  sub: Subscriber;
  path: string;
}

/** The hub: subscribers per folder (topic) by client id, and the emitters of each operation. */
export class EventHub {
  private readonly topics = new Map<number, Map<string, Subscriber>>();

  constructor(
    private readonly debounceMs: number,
    private readonly clock: Clock,
  ) {}

  /** The subscriber for `clientId` on `folder`, and whether it was resumed. */
  subscribe(folder: FileNode, clientId: string): { subscriber: Subscriber; resumed: boolean } {
    const known = this.live(folder.id).get(clientId);
    if (known) {
      known.setOnline();
      return { subscriber: known, resumed: true };
    }
    const subscriber = new Subscriber(clientId, this.debounceMs);
    const subs = this.topics.get(folder.id) ?? new Map<string, Subscriber>();
    this.topics.set(folder.id, subs.set(clientId, subscriber));
    return { subscriber, resumed: false };
  }

  unsubscribe(folder: FileNode, clientId: string): void {
    this.topics.get(folder.id)?.get(clientId)?.setOffline(this.clock.now());
  }

  /** A topic's subscribers without those offline for too long (the hub's hourly clean-up). */
  private live(topic: number): ReadonlyMap<string, Subscriber> {
    const subs = this.topics.get(topic);
    if (!subs) return new Map();
    for (const [id, sub] of subs) {
      if (!sub.expired(this.clock.now())) continue;
      sub.close();
      subs.delete(id);
    }
    return subs;
  }

  /**
   * getEligibleSubscriber: the subscribers of the node's ancestors (and of the node itself
   * with `self`), except those of the client that made the change.
   */
  private watchers(ctx: Ctx, node: FileNode, self: boolean): Watcher[] {
    const origin = ctx.req.headers["x-cr-client-id"];
    const found: Watcher[] = [];
    const below: string[] = [];
    for (let folder: FileNode | null = node; folder; folder = folder.parent) {
      if (folder !== node || self) {
        for (const sub of this.live(folder.id).values()) {
          if (sub.clientId !== origin) found.push({ sub, path: `/${below.join("/")}` });
        }
      }
      below.unshift(folder.name);
    }
    return found;
  }

  /** Event file ids are file hashids for folders too (EncodeFileID). */
  private idOf(node: FileNode): string {
    return encodeId(node.id, IdType.file);
  }

  private emit(ctx: Ctx, type: EventType, node: FileNode): void {
    for (const w of this.watchers(ctx, node, false))
      w.sub.publish(event(type, this.idOf(node), w.path));
  }

  /** A new node, and with `since` each folder between them that mkdir -p made, top down. */
  created(ctx: Ctx, node: FileNode, since = node.parent): void {
    const made: FileNode[] = [];
    for (let n: FileNode | null = node; n && n !== since; n = n.parent) made.unshift(n);
    for (const n of made) this.emit(ctx, "create", n);
  }

  modified(ctx: Ctx, node: FileNode): void {
    this.emit(ctx, "modify", node);
  }

  /** Before the nodes leave their folders: the paths are where they were. */
  deleted(ctx: Ctx, nodes: readonly FileNode[]): void {
    for (const node of nodes) this.emit(ctx, "delete", node);
  }

  /** Before the rename. */
  renamed(ctx: Ctx, node: FileNode, newName: string): void {
    for (const w of this.watchers(ctx, node, false)) {
      const to = w.path.slice(0, w.path.length - node.name.length) + newName;
      w.sub.publish(event("rename", this.idOf(node), w.path, to));
    }
  }

  /**
   * Before the move (emitFileMoved): a subscriber that sees both ends gets a rename, one that
   * sees only the source a delete, one that sees only the destination a create. Subscribers are
   * matched by client id, the last (outermost) of a client's folders winning, as Cloudreve's
   * map does. A node from the trash keeps its trash name in the event.
   */
  moved(ctx: Ctx, node: FileNode, dst: FileNode): void {
    const byClient = (ws: Watcher[]) => new Map(ws.map((w) => [w.sub.clientId, w]));
    const sources = byClient(this.watchers(ctx, node, false));
    const targets = byClient(this.watchers(ctx, dst, true));
    const id = this.idOf(node);
    for (const [clientId, src] of sources) {
      const there = targets.get(clientId);
      targets.delete(clientId);
      src.sub.publish(
        there
          ? event("rename", id, src.path, posix.join(there.path, node.name))
          : event("delete", id, src.path),
      );
    }
    for (const w of targets.values())
      w.sub.publish(event("create", id, posix.join(w.path, node.name)));
  }
}
