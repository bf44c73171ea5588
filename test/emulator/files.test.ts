import { describe, expect, it } from "vitest";
import { advance, code, info, ms, myUri, ok, put, used, useEmulator } from "../helpers/emulator.js";
import type { Api, ApiReply, CrFile, Envelope, LockConflict } from "../helpers/emulator.js";

interface ListData {
  files: CrFile[];
  parent: CrFile;
}

/** The single inner envelope of a 40081 reply. */
function soleInner(r: ApiReply): Envelope {
  expect(r.json?.code, r.text).toBe(40081);
  const entries = Object.values(r.json.aggregated_error ?? {});
  expect(entries, r.text).toHaveLength(1);
  return entries[0]!;
}

async function create(api: Api, path: string, type: "file" | "folder"): Promise<CrFile> {
  return ok(await api.call<CrFile>("POST", "/file/create", { json: { uri: myUri(path), type } }));
}

async function list(api: Api, uri: string): Promise<CrFile[]> {
  return ok(await api.call<ListData>("GET", "/file", { query: { uri, page_size: 2000 } })).files;
}

async function names(api: Api, path: string): Promise<string[]> {
  return (await list(api, myUri(path))).map((f) => f.name).sort();
}

function move(api: Api, uris: string[], dst: string, copy = false) {
  return api.call("POST", "/file/move", { json: { uris, dst, copy } });
}

function del(api: Api, uris: string[], extra: Record<string, unknown> = {}) {
  return api.call("DELETE", "/file", { json: { uris, ...extra } });
}

function patch(api: Api, uris: string[], patches: Record<string, unknown>[]) {
  return api.call("PATCH", "/file/metadata", { json: { uris, patches } });
}

// ---------------------------------------------------------------------------

describe("§5.1 GET /file/info", () => {
  const ctx = useEmulator();

  it("§5.1 info of the root folder is rejected with 403", async () => {
    const r = await ctx.api.call("GET", "/file/info", { query: { uri: "cloudreve://my" } });
    expect(r.status).toBe(200);
    expect(code(r), r.text).toBe(403);
  });

  it("§5.1 info of a missing path → 40016", async () => {
    const r = await info(ctx.api, "no/such/thing.txt");
    expect(code(r), r.text).toBe(40016);
  });

  it("§5.1 neither uri nor id → 40001", async () => {
    const r = await ctx.api.call("GET", "/file/info");
    expect(code(r), r.text).toBe(40001);
  });

  it("§5.1 info of a file returns the File; by id resolves the same file", async () => {
    const created = await put(ctx.api, "info/a.txt", "hello");
    const f = ok(await info(ctx.api, "info/a.txt"));
    expect(f).toMatchObject({ type: 0, name: "a.txt", size: 5, path: myUri("info/a.txt") });
    expect(f.id).toBe(created.id);
    expect(f.primary_entity).toBe(created.primary_entity);
    const byId = ok(await ctx.api.call<CrFile>("GET", "/file/info", { query: { id: f.id } }));
    expect(byId.id).toBe(f.id);
    expect(byId.name).toBe("a.txt");
  });

  it("§5.1 extended=true adds extended_info with storage_policy, storage_used and entities", async () => {
    const created = await put(ctx.api, "info/ext.bin", new Uint8Array(123).fill(7));
    const f = ok(await info(ctx.api, "info/ext.bin", { extended: true }));
    expect(f.extended_info, JSON.stringify(f)).toBeDefined();
    const ext = f.extended_info!;
    expect(ext.storage_policy?.type).toBe("local");
    expect(typeof ext.storage_policy?.id).toBe("string");
    expect(ext.storage_used).toBe(123);
    expect(ext.entities).toBeDefined();
    const primary = ext.entities!.find((e) => e.id === created.primary_entity);
    expect(primary, JSON.stringify(ext.entities)).toBeDefined();
    expect(primary!.size).toBe(123);
    expect(primary!.type).toBe(0);
    expect(Number.isFinite(ms(primary!.created_at))).toBe(true);
  });

  it("§5.1 without extended there is no extended_info", async () => {
    await put(ctx.api, "info/plain.txt", "x");
    const f = ok(await info(ctx.api, "info/plain.txt"));
    expect(f.extended_info).toBeUndefined();
    expect(f.folder_summary).toBeUndefined();
  });

  it("§5.1 folder_summary on a folder → {size, files, folders, completed, calculated_at}", async () => {
    await put(ctx.api, "summary/one.bin", new Uint8Array(3));
    await put(ctx.api, "summary/two.bin", new Uint8Array(5));
    await put(ctx.api, "summary/sub/three.bin", new Uint8Array(7));
    const f = ok(await info(ctx.api, "summary", { folder_summary: true }));
    expect(f.type).toBe(1);
    expect(f.folder_summary, JSON.stringify(f)).toBeDefined();
    const s = f.folder_summary!;
    expect(s.size).toBe(15);
    expect(s.files).toBe(3);
    // The folder itself is not counted, only its descendants.
    expect(s.folders).toBe(1);
    expect(s.completed).toBe(true);
    expect(Number.isFinite(ms(s.calculated_at))).toBe(true);
  });
});

// ---------------------------------------------------------------------------

