/**
 * The drive's metadata cache against the emulator: upstream calls are counted with
 * /__emulator/stats, and the cache clock is injected so TTLs expire without waiting.
 */
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloudreveApi } from "../../src/cloudreve/api.js";
import { Drive, type DriveOptions } from "../../src/drive/drive.js";
import type { EmulatorOptions } from "../../src/emulator/options.js";
import { NotFound } from "../../src/errors.js";
import { calls, resetStats, seed, totalCalls } from "../helpers/control.js";
import { EMAIL, PASSWORD, myUri, useEmulator } from "../helpers/emulator.js";

function setup(options: EmulatorOptions = {}) {
  const ctx = useEmulator(options);
  const env = {} as { api: CloudreveApi };
  beforeAll(async () => {
    env.api = new CloudreveApi({ baseUrl: ctx.emu.url, email: EMAIL, password: PASSWORD });
    await env.api.capacity(); // signs in, so that later counts hold only the calls under test
  });
  afterAll(() => env.api.close());
  return {
    ctx,
    drive: (o: DriveOptions = {}) => new Drive(env.api, o),
    reset: () => resetStats(ctx.emu.url),
    /** Calls of one route since the last reset, or of every route. */
    calls: (route?: string) => (route ? calls(ctx.emu.url, route) : totalCalls(ctx.emu.url)),
    seed: (body: Parameters<typeof seed>[1]) => seed(ctx.emu.url, body),
    /** A file made behind the gateway's back, straight through the API. */
    put: (path: string, text: string) =>
      ctx.api.call("PUT", "/file/content", { query: { uri: myUri(path) }, body: text }),
  };
}

const bytes = (text: string) => ({ source: Readable.from([Buffer.from(text)]), size: text.length });

describe.each([
  { maxPageSize: 2000, pagination: "cursor" as const },
  { maxPageSize: 1000, pagination: "cursor" as const },
  { maxPageSize: 1000, pagination: "offset" as const },
])("a 10,000-entry folder, max_page_size $maxPageSize, $pagination pages", (options) => {
  const t = setup(options);

  it("lists cold in ceil(10000 / max_page_size) calls and warm in none", async () => {
    await t.seed({ uri: myUri("big"), files: 10_000, size: 3 });
    const drive = t.drive();
    await t.reset();
    const cold = await drive.list("/big");
    expect(cold).toHaveLength(10_000);
    expect(new Set(cold.map((e) => e.name)).size).toBe(10_000);
    expect(await t.calls("GET /api/v4/file")).toBe(Math.ceil(10_000 / options.maxPageSize));
    expect(await t.calls()).toBe(Math.ceil(10_000 / options.maxPageSize));

    await t.reset();
    expect(await drive.list("/big")).toHaveLength(10_000);
    const one = await drive.stat("/big/file-04321.bin");
    expect(one).toMatchObject({ name: "file-04321.bin", size: 3, isDir: false });
    await expect(drive.stat("/big/._file-04321.bin")).rejects.toBeInstanceOf(NotFound);
    expect((await drive.stat("/big")).isDir).toBe(true);
    expect(await t.calls()).toBe(0);
  });
});

