import { nameOf, parentOf } from "./paths.js";
import { LRUCache } from "lru-cache";
import type { Entry } from "./types.js";

/** What the drive knows of one item: the Entry plus the upstream facts it needs to act on it. */
export interface Node {
  entry: Entry;
  /** `primary_entity`: signed download URLs are cached per version. */
  entity: string;
  /** The raw `dav:` metadata (dead properties), as stored upstream. */
  dav: Record<string, string>;
}

export interface MetadataCacheOptions {
  ttlMs: number;
  negativeTtlMs: number;
  /** Bound on cached items; a complete listing counts one per child plus one. */
  maxEntries: number;
  account: string;
  now: () => number;
}

/** `null` is a negative entry: the path is known not to exist. `storedAt`: see {@link Ticket}. */
type Slot =
  | { kind: "entry"; node: Node | null; expiresAt: number; storedAt: number }
  | { kind: "listing"; children: Map<string, Node>; expiresAt: number; storedAt: number };

/**
 * A point in the cache's sequence of changes, taken before a fetch: a result whose path was
 * changed after it was taken is not stored.
 */
export type Ticket = number;

/** What a change made stale: a path and all below it, one folder's listing, or one entry. */
type Scope = "subtree" | "listing" | "entry";

/**
 * Entries and complete folder listings, keyed by account and gateway path, with a TTL of
 * their own (the clock is injectable), negative entries, single-flight loading and
 * write-through patching.
 *
 * A change does not scan the cache: it records, for the paths it touched, when it happened
 * (a sequence number), and a slot counts only if it was stored after every change recorded
 * for its path, its listing or an ancestor's subtree. So a change costs the same however big
 * the cache is, a lookup costs the depth of its path, and loads of other paths that were
 * under way carry on and are kept. The change records are bounded: the oldest ones forgotten
 * raise a floor below which nothing counts.
 */
export class MetadataCache {
  private readonly lru: LRUCache<string, Slot>;
  private readonly inflight = new Map<string, { promise: Promise<unknown>; ticket: Ticket }>();
  private readonly changes: LRUCache<string, number>;
  private sequence = 0;
  /** Slots stored before this do not count: the records that could tell are gone. */
  private floor = 0;
  private ttlMs: number;

  constructor(private readonly options: MetadataCacheOptions) {
    this.ttlMs = options.ttlMs;
    this.lru = new LRUCache<string, Slot>({
      maxSize: options.maxEntries,
      sizeCalculation: (slot) => (slot.kind === "listing" ? slot.children.size + 1 : 1),
    });
    this.changes = new LRUCache<string, number>({
      max: Math.max(1000, options.maxEntries),
      dispose: (at, _key, reason) => {
        if (reason === "evict") this.floor = Math.max(this.floor, at);
      },
    });
  }

  /** The node at `path`: a Node, `null` when known absent, `undefined` when unknown. */
  lookup(path: string): Node | null | undefined {
    const slot = this.fresh("entry", path);
    if (slot?.kind === "entry") return slot.node;
    if (path === "/") return undefined;
    const siblings = this.listing(parentOf(path));
    return siblings ? (siblings.get(nameOf(path)) ?? null) : undefined;
  }

  /** The children of a folder whose complete listing is cached. */
  listing(path: string): Map<string, Node> | undefined {
    const slot = this.fresh("listing", path);
    return slot?.kind === "listing" ? slot.children : undefined;
  }

  ticket(): Ticket {
    return this.sequence;
  }

  /** How long entries stored from now on are trusted. */
  setTtl(ms: number): void {
    this.ttlMs = ms;
  }

  /**
   * Runs `load` once for concurrent callers asking for the same `key`. With `what`, a load
   * under way whose path has changed since it started is not joined.
   */
  singleFlight<T>(
    key: string,
    load: () => Promise<T>,
    what?: { kind: Slot["kind"]; path: string },
  ): Promise<T> {
    const running = this.inflight.get(key);
    if (running && (!what || this.counts(what.kind, what.path, running.ticket)))
      return running.promise as Promise<T>;
    const promise: Promise<T> = load().finally(() => {
      if (this.inflight.get(key)?.promise === promise) this.inflight.delete(key);
    });
    this.inflight.set(key, { promise, ticket: this.sequence });
    return promise;
  }