describe("§5.2 POST /file/create", () => {
  const ctx = useEmulator();

  it("§5.2 creates missing intermediate folders (mkdir -p)", async () => {
    const f = await create(ctx.api, "mk/a/b/c", "folder");
    expect(f).toMatchObject({ type: 1, name: "c", size: 0, path: myUri("mk/a/b/c") });
    expect(await names(ctx.api, "mk")).toEqual(["a"]);
    expect(await names(ctx.api, "mk/a")).toEqual(["b"]);
    expect(await names(ctx.api, "mk/a/b")).toEqual(["c"]);
    expect(ok(await info(ctx.api, "mk/a/b")).type).toBe(1);
  });

  it("§5.2 existing item of the same type is returned with code 0", async () => {
    const first = await create(ctx.api, "same/dir", "folder");
    const again = await ctx.api.call<CrFile>("POST", "/file/create", {
      json: { uri: myUri("same/dir"), type: "folder" },
    });
    expect(code(again), again.text).toBe(0);
    expect(again.json.data!.id).toBe(first.id);

    const file = await create(ctx.api, "same/f.txt", "file");
    const fileAgain = ok(
      await ctx.api.call<CrFile>("POST", "/file/create", {
        json: { uri: myUri("same/f.txt"), type: "file" },
      }),
    );
    expect(fileAgain.id).toBe(file.id);
    expect(await names(ctx.api, "same")).toEqual(["dir", "f.txt"]);
  });

  it("§5.2 err_on_conflict on an existing item → 40004", async () => {
    await create(ctx.api, "conf/dir", "folder");
    const r = await ctx.api.call("POST", "/file/create", {
      json: { uri: myUri("conf/dir"), type: "folder", err_on_conflict: true },
    });
    expect(code(r), r.text).toBe(40004);
  });

  it("§5.2 an existing item of a different type → 40004", async () => {
    await create(ctx.api, "diff/x", "folder");
    const r1 = await ctx.api.call("POST", "/file/create", {
      json: { uri: myUri("diff/x"), type: "file" },
    });
    expect(code(r1), r1.text).toBe(40004);
    await create(ctx.api, "diff/y", "file");
    const r2 = await ctx.api.call("POST", "/file/create", {
      json: { uri: myUri("diff/y"), type: "folder" },
    });
    expect(code(r2), r2.text).toBe(40004);
    expect(ok(await info(ctx.api, "diff/x")).type).toBe(1);
    expect(ok(await info(ctx.api, "diff/y")).type).toBe(0);
  });

  it("§5.2 an ancestor that is a file → 403", async () => {
    await create(ctx.api, "anc/file.txt", "file");
    const r = await ctx.api.call("POST", "/file/create", {
      json: { uri: myUri("anc/file.txt/sub"), type: "folder" },
    });
    expect(code(r), r.text).toBe(403);
  });

  it("§5.2 an empty file has size 0 and the primary_entity of entity 0 (same as a folder's)", async () => {
    const folder = await create(ctx.api, "empty/dir", "folder");
    const f = await create(ctx.api, "empty/e.txt", "file");
    expect(f).toMatchObject({ type: 0, name: "e.txt", size: 0, path: myUri("empty/e.txt") });
    expect(typeof f.primary_entity).toBe("string");
    expect(f.primary_entity.length).toBeGreaterThan(0);
    expect(f.primary_entity).toBe(folder.primary_entity);
    const again = ok(await info(ctx.api, "empty/e.txt"));
    expect(again.size).toBe(0);
    expect(again.primary_entity).toBe(folder.primary_entity);
  });

  it("§5.2 §3.4 an invalid name → 40052", async () => {
    for (const bad of ["bad:name", "a*b", "q?.txt", 'quo"te', "<x>", "p|ipe", "back\\slash"]) {
      const r = await ctx.api.call("POST", "/file/create", {
        json: { uri: myUri(`names/${bad}`), type: "file" },
      });
      expect(code(r), `${bad}: ${r.text}`).toBe(40052);
    }
    const long = await ctx.api.call("POST", "/file/create", {
      json: { uri: myUri(`names/${"n".repeat(256)}`), type: "folder" },
    });
    expect(code(long), long.text).toBe(40052);
  });

  it("§5.2 an invalid type → 40001", async () => {
    const r = await ctx.api.call("POST", "/file/create", {
      json: { uri: myUri("types/x"), type: "symlink" },
    });
    expect(code(r), r.text).toBe(40001);
    const missing = await ctx.api.call("POST", "/file/create", { json: { uri: myUri("types/y") } });
    expect(code(missing), missing.text).toBe(40001);
    expect((await info(ctx.api, "types/x")).json.code).toBe(40016);
  });
});

// ---------------------------------------------------------------------------