describe("cache", () => {
  const t = setup();

  it("32 concurrent stats of one uncached path cost one call, present or absent", async () => {
    await t.put("sf/a.txt", "hello");
    const drive = t.drive();
    await t.reset();
    const entries = await Promise.all(Array.from({ length: 32 }, () => drive.stat("/sf/a.txt")));
    expect(new Set(entries.map((e) => e.etag)).size).toBe(1);
    expect(entries[0]).toMatchObject({ path: "/sf/a.txt", name: "a.txt", size: 5 });
    expect(await t.calls("GET /api/v4/file/info")).toBe(1);
    expect(await t.calls()).toBe(1);

    await t.reset();
    const misses = await Promise.allSettled(
      Array.from({ length: 32 }, () => drive.stat("/sf/missing.txt")),
    );
    for (const m of misses) {
      expect(m.status).toBe("rejected");
      expect((m as PromiseRejectedResult).reason).toBeInstanceOf(NotFound);
    }
    expect(await t.calls()).toBe(1);
  });

  it("answers a stat in a folder whose listing is cached without a call (Finder probes)", async () => {
    await t.put("probe/doc.txt", "x");
    const drive = t.drive();
    await drive.list("/probe");
    await t.reset();
    for (const name of ["._doc.txt", ".DS_Store", ".localized", "._."]) {
      await expect(drive.stat(`/probe/${name}`)).rejects.toBeInstanceOf(NotFound);
    }
    expect((await drive.stat("/probe/doc.txt")).size).toBe(1);
    expect(await t.calls()).toBe(0);
  });

  it("keeps a negative entry for its short TTL and an entry for the cache TTL", async () => {
    let now = 1_000_000;
    const drive = t.drive({ now: () => now, cacheTtlMs: 30_000, negativeTtlMs: 2_000 });
    await t.reset();
    await expect(drive.stat("/neg/late.txt")).rejects.toBeInstanceOf(NotFound);
    expect(await t.calls()).toBe(1);

    await t.put("neg/late.txt", "late");
    await t.reset();
    now += 1_999;
    await expect(drive.stat("/neg/late.txt")).rejects.toBeInstanceOf(NotFound);
    expect(await t.calls()).toBe(0);
    now += 1;
    expect((await drive.stat("/neg/late.txt")).size).toBe(4);
    expect(await t.calls()).toBe(1);

    await t.put("neg/late.txt", "later!");
    await t.reset();
    now += 29_999;
    expect((await drive.stat("/neg/late.txt")).size).toBe(4);
    expect(await t.calls()).toBe(0);
    now += 1;
    expect((await drive.stat("/neg/late.txt")).size).toBe(6);
    expect(await t.calls()).toBe(1);
  });

  it("stats the root from its listing's first page and keeps that page as the listing", async () => {
    const drive = t.drive();
    await t.reset();
    const root = await drive.stat("/");
    expect(root).toMatchObject({ path: "/", name: "", isDir: true, size: 0 });
    expect(await t.calls("GET /api/v4/file")).toBe(1);
    expect(await t.calls("GET /api/v4/file/info")).toBe(0);
    const names = (await drive.list("/")).map((e) => e.name);
    expect(names).toContain("sf");
    await expect(drive.stat("/.DS_Store")).rejects.toBeInstanceOf(NotFound);
    expect(await t.calls()).toBe(1);
  });

  it("bounds the cache by entry count", async () => {
    await t.seed({ uri: myUri("bounded"), files: 50 });
    const drive = t.drive({ maxEntries: 10 });
    await drive.list("/bounded");
    await t.reset();
    // A 50-child listing does not fit in 10 entries, so it is fetched again.
    await drive.list("/bounded");
    expect(await t.calls("GET /api/v4/file")).toBe(1);
  });
});

/** Holds every `info` reply until `release`, so a mutation can overtake a load. */
class HeldApi extends CloudreveApi {
  private gate: Promise<void> | undefined;
  release: () => void = () => undefined;

  hold(): void {
    this.gate = new Promise((resolve) => (this.release = resolve));
  }

  /** Only the first call after `hold` waits: the load that the mutation overtakes. */
  override async info(...args: Parameters<CloudreveApi["info"]>) {
    const gate = this.gate;
    this.gate = undefined;
    const file = await super.info(...args);
    await gate;
    return file;
  }
}

