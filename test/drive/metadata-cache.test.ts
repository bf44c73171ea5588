/**
 * The metadata cache on its own (a pure piece): a change forgets what it touched and nothing
 * else, loads of other paths under way are kept and joined, and the bounded change records
 * never let a stale slot count.
 */
import { describe, expect, it } from "vitest";
import { MetadataCache, type Node } from "../../src/drive/cache.js";
import { nameOf } from "../../src/drive/paths.js";

function node(path: string, isDir = false): Node {
  return {
    entry: {
      path,
      name: nameOf(path),
      isDir,
      size: 1,
      mtimeMs: 0,
      ctimeMs: 0,
      etag: `e-${path}`,
      uploading: false,
    },
    entity: `e-${path}`,
    dav: {},
  };
}

function cache(maxEntries = 10_000, ttlMs = 60_000) {
  return new MetadataCache({
    ttlMs,
    negativeTtlMs: 5_000,
    maxEntries,
    account: "a",
    now: () => 0,
  });
}

describe("MetadataCache", () => {
  it("a change elsewhere keeps a load under way: its result is stored", () => {
    const c = cache();
    const ticket = c.ticket();
    c.upsert("/a/new", node("/a/new"));
    c.invalidate("/b/gone");
    c.storeNode("/x/y", node("/x/y"), ticket);
    c.storeListing("/x", [node("/x/y")], ticket);
    expect(c.lookup("/x/y")?.entry.path).toBe("/x/y");
    expect(c.listing("/x")?.size).toBe(1);
  });

  it("a change of a path, an ancestor or a child drops the loads of it under way", () => {
    const c = cache();
    const ticket = c.ticket();
    c.upsert("/a", node("/a", true)); // the subtree of /a changed
    c.replace("/b/c", node("/b/c")); // a child of /b changed
    c.storeNode("/a/b/c", node("/a/b/c"), ticket);
    c.storeListing("/a/b", [node("/a/b/c")], ticket);
    c.storeListing("/b", [node("/b/c")], ticket);
    expect(c.lookup("/a/b/c")).toBeUndefined();
    expect(c.listing("/a/b")).toBeUndefined();
    expect(c.listing("/b")).toBeUndefined();
  });

  it("a change of an item's own properties keeps what is below it", () => {
    const c = cache();
    c.storeListing("/f", [node("/f/x")], c.ticket());
    c.storeNode("/f/x", node("/f/x"), c.ticket());
    c.replace("/f", node("/f", true));
    expect(c.listing("/f")?.has("x")).toBe(true);
    expect(c.lookup("/f/x")).toBeDefined();
    c.invalidate("/f");
    expect(c.listing("/f")).toBeUndefined();
    expect(c.lookup("/f/x")).toBeUndefined();
  });

  it("a removal answers 'absent' below it and patches the parent's listing", () => {
    const c = cache();
    c.storeListing("/p", [node("/p/d", true), node("/p/e")], c.ticket());
    c.storeListing("/p/d", [node("/p/d/k")], c.ticket());
    c.remove("/p/d");
    expect(c.lookup("/p/d")).toBeNull();
    expect(c.listing("/p/d")).toBeUndefined();
    expect([...c.listing("/p")!.keys()]).toEqual(["e"]);
  });

  it("single-flight joins a load under way unless its path changed since it started", async () => {
    const c = cache();
    let loads = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const load = async () => {
      loads++;
      await gate;
      return loads;
    };
    const first = c.singleFlight("entry:/a/b", load, { kind: "entry", path: "/a/b" });
    c.upsert("/z", node("/z"));
    void c.singleFlight("entry:/a/b", load, { kind: "entry", path: "/a/b" });
    expect(loads).toBe(1); // an unrelated change: joined
    c.invalidate("/a");
    const third = c.singleFlight("entry:/a/b", load, { kind: "entry", path: "/a/b" });
    expect(loads).toBe(2); // its ancestor changed: a load of its own
    release();
    expect(await first).toBe(2);
    expect(await third).toBe(2);
  });

  it("clear forgets everything, loads under way included", () => {
    const c = cache();
    const ticket = c.ticket();
    c.storeNode("/k", node("/k"), ticket);
    c.clear();
    expect(c.lookup("/k")).toBeUndefined();
    c.storeNode("/k", node("/k"), ticket);
    expect(c.lookup("/k")).toBeUndefined();
  });

  it("when old change records are forgotten, nothing stored before them counts", () => {
    const c = cache(10); // at least 1,000 change records are kept
    c.storeNode("/old", node("/old"), c.ticket());
    const ticket = c.ticket();
    for (let i = 0; i < 1_500; i++) c.invalidate(`/churn/${i}`);
    // The record of /old's own change may be gone: a slot from before the floor never counts.
    c.invalidate("/old");
    for (let i = 1_500; i < 3_000; i++) c.invalidate(`/churn/${i}`);
    c.storeNode("/old", node("/old"), ticket);
    expect(c.lookup("/old")).toBeUndefined();
    // What is stored now counts.
    c.storeNode("/new", node("/new"), c.ticket());
    expect(c.lookup("/new")).toBeDefined();
  });

  it("with a TTL of 0 not even 'absent' is kept", () => {
    const c = cache(10_000, 0);
    c.storeNode("/gone", null, c.ticket());
    c.remove("/gone2");
    expect(c.lookup("/gone")).toBeUndefined();
    expect(c.lookup("/gone2")).toBeUndefined();
  });
});