describe("§5.3 POST /file/rename", () => {
  const ctx = useEmulator();

  it("§5.3 returns the renamed File with the new name and path", async () => {
    const before = await put(ctx.api, "ren/old.txt", "abc");
    const after = ok(
      await ctx.api.call<CrFile>("POST", "/file/rename", {
        json: { uri: myUri("ren/old.txt"), new_name: "new name.txt" },
      }),
    );
    expect(after).toMatchObject({ type: 0, name: "new name.txt", size: 3 });
    expect(after.id).toBe(before.id);
    expect(after.primary_entity).toBe(before.primary_entity);
    expect(after.path).toBe("cloudreve://my/ren/new%20name.txt");
    expect(await names(ctx.api, "ren")).toEqual(["new name.txt"]);
  });

  it("§5.3 a sibling holding the name → 40004", async () => {
    await put(ctx.api, "clash/a.txt", "a");
    await put(ctx.api, "clash/b.txt", "b");
    const r = await ctx.api.call("POST", "/file/rename", {
      json: { uri: myUri("clash/a.txt"), new_name: "b.txt" },
    });
    expect(code(r), r.text).toBe(40004);
    expect(await names(ctx.api, "clash")).toEqual(["a.txt", "b.txt"]);
  });

  it("§5.3 updated_at is bumped", async () => {
    const before = await put(ctx.api, "bump/x.txt", "x");
    await advance(ctx.api, 120);
    const after = ok(
      await ctx.api.call<CrFile>("POST", "/file/rename", {
        json: { uri: myUri("bump/x.txt"), new_name: "y.txt" },
      }),
    );
    expect(ms(after.updated_at) - ms(before.updated_at)).toBeGreaterThanOrEqual(119_000);
    const again = ok(await info(ctx.api, "bump/y.txt"));
    expect(ms(again.updated_at)).toBe(ms(after.updated_at));
  });

  it("§5.3 changing a file's extension clears thumb:disabled; keeping it does not", async () => {
    await put(ctx.api, "thumb/a.jpg", "img");
    await put(ctx.api, "thumb/b.jpg", "img");
    for (const p of ["thumb/a.jpg", "thumb/b.jpg"]) {
      const r = await patch(ctx.api, [myUri(p)], [{ key: "thumb:disabled", value: "1" }]);
      expect(code(r), r.text).toBe(0);
    }
    const a = ok(
      await ctx.api.call<CrFile>("POST", "/file/rename", {
        json: { uri: myUri("thumb/a.jpg"), new_name: "a.png" },
      }),
    );
    expect(a.name).toBe("a.png");
    expect(ok(await info(ctx.api, "thumb/a.png")).metadata?.["thumb:disabled"]).toBeUndefined();
    ok(
      await ctx.api.call("POST", "/file/rename", {
        json: { uri: myUri("thumb/b.jpg"), new_name: "c.JPG" },
      }),
    );
    expect(ok(await info(ctx.api, "thumb/c.JPG")).metadata?.["thumb:disabled"]).toBe("1");
  });

  it("§5.3 renaming the root → 403", async () => {
    const r = await ctx.api.call("POST", "/file/rename", {
      json: { uri: "cloudreve://my", new_name: "root2" },
    });
    expect(code(r), r.text).toBe(403);
  });

  it("§5.3 new_name with / or forbidden characters → 40052", async () => {
    await put(ctx.api, "badname/f.txt", "f");
    for (const bad of ["a/b", "a:b", "a*b", "a?b", "a|b", "..", "."]) {
      const r = await ctx.api.call("POST", "/file/rename", {
        json: { uri: myUri("badname/f.txt"), new_name: bad },
      });
      expect(code(r), `${bad}: ${r.text}`).toBe(40052);
    }
    expect(await names(ctx.api, "badname")).toEqual(["f.txt"]);
  });

  it("§5.3 new_name longer than 255 characters → 40001", async () => {
    await put(ctx.api, "toolong/f.txt", "f");
    const r = await ctx.api.call("POST", "/file/rename", {
      json: { uri: myUri("toolong/f.txt"), new_name: "n".repeat(256) },
    });
    expect(code(r), r.text).toBe(40001);
    expect(await names(ctx.api, "toolong")).toEqual(["f.txt"]);
  });
});

// ---------------------------------------------------------------------------