describe("write-through", () => {
  const t = setup();

  it("does not store a load that a mutation overtook", async () => {
    await t.put("race/a.txt", "a");
    const held = new HeldApi({ baseUrl: t.ctx.emu.url, email: EMAIL, password: PASSWORD });
    const drive = new Drive(held);
    held.hold();
    const slow = drive.stat("/race/a.txt");
    await drive.remove("/race/a.txt");
    held.release();
    // The caller that asked before the remove gets the item as it was then...
    expect((await slow).size).toBe(1);
    // ...but the cache keeps what the remove made true.
    await t.reset();
    await expect(drive.stat("/race/a.txt")).rejects.toBeInstanceOf(NotFound);
    expect(await t.calls()).toBe(0);
    await held.close();
  });

  it("a written file is visible with its final size and etag before write returns", async () => {
    const drive = t.drive();
    await drive.mkdir("/wt");
    expect(await drive.list("/wt")).toEqual([]);

    const first = await drive.write("/wt/a.txt", bytes("hello"));
    expect(first.created).toBe(true);
    await t.reset();
    const stat = await drive.stat("/wt/a.txt");
    const listed = await drive.list("/wt");
    expect(await t.calls()).toBe(0);
    expect(stat).toEqual(first.entry);
    expect(listed).toEqual([first.entry]);
    const info = await t.ctx.api.call<{ size: number; primary_entity: string }>(
      "GET",
      "/file/info",
      { query: { uri: myUri("wt/a.txt") } },
    );
    expect(stat.size).toBe(5);
    expect(stat.etag).toBe(info.json.data!.primary_entity);

    const mtimeMs = Date.UTC(2024, 0, 2, 3, 4, 5);
    const second = await drive.write("/wt/a.txt", { ...bytes("hello, world"), mtimeMs });
    expect(second.created).toBe(false);
    await t.reset();
    const after = await drive.stat("/wt/a.txt");
    expect(await t.calls()).toBe(0);
    expect(after).toMatchObject({ size: 12, mtimeMs });
    expect(after.etag).not.toBe(stat.etag);
    expect((await drive.list("/wt"))[0]).toEqual(after);
  });

  it("leaves no stale entry after a rename, a move of a subtree and a delete", async () => {
    await t.put("tree/src/dir/sub/f.txt", "deep");
    await t.put("tree/dst/other.txt", "o");
    const drive = t.drive();
    // Everything below is cached first, so that a stale entry would be served.
    await drive.list("/tree/src");
    await drive.list("/tree/src/dir");
    await drive.list("/tree/src/dir/sub");
    await drive.stat("/tree/src/dir/sub/f.txt");
    await drive.list("/tree/dst");

    await drive.move("/tree/src/dir", "/tree/dst/moved", { overwrite: false });
    await expect(drive.stat("/tree/src/dir")).rejects.toBeInstanceOf(NotFound);
    await expect(drive.stat("/tree/src/dir/sub/f.txt")).rejects.toBeInstanceOf(NotFound);
    await expect(drive.list("/tree/src/dir/sub")).rejects.toBeInstanceOf(NotFound);
    expect(await drive.list("/tree/src")).toEqual([]);
    expect((await drive.list("/tree/dst")).map((e) => e.name).sort()).toEqual([
      "moved",
      "other.txt",
    ]);
    expect((await drive.stat("/tree/dst/moved/sub/f.txt")).size).toBe(4);

    await drive.move("/tree/dst/other.txt", "/tree/dst/renamed.txt", { overwrite: false });
    await expect(drive.stat("/tree/dst/other.txt")).rejects.toBeInstanceOf(NotFound);
    expect((await drive.list("/tree/dst")).map((e) => e.name).sort()).toEqual([
      "moved",
      "renamed.txt",
    ]);

    await drive.list("/tree/dst/moved/sub");
    await drive.remove("/tree/dst/moved");
    await expect(drive.stat("/tree/dst/moved")).rejects.toBeInstanceOf(NotFound);
    await expect(drive.stat("/tree/dst/moved/sub/f.txt")).rejects.toBeInstanceOf(NotFound);
    await expect(drive.list("/tree/dst/moved/sub")).rejects.toBeInstanceOf(NotFound);
    expect((await drive.list("/tree/dst")).map((e) => e.name)).toEqual(["renamed.txt"]);

    // The cache agrees with a fresh look at the upstream.
    const fresh = t.drive();
    expect(await fresh.list("/tree/dst")).toEqual(await drive.list("/tree/dst"));
    expect(await fresh.list("/tree/src")).toEqual([]);
  });

  it("drops a negative entry below a path that a mutation fills", async () => {
    await t.put("fill/src/inner.txt", "in");
    const drive = t.drive({ negativeTtlMs: 60_000 });
    await expect(drive.stat("/fill/dst/inner.txt")).rejects.toBeInstanceOf(NotFound);
    await drive.copy("/fill/src", "/fill/dst", { overwrite: false, depth: "infinity" });
    expect((await drive.stat("/fill/dst/inner.txt")).size).toBe(2);
  });
});