  storeNode(path: string, node: Node | null, ticket: Ticket): void {
    if (!this.counts("entry", path, ticket)) return;
    const ttl = node ? this.ttlMs : this.negativeTtl();
    this.set("entry", path, { kind: "entry", node, expiresAt: this.expiry(ttl), storedAt: ticket });
  }

  storeListing(path: string, children: readonly Node[], ticket: Ticket): void {
    if (!this.counts("listing", path, ticket)) return;
    this.set("listing", path, {
      kind: "listing",
      children: new Map(children.map((n) => [n.entry.name, n])),
      expiresAt: this.expiry(this.ttlMs),
      storedAt: ticket,
    });
  }

  /** After a mutation that put `node` at `path`: whatever was known below it is dropped. */
  upsert(path: string, node: Node): void {
    this.changed("subtree", path);
    this.put(path, node);
  }

  /** After a mutation of the item itself (its properties): what is below it stays valid. */
  replace(path: string, node: Node): void {
    this.changed("entry", path);
    this.put(path, node);
  }

  /** A folder just created through the gateway is known to be empty. */
  upsertEmptyFolder(path: string, node: Node): void {
    this.upsert(path, node);
    this.storeListing(path, [], this.sequence);
  }

  /** After a mutation that took `path` (and everything below it) away. */
  remove(path: string): void {
    const at = this.changed("subtree", path);
    this.set("entry", path, {
      kind: "entry",
      node: null,
      expiresAt: this.expiry(this.negativeTtl()),
      storedAt: at,
    });
    this.patchListing(parentOf(path), (c) => c.delete(nameOf(path)));
  }

  /** After a mutation whose outcome is unknown: `path`, its subtree and its parent's listing go. */
  invalidate(path: string): void {
    this.changed("subtree", path);
    if (path !== "/") this.changed("listing", parentOf(path));
  }

  /** Everything goes (the upstream may have changed anywhere). */
  clear(): void {
    this.lru.clear();
    this.changes.clear();
    this.inflight.clear();
    this.floor = ++this.sequence;
  }

  /** Stores `node` at `path` and in its parent's listing, as of now. */
  private put(path: string, node: Node): void {
    this.set("entry", path, {
      kind: "entry",
      node,
      expiresAt: this.expiry(this.ttlMs),
      storedAt: this.sequence,
    });
    if (path !== "/") this.patchListing(parentOf(path), (c) => c.set(node.entry.name, node));
  }

  /**
   * Changes a cached listing in place, as of now: loads of it under way no longer count. Setting
   * it again lets the LRU recount its size.
   */
  private patchListing(path: string, change: (children: Map<string, Node>) => void): void {
    const slot = this.fresh("listing", path);
    const at = this.changed("listing", path);
    if (slot?.kind !== "listing") return;
    change(slot.children);
    this.set("listing", path, { ...slot, storedAt: at });
  }

  /** Records a change of `scope` at `path`; answers its place in the sequence. */
  private changed(scope: Scope, path: string): number {
    const at = ++this.sequence;
    this.changes.set(`${scope}\u0000${path}`, at);
    return at;
  }

  /** Whether something stored as of `at` for `path` is still current: no change since. */
  private counts(kind: Slot["kind"], path: string, at: number): boolean {
    if (at < this.floor) return false;
    const own = this.changes.peek(`${kind}\u0000${path}`) ?? 0;
    if (own > at) return false;
    for (let p = path; ; p = parentOf(p)) {
      if ((this.changes.peek(`subtree\u0000${p}`) ?? 0) > at) return false;
      if (p === "/") return true;
    }
  }

  private fresh(kind: Slot["kind"], path: string): Slot | undefined {
    const key = this.key(kind, path);
    const slot = this.lru.get(key);
    if (!slot) return undefined;
    if (slot.expiresAt <= this.options.now() || !this.counts(kind, path, slot.storedAt)) {
      this.lru.delete(key);
      return undefined;
    }
    return slot;
  }

  private set(kind: Slot["kind"], path: string, slot: Slot): void {
    this.lru.set(this.key(kind, path), slot);
  }

  /** "Absent" is trusted no longer than anything else (a TTL of 0 caches nothing). */
  private negativeTtl(): number {
    return Math.min(this.options.negativeTtlMs, this.ttlMs);
  }

  private expiry(ttlMs: number): number {
    return this.options.now() + ttlMs;
  }

  private key(kind: Slot["kind"], path: string): string {
    return `${this.options.account}\u0000${kind}\u0000${path}`;
  }
}