describe("§5.4 POST /file/move (move and copy)", () => {
  const ctx = useEmulator();

  it("§5.4 dst is the parent folder; names are kept; success has no data", async () => {
    await put(ctx.api, "mv1/src/a.txt", "aaa");
    await create(ctx.api, "mv1/src/dir", "folder");
    await put(ctx.api, "mv1/src/dir/inner.txt", "in");
    await create(ctx.api, "mv1/dst", "folder");
    const r = await move(ctx.api, [myUri("mv1/src/a.txt"), myUri("mv1/src/dir")], myUri("mv1/dst"));
    expect(code(r), r.text).toBe(0);
    expect(r.json.data).toBeUndefined();
    expect(await names(ctx.api, "mv1/src")).toEqual([]);
    expect(await names(ctx.api, "mv1/dst")).toEqual(["a.txt", "dir"]);
    expect(await names(ctx.api, "mv1/dst/dir")).toEqual(["inner.txt"]);
    expect(ok(await info(ctx.api, "mv1/dst/a.txt")).size).toBe(3);
  });

  it("§5.4 move cannot rename: dst names the destination folder, not a new name", async () => {
    await put(ctx.api, "mv2/a.txt", "a");
    // dst is a non-existent path meant as a new name → missing folder, nothing moves.
    const r = await move(ctx.api, [myUri("mv2/a.txt")], myUri("mv2/b.txt"));
    expect(code(r), r.text).toBe(40016);
    expect(await names(ctx.api, "mv2")).toEqual(["a.txt"]);
  });

  it("§5.4 a name collision → 40004 and the whole batch is rolled back", async () => {
    await put(ctx.api, "mv3/src/a.txt", "src-a");
    await put(ctx.api, "mv3/src/b.txt", "src-b");
    await put(ctx.api, "mv3/dst/b.txt", "dst-b");
    const r = await move(
      ctx.api,
      [myUri("mv3/src/a.txt"), myUri("mv3/src/b.txt")],
      myUri("mv3/dst"),
    );
    expect(code(r), r.text).toBe(40004);
    expect(await names(ctx.api, "mv3/src")).toEqual(["a.txt", "b.txt"]);
    expect(await names(ctx.api, "mv3/dst")).toEqual(["b.txt"]);
    expect(ok(await info(ctx.api, "mv3/dst/b.txt")).size).toBe(5);
    expect((await info(ctx.api, "mv3/dst/a.txt")).json.code).toBe(40016);
  });

  it("§5.4 a missing dst → 40016, not aggregated", async () => {
    await put(ctx.api, "mv4/a.txt", "a");
    const r = await move(ctx.api, [myUri("mv4/a.txt")], myUri("mv4/nowhere"));
    expect(code(r), r.text).toBe(40016);
    expect(r.json.aggregated_error).toBeUndefined();
    expect(await names(ctx.api, "mv4")).toEqual(["a.txt"]);
  });

  it("§5.4 dst is a file → 403", async () => {
    await put(ctx.api, "mv5/a.txt", "a");
    await put(ctx.api, "mv5/target.txt", "t");
    const r = await move(ctx.api, [myUri("mv5/a.txt")], myUri("mv5/target.txt"));
    expect(code(r), r.text).toBe(403);
    expect(r.json.aggregated_error).toBeUndefined();
    expect(await names(ctx.api, "mv5")).toEqual(["a.txt", "target.txt"]);
  });

  it("§5.4 a missing source → 40081 with inner 40016 keyed by the uri", async () => {
    await create(ctx.api, "mv6/dst", "folder");
    const src = myUri("mv6/ghost.txt");
    const r = await move(ctx.api, [src], myUri("mv6/dst"));
    expect(code(r), r.text).toBe(40081);
    expect(r.json.aggregated_error?.[src]?.code, r.text).toBe(40016);
  });

  it("§5.4 a folder into itself or a descendant → 40081 with inner 403", async () => {
    await create(ctx.api, "mv7/dir/sub", "folder");
    const self = await move(ctx.api, [myUri("mv7/dir")], myUri("mv7/dir"));
    expect(soleInner(self).code, self.text).toBe(403);
    const desc = await move(ctx.api, [myUri("mv7/dir")], myUri("mv7/dir/sub"));
    expect(soleInner(desc).code, desc.text).toBe(403);
    const copy = await move(ctx.api, [myUri("mv7/dir")], myUri("mv7/dir/sub"), true);
    expect(soleInner(copy).code, copy.text).toBe(403);
    expect(await names(ctx.api, "mv7")).toEqual(["dir"]);
    expect(await names(ctx.api, "mv7/dir")).toEqual(["sub"]);
    expect(await names(ctx.api, "mv7/dir/sub")).toEqual([]);
  });

  it("§5.4 copy keeps the source, shares primary_entity and gets a fresh created_at", async () => {
    const src = await put(ctx.api, "cp1/src/a.txt", "copy me");
    await create(ctx.api, "cp1/dst", "folder");
    await advance(ctx.api, 300);
    const r = await move(ctx.api, [myUri("cp1/src/a.txt")], myUri("cp1/dst"), true);
    expect(code(r), r.text).toBe(0);
    expect(r.json.data).toBeUndefined();
    expect(await names(ctx.api, "cp1/src")).toEqual(["a.txt"]);
    const copy = ok(await info(ctx.api, "cp1/dst/a.txt"));
    expect(copy.id).not.toBe(src.id);
    expect(copy.size).toBe(7);
    expect(copy.primary_entity).toBe(src.primary_entity);
    expect(ms(copy.created_at) - ms(src.created_at)).toBeGreaterThanOrEqual(299_000);
  });

  it("§5.4 copy of a folder copies its tree", async () => {
    await put(ctx.api, "cp2/src/dir/x.txt", "x");
    await put(ctx.api, "cp2/src/dir/deeper/y.txt", "yy");
    await create(ctx.api, "cp2/dst", "folder");
    const r = await move(ctx.api, [myUri("cp2/src/dir")], myUri("cp2/dst"), true);
    expect(code(r), r.text).toBe(0);
    expect(await names(ctx.api, "cp2/dst/dir")).toEqual(["deeper", "x.txt"]);
    expect(ok(await info(ctx.api, "cp2/dst/dir/deeper/y.txt")).size).toBe(2);
    expect(await names(ctx.api, "cp2/src/dir")).toEqual(["deeper", "x.txt"]);
  });

  it("§5.4 §7.1 copy charges the copied size against the quota", async () => {
    await put(ctx.api, "cp3/src/big.bin", new Uint8Array(4096));
    await create(ctx.api, "cp3/dst", "folder");
    const before = await used(ctx.api);
    const r = await move(ctx.api, [myUri("cp3/src/big.bin")], myUri("cp3/dst"), true);
    expect(code(r), r.text).toBe(0);
    expect(await used(ctx.api)).toBe(before + 4096);
  });

  it("§5.4 copy onto an existing name → 40004", async () => {
    await put(ctx.api, "cp4/a.txt", "a");
    const r = await move(ctx.api, [myUri("cp4/a.txt")], myUri("cp4"), true);
    expect(code(r), r.text).toBe(40004);
    expect(await names(ctx.api, "cp4")).toEqual(["a.txt"]);
  });

  it("§5.4 a copy keeps the source's metadata", async () => {
    await put(ctx.api, "cp5/src/m.txt", "m");
    const key = "dav:urn:x|prop";
    expect(code(await patch(ctx.api, [myUri("cp5/src/m.txt")], [{ key, value: "kept" }]))).toBe(0);
    await create(ctx.api, "cp5/dst", "folder");
    expect(code(await move(ctx.api, [myUri("cp5/src/m.txt")], myUri("cp5/dst"), true))).toBe(0);
    expect(ok(await info(ctx.api, "cp5/dst/m.txt")).metadata?.[key]).toBe("kept");
  });

  it("§5.4 copy out of the trash is not allowed → 40081 with inner 403", async () => {
    await put(ctx.api, "cp6/t.txt", "t");
    expect(code(await del(ctx.api, [myUri("cp6/t.txt")]))).toBe(0);
    const item = (await list(ctx.api, "cloudreve://trash")).find((f) => f.name === "t.txt");
    expect(item).toBeDefined();
    const r = await move(ctx.api, [item!.path!], myUri("cp6"), true);
    expect(soleInner(r).code, r.text).toBe(403);
    expect(await names(ctx.api, "cp6")).toEqual([]);
  });

  it("§5.4 moving trash → my restores the original name and clears the trash metadata", async () => {
    const f = await put(ctx.api, "mv9/orig.txt", "orig");
    expect(code(await del(ctx.api, [myUri("mv9/orig.txt")]))).toBe(0);
    const item = (await list(ctx.api, "cloudreve://trash")).find((x) => x.id === f.id);
    expect(item).toBeDefined();
    await create(ctx.api, "mv9/elsewhere", "folder");
    const r = await move(ctx.api, [item!.path!], myUri("mv9/elsewhere"));
    expect(code(r), r.text).toBe(0);
    const back = ok(await info(ctx.api, "mv9/elsewhere/orig.txt"));
    expect(back.id).toBe(f.id);
    expect(back.metadata?.["sys:restore_uri"]).toBeUndefined();
    expect(back.metadata?.["sys:expected_collect_time"]).toBeUndefined();
    expect((await list(ctx.api, "cloudreve://trash")).some((x) => x.id === f.id)).toBe(false);
  });

  it("§5.4 a moved item has updated_at bumped", async () => {
    const before = await put(ctx.api, "mv8/a.txt", "a");
    await create(ctx.api, "mv8/dst", "folder");
    await advance(ctx.api, 200);
    const r = await move(ctx.api, [myUri("mv8/a.txt")], myUri("mv8/dst"));
    expect(code(r), r.text).toBe(0);
    const after = ok(await info(ctx.api, "mv8/dst/a.txt"));
    expect(after.id).toBe(before.id);
    expect(after.primary_entity).toBe(before.primary_entity);
    expect(ms(after.updated_at) - ms(before.updated_at)).toBeGreaterThanOrEqual(199_000);
  });
});

