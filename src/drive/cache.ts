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

/** `null` is a negative entry: the path is known not to exist. */
type Slot =
  | { kind: "entry"; node: Node | null; expiresAt: number }
  | { kind: "listing"; children: Map<string, Node>; expiresAt: number };

/** A generation number taken before a fetch; a result fetched across a mutation is not stored. */
export type Ticket = number;

/**
 * Entries and complete folder listings, keyed by account and gateway path, with a TTL of
 * their own (the clock is injectable), negative entries, single-flight loading and
 * write-through patching. Every mutation bumps a generation: loads that started before it
 * neither store their (possibly stale) result nor are joined by later callers.
 */
export class MetadataCache {
  private readonly lru: LRUCache<string, Slot>;
  private readonly inflight = new Map<string, Promise<unknown>>();
  private generation = 0;

  constructor(private readonly options: MetadataCacheOptions) {
    this.lru = new LRUCache<string, Slot>({
      maxSize: options.maxEntries,
      sizeCalculation: (slot) => (slot.kind === "listing" ? slot.children.size + 1 : 1),
    });
  }

  /** The node at `path`: a Node, `null` when known absent, `undefined` when unknown. */
  lookup(path: string): Node | null | undefined {
    const slot = this.fresh(this.key("entry", path));
    if (slot?.kind === "entry") return slot.node;
    if (path === "/") return undefined;
    const siblings = this.listing(parentOf(path));
    return siblings ? (siblings.get(nameOf(path)) ?? null) : undefined;
  }

  /** The children of a folder whose complete listing is cached. */
  listing(path: string): Map<string, Node> | undefined {
    const slot = this.fresh(this.key("listing", path));
    return slot?.kind === "listing" ? slot.children : undefined;
  }

  ticket(): Ticket {
    return this.generation;
  }

  /** Runs `load` once for concurrent callers asking for the same `key`. */
  singleFlight<T>(key: string, load: () => Promise<T>): Promise<T> {
    const running = this.inflight.get(key);
    if (running) return running as Promise<T>;
    const promise = load().finally(() => {
      if (this.inflight.get(key) === promise) this.inflight.delete(key);
    });
    this.inflight.set(key, promise);
    return promise;
  }

  storeNode(path: string, node: Node | null, ticket: Ticket): void {
    if (ticket !== this.generation) return;
    const ttl = node ? this.options.ttlMs : this.options.negativeTtlMs;
    this.lru.set(this.key("entry", path), { kind: "entry", node, expiresAt: this.expiry(ttl) });
  }

  storeListing(path: string, children: readonly Node[], ticket: Ticket): void {
    if (ticket !== this.generation) return;
    this.lru.set(this.key("listing", path), {
      kind: "listing",
      children: new Map(children.map((n) => [n.entry.name, n])),
      expiresAt: this.expiry(this.options.ttlMs),
    });
  }

  /** After a mutation that put `node` at `path`: whatever was known below it is dropped. */
  upsert(path: string, node: Node): void {
    this.forget(path);
    this.replace(path, node);
  }

  /** After a mutation of the item itself (its properties): what is below it stays valid. */
  replace(path: string, node: Node): void {
    this.mutated();
    this.lru.set(this.key("entry", path), {
      kind: "entry",
      node,
      expiresAt: this.expiry(this.options.ttlMs),
    });
    if (path !== "/") this.patchListing(parentOf(path), (c) => c.set(node.entry.name, node));
  }

  /** A folder just created through the gateway is known to be empty. */
  upsertEmptyFolder(path: string, node: Node): void {
    this.upsert(path, node);
    this.storeListing(path, [], this.generation);
  }

  /** After a mutation that took `path` (and everything below it) away. */
  remove(path: string): void {
    this.mutated();
    this.forget(path);
    this.lru.set(this.key("entry", path), {
      kind: "entry",
      node: null,
      expiresAt: this.expiry(this.options.negativeTtlMs),
    });
    this.patchListing(parentOf(path), (c) => c.delete(nameOf(path)));
  }

  /** After a mutation whose outcome is unknown: `path`, its subtree and its parent's listing go. */
  invalidate(path: string): void {
    this.mutated();
    this.forget(path);
    if (path !== "/") this.lru.delete(this.key("listing", parentOf(path)));
  }

  /** Changes a cached listing in place; setting it again lets the LRU recount its size. */
  private patchListing(path: string, change: (children: Map<string, Node>) => void): void {
    const key = this.key("listing", path);
    const slot = this.fresh(key);
    if (slot?.kind !== "listing") return;
    change(slot.children);
    this.lru.set(key, slot);
  }

  private mutated(): void {
    this.generation++;
    this.inflight.clear();
  }

  /** Drops the entry and listing of `path` and of every path below it. */
  private forget(path: string): void {
    const prefixes = [this.key("entry", path), this.key("listing", path)];
    const below = prefixes.map((p) => (path === "/" ? p : `${p}/`));
    for (const key of [...this.lru.keys()]) {
      if (prefixes.includes(key) || below.some((p) => key.startsWith(p))) this.lru.delete(key);
    }
  }

  private fresh(key: string): Slot | undefined {
    const slot = this.lru.get(key);
    if (slot && slot.expiresAt <= this.options.now()) {
      this.lru.delete(key);
      return undefined;
    }
    return slot;
  }

  private expiry(ttlMs: number): number {
    return this.options.now() + ttlMs;
  }

  private key(kind: Slot["kind"], path: string): string {
    return `${this.options.account}\u0000${kind}\u0000${path}`;
  }
}