describe("§5.4 copy over quota", () => {
  const ctx = useEmulator({ capacity: 1000 });

  it("§5.4 §1.3 copy exceeding the quota → 40051 (not aggregated), nothing copied", async () => {
    await put(ctx.api, "q/a.bin", new Uint8Array(600));
    await create(ctx.api, "q/dst", "folder");
    expect(await used(ctx.api)).toBe(600);
    const r = await move(ctx.api, [myUri("q/a.bin")], myUri("q/dst"), true);
    expect(code(r), r.text).toBe(40051);
    expect(await names(ctx.api, "q/dst")).toEqual([]);
    expect(await used(ctx.api)).toBe(600);
  });
});

// ---------------------------------------------------------------------------

describe("§5.5 / §5.6 delete, trash, restore", () => {
  const RETENTION = 12345;
  const ctx = useEmulator({ trashRetention: RETENTION });

  async function trash(): Promise<CrFile[]> {
    return list(ctx.api, "cloudreve://trash");
  }

  async function trashItem(name: string): Promise<CrFile> {
    const item = (await trash()).find((f) => f.name === name);
    expect(item, `trash item ${name}`).toBeDefined();
    return item!;
  }

  it("§5.5 §5.6 soft delete by default: leaves the folder, appears in the trash with its metadata", async () => {
    const f = await put(ctx.api, "del1/doc.txt", "trash me");
    const r = await del(ctx.api, [myUri("del1/doc.txt")]);
    expect(code(r), r.text).toBe(0);
    expect(await names(ctx.api, "del1")).toEqual([]);
    expect((await info(ctx.api, "del1/doc.txt")).json.code).toBe(40016);

    const item = await trashItem("doc.txt");
    expect(item.id).toBe(f.id);
    expect(item.path).toMatch(
      /^cloudreve:\/\/trash\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i,
    );
    expect(item.metadata?.["sys:restore_uri"]).toBe(myUri("del1/doc.txt"));
    const collect = item.metadata?.["sys:expected_collect_time"];
    expect(collect).toMatch(/^\d+$/);
    const expected = ms(f.created_at) / 1000 + RETENTION;
    expect(Math.abs(Number(collect) - expected)).toBeLessThanOrEqual(10);
  });

  it("§5.5 §7.1 capacity used is unchanged by soft delete and released by skip_soft_delete", async () => {
    await put(ctx.api, "del2/a.bin", new Uint8Array(2000));
    await put(ctx.api, "del2/b.bin", new Uint8Array(3000));
    const start = await used(ctx.api);
    expect(code(await del(ctx.api, [myUri("del2/a.bin")]))).toBe(0);
    expect(await used(ctx.api)).toBe(start);
    const hard = await del(ctx.api, [myUri("del2/b.bin")], { skip_soft_delete: true });
    expect(code(hard), hard.text).toBe(0);
    expect(await used(ctx.api)).toBe(start - 3000);
    expect(await names(ctx.api, "del2")).toEqual([]);
    expect((await trash()).some((t) => t.name === "b.bin")).toBe(false);
  });

  it("§5.5 deleting a trash item needs skip_soft_delete", async () => {
    await put(ctx.api, "del3/gone.bin", new Uint8Array(700));
    expect(code(await del(ctx.api, [myUri("del3/gone.bin")]))).toBe(0);
    const item = await trashItem("gone.bin");
    const start = await used(ctx.api);

    const soft = await del(ctx.api, [item.path!]);
    expect(soleInner(soft).code, soft.text).toBe(403);
    expect((await trash()).some((t) => t.path === item.path)).toBe(true);

    const hard = await del(ctx.api, [item.path!], { skip_soft_delete: true });
    expect(code(hard), hard.text).toBe(0);
    expect((await trash()).some((t) => t.path === item.path)).toBe(false);
    expect(await used(ctx.api)).toBe(start - 700);
  });

  it("§5.5 folders are deleted recursively (soft and hard)", async () => {
    await put(ctx.api, "del4/tree/a.txt", "a");
    await put(ctx.api, "del4/tree/sub/b.bin", new Uint8Array(500));
    await put(ctx.api, "del4/tree2/c.bin", new Uint8Array(800));
    expect(code(await del(ctx.api, [myUri("del4/tree")]))).toBe(0);
    expect(await names(ctx.api, "del4")).toEqual(["tree2"]);
    const item = await trashItem("tree");
    expect(item.type).toBe(1);
    // Only the top-level item shows in the trash.
    expect((await trash()).some((t) => t.name === "b.bin" || t.name === "sub")).toBe(false);

    const start = await used(ctx.api);
    const hard = await del(ctx.api, [myUri("del4/tree2")], { skip_soft_delete: true });
    expect(code(hard), hard.text).toBe(0);
    expect(await names(ctx.api, "del4")).toEqual([]);
    expect(await used(ctx.api)).toBe(start - 800);
  });

  it("§5.5 §1.3 a single missing uri → 40081 with inner 40016 keyed by the uri", async () => {
    const uri = myUri("del5/missing.txt");
    const r = await del(ctx.api, [uri]);
    expect(code(r), r.text).toBe(40081);
    expect(r.json.aggregated_error?.[uri]?.code, r.text).toBe(40016);
  });

  it("§5.5 §1.3 valid items of a batch are still deleted when another fails", async () => {
    await put(ctx.api, "del6/real.txt", "r");
    const missing = myUri("del6/missing.txt");
    const r = await del(ctx.api, [myUri("del6/real.txt"), missing]);
    expect(code(r), r.text).toBe(40081);
    expect(Object.keys(r.json.aggregated_error ?? {})).toEqual([missing]);
    expect(await names(ctx.api, "del6")).toEqual([]);
  });

  it("§5.5 deleting the root → 40081 with inner 403", async () => {
    const r = await del(ctx.api, ["cloudreve://my"]);
    expect(soleInner(r).code, r.text).toBe(403);
    const hard = await del(ctx.api, ["cloudreve://my"], { skip_soft_delete: true });
    expect(soleInner(hard).code, hard.text).toBe(403);
  });

  it("§5.5 POST /file/restore brings the item back to its original place", async () => {
    const f = await put(ctx.api, "del7/dir/back.txt", "come back");
    expect(code(await del(ctx.api, [myUri("del7/dir/back.txt")]))).toBe(0);
    const item = await trashItem("back.txt");
    const r = await ctx.api.call("POST", "/file/restore", { json: { uris: [item.path] } });
    expect(code(r), r.text).toBe(0);
    const back = ok(await info(ctx.api, "del7/dir/back.txt"));
    expect(back.id).toBe(f.id);
    expect(back.size).toBe(9);
    expect(back.primary_entity).toBe(f.primary_entity);
    expect(back.metadata?.["sys:restore_uri"]).toBeUndefined();
    expect(back.metadata?.["sys:expected_collect_time"]).toBeUndefined();
    expect((await trash()).some((t) => t.path === item.path)).toBe(false);
  });

  it("§5.5 §1.3 restore when the original name is taken → 40004 for that item (40081-wrapped)", async () => {
    // Reading of the spec: restore moves each trash item separately and merges per-item
    // failures into the aggregate, keyed by the trash uri (§1.3 "Restore can also key some
    // errors by the server-built trash URI"), so a single-item clash is 40081 ⊃ 40004.
    await put(ctx.api, "del8/dup.txt", "first");
    expect(code(await del(ctx.api, [myUri("del8/dup.txt")]))).toBe(0);
    const item = await trashItem("dup.txt");
    await put(ctx.api, "del8/dup.txt", "second!");
    const r = await ctx.api.call("POST", "/file/restore", { json: { uris: [item.path] } });
    expect(soleInner(r).code, r.text).toBe(40004);
    expect(ok(await info(ctx.api, "del8/dup.txt")).size).toBe(7);
    expect((await trash()).some((t) => t.path === item.path)).toBe(true);
  });

  it("§5.5 §1.3 restore when the original folder is gone → 40016 for that item (40081-wrapped)", async () => {
    await put(ctx.api, "del10/dir/lost.txt", "lost");
    expect(code(await del(ctx.api, [myUri("del10/dir/lost.txt")]))).toBe(0);
    const item = await trashItem("lost.txt");
    expect(code(await del(ctx.api, [myUri("del10/dir")], { skip_soft_delete: true }))).toBe(0);
    const r = await ctx.api.call("POST", "/file/restore", { json: { uris: [item.path] } });
    expect(soleInner(r).code, r.text).toBe(40016);
    expect((await trash()).some((t) => t.path === item.path)).toBe(true);
  });

  it("§5.6 a trash path deeper than one level → 40016", async () => {
    await put(ctx.api, "del11/d/x.txt", "x");
    expect(code(await del(ctx.api, [myUri("del11/d")]))).toBe(0);
    const item = await trashItem("d");
    const r = await ctx.api.call("GET", "/file", { query: { uri: `${item.path}/x.txt` } });
    expect(code(r), r.text).toBe(40016);
  });

  it("§5.5 DELETE /file/trash empties the trash and releases its storage", async () => {
    await put(ctx.api, "del9/x.bin", new Uint8Array(900));
    expect(code(await del(ctx.api, [myUri("del9/x.bin")]))).toBe(0);
    expect((await trash()).length).toBeGreaterThan(0);
    const before = await used(ctx.api);
    const trashed = (await trash()).reduce((n, f) => n + f.size, 0);
    const r = await ctx.api.call("DELETE", "/file/trash");
    expect(code(r), r.text).toBe(0);
    expect(await trash()).toEqual([]);
    expect(await used(ctx.api)).toBeLessThanOrEqual(before - trashed);
    expect(await used(ctx.api)).toBeLessThanOrEqual(before - 900);
  });
});

// ---------------------------------------------------------------------------

describe("§5.7 PATCH /file/metadata", () => {
  const ctx = useEmulator();
  const DAV_KEY = "dav:http://example.com/ns|color";

  it("§5.7 dav: keys are free-form; set and remove are visible in info metadata", async () => {
    await put(ctx.api, "meta1/f.txt", "f");
    const uri = myUri("meta1/f.txt");
    const value = '{"l":"","i":"PHg+eTwveD4="}';
    const r = await patch(
      ctx.api,
      [uri],
      [
        { key: DAV_KEY, value },
        { key: "dav:DAV:|weird key ✓", value: "anything" },
      ],
    );
    expect(code(r), r.text).toBe(0);
    const f = ok(await info(ctx.api, "meta1/f.txt"));
    expect(f.metadata?.[DAV_KEY]).toBe(value);
    expect(f.metadata?.["dav:DAV:|weird key ✓"]).toBe("anything");

    const rm = await patch(ctx.api, [uri], [{ key: DAV_KEY, remove: true }]);
    expect(code(rm), rm.text).toBe(0);
    const g = ok(await info(ctx.api, "meta1/f.txt"));
    expect(g.metadata?.[DAV_KEY]).toBeUndefined();
    expect(g.metadata?.["dav:DAV:|weird key ✓"]).toBe("anything");
  });

  it("§5.7 §4.4 dav: patches do not bump updated_at; tag: patches do", async () => {
    const f = await put(ctx.api, "meta2/f.txt", "f");
    const uri = myUri("meta2/f.txt");
    await advance(ctx.api, 100);
    expect(code(await patch(ctx.api, [uri], [{ key: DAV_KEY, value: "v" }]))).toBe(0);
    const afterDav = ok(await info(ctx.api, "meta2/f.txt"));
    expect(afterDav.metadata?.[DAV_KEY]).toBe("v");
    expect(ms(afterDav.updated_at)).toBe(ms(f.updated_at));

    await advance(ctx.api, 100);
    const tag = await patch(ctx.api, [uri], [{ key: "tag:work", value: "" }]);
    expect(code(tag), tag.text).toBe(0);
    const afterTag = ok(await info(ctx.api, "meta2/f.txt"));
    expect(afterTag.metadata?.["tag:work"]).toBe("");
    expect(ms(afterTag.updated_at) - ms(f.updated_at)).toBeGreaterThanOrEqual(199_000);
  });

  it("§5.7 private:true → 40001", async () => {
    await put(ctx.api, "meta3/f.txt", "f");
    const r = await patch(
      ctx.api,
      [myUri("meta3/f.txt")],
      [{ key: DAV_KEY, value: "v", private: true }],
    );
    expect(code(r), r.text).toBe(40001);
    expect(ok(await info(ctx.api, "meta3/f.txt")).metadata?.[DAV_KEY]).toBeUndefined();
  });

  it("§5.7 an unknown category → 40001", async () => {
    await put(ctx.api, "meta4/f.txt", "f");
    for (const key of ["foo:bar", "nocategory"]) {
      const r = await patch(ctx.api, [myUri("meta4/f.txt")], [{ key, value: "v" }]);
      expect(code(r), `${key}: ${r.text}`).toBe(40001);
    }
    const f = ok(await info(ctx.api, "meta4/f.txt"));
    expect(f.metadata?.["foo:bar"]).toBeUndefined();
  });

  it("§5.7 a sys: key other than shared_owner/shared_redirect → 40001", async () => {
    await put(ctx.api, "meta5/f.txt", "f");
    for (const key of ["sys:restore_uri", "sys:upload_session_id", "sys:whatever"]) {
      const r = await patch(ctx.api, [myUri("meta5/f.txt")], [{ key, value: "x" }]);
      expect(code(r), `${key}: ${r.text}`).toBe(40001);
    }
    const f = ok(await info(ctx.api, "meta5/f.txt"));
    expect(f.metadata?.["sys:whatever"]).toBeUndefined();
  });

  it("§5.7 removing a sys: key is forbidden → 40001", async () => {
    await put(ctx.api, "meta8/f.txt", "f");
    const r = await patch(
      ctx.api,
      [myUri("meta8/f.txt")],
      [{ key: "sys:shared_owner", remove: true }],
    );
    expect(code(r), r.text).toBe(40001);
  });

  it("§5.7 tag: values must be empty or a colour", async () => {
    await put(ctx.api, "meta9/f.txt", "f");
    const good = await patch(
      ctx.api,
      [myUri("meta9/f.txt")],
      [{ key: "tag:red", value: "#ff0000" }],
    );
    expect(code(good), good.text).toBe(0);
    const bad = await patch(
      ctx.api,
      [myUri("meta9/f.txt")],
      [{ key: "tag:bad", value: "definitely not a colour" }],
    );
    expect(code(bad), bad.text).toBe(40001);
    const f = ok(await info(ctx.api, "meta9/f.txt"));
    expect(f.metadata?.["tag:red"]).toBe("#ff0000");
    expect(f.metadata?.["tag:bad"]).toBeUndefined();
  });

  it("§5.7 several uris in one call are patched together", async () => {
    await put(ctx.api, "meta10/a.txt", "a");
    await put(ctx.api, "meta10/b.txt", "b");
    const r = await patch(
      ctx.api,
      [myUri("meta10/a.txt"), myUri("meta10/b.txt")],
      [{ key: DAV_KEY, value: "both" }],
    );
    expect(code(r), r.text).toBe(0);
    expect(ok(await info(ctx.api, "meta10/a.txt")).metadata?.[DAV_KEY]).toBe("both");
    expect(ok(await info(ctx.api, "meta10/b.txt")).metadata?.[DAV_KEY]).toBe("both");
  });

  it("§5.7 a value longer than 65535 bytes → code -1", async () => {
    await put(ctx.api, "meta6/f.txt", "f");
    const r = await patch(
      ctx.api,
      [myUri("meta6/f.txt")],
      [{ key: DAV_KEY, value: "a".repeat(65536) }],
    );
    expect(code(r), r.text.slice(0, 300)).toBe(-1);
    expect(r.json.msg).toBe("");
    const atLimit = await patch(
      ctx.api,
      [myUri("meta6/f.txt")],
      [{ key: DAV_KEY, value: "a".repeat(65535) }],
    );
    expect(code(atLimit), atLimit.text.slice(0, 300)).toBe(0);
  });

  it("§5.7 the root → per-item 403 inside 40081", async () => {
    const r = await patch(ctx.api, ["cloudreve://my"], [{ key: DAV_KEY, value: "v" }]);
    expect(soleInner(r).code, r.text).toBe(403);
  });

  it("§5.7 a missing uri → per-item 40016 inside 40081", async () => {
    const uri = myUri("meta7/missing.txt");
    const r = await patch(ctx.api, [uri], [{ key: DAV_KEY, value: "v" }]);
    expect(code(r), r.text).toBe(40081);
    expect(r.json.aggregated_error?.[uri]?.code).toBe(40016);
  });
});

// ---------------------------------------------------------------------------

describe("§5.11 locks: DELETE /file/lock force-unlocks", () => {
  const ctx = useEmulator({ chunkSize: 1024 });

  it("§5.11 a lock conflict is 40073 with details; DELETE /file/lock {tokens} releases it", async () => {
    await put(ctx.api, "lock/f.txt", "old content");
    const uri = myUri("lock/f.txt");
    const s = await ctx.api.call<{ session_id: string }>("PUT", "/file/upload", {
      json: { uri, size: 10, entity_type: "version" },
    });
    expect(code(s), s.text).toBe(0);

    const blocked = await ctx.api.call<LockConflict[]>("POST", "/file/rename", {
      json: { uri, new_name: "g.txt" },
    });
    expect(code(blocked), blocked.text).toBe(40073);
    const details = blocked.json.data;
    expect(Array.isArray(details), blocked.text).toBe(true);
    expect(details!.length).toBeGreaterThanOrEqual(1);
    const d = details![0]!;
    expect(d.path).toBe(uri);
    expect(d.owner.application.type).toBe("upload");
    expect(typeof d.type).toBe("number");
    expect(typeof d.token).toBe("string");
    expect(d.token.length).toBeGreaterThan(0);

    const unlock = await ctx.api.call("DELETE", "/file/lock", { json: { tokens: [d.token] } });
    expect(code(unlock), unlock.text).toBe(0);

    const renamed = await ctx.api.call<CrFile>("POST", "/file/rename", {
      json: { uri, new_name: "g.txt" },
    });
    expect(code(renamed), renamed.text).toBe(0);
    expect(await names(ctx.api, "lock")).toEqual(["g.txt"]);
  });
});
