/**
 * WebDAV MOVE and COPY composed from Cloudreve's rename, move, copy and delete, checked
 * against the emulator's own view of the drive (the raw API), not only the drive's cache.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CloudreveApi } from "../../src/cloudreve/api.js";
import { Drive } from "../../src/drive/drive.js";
import {
  Exists,
  Forbidden,
  MissingParent,
  NotFound,
  PreconditionFailed,
  UpstreamError,
} from "../../src/errors.js";
import { EMAIL, PASSWORD, myUri, useEmulator } from "../helpers/emulator.js";
import { contentOf } from "../helpers/content.js";
import { calls, resetStats, setFaults } from "../helpers/control.js";

const ctx = useEmulator();
let api: CloudreveApi;
beforeAll(async () => {
  api = new CloudreveApi({ baseUrl: ctx.emu.url, email: EMAIL, password: PASSWORD });
  await api.capacity();
});
afterAll(() => api.close());
afterEach(() => setFaults(ctx.emu.url, []));

const MOVE = "POST /api/v4/file/move";
const RENAME = "POST /api/v4/file/rename";

/** Files created behind the drive's back: path → content. */
async function given(files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    const r = await ctx.api.call("PUT", "/file/content", {
      query: { uri: myUri(path) },
      body: text,
    });
    expect(r.json.code, r.text).toBe(0);
  }
}

async function mkdirRaw(path: string): Promise<void> {
  const r = await ctx.api.call("POST", "/file/create", {
    json: { uri: myUri(path), type: "folder" },
  });
  expect(r.json.code, r.text).toBe(0);
}

/** The upstream's view: every file below `path` with its content, folders as "/". */
async function tree(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string, prefix: string) => {
    const r = await ctx.api.call<{ files: { name: string; type: number }[] }>("GET", "/file", {
      query: { uri: myUri(dir), page_size: 2000 },
    });
    expect(r.json.code, r.text).toBe(0);
    for (const f of r.json.data!.files) {
      const rel = `${prefix}${f.name}`;
      if (f.type === 1) {
        out[`${rel}/`] = "";
        await walk(`${dir}/${f.name}`, `${rel}/`);
      } else {
        out[rel] = await contentRaw(`${dir}/${f.name}`);
      }
    }
  };
  await walk(path, "");
  return out;
}

async function contentRaw(path: string): Promise<string> {
  const drive = new Drive(api);
  return (await contentOf(await drive.read(path))).toString();
}

describe("move", () => {
  it("renames within one folder with one rename call", async () => {
    await given({ "m1/a.txt": "A" });
    const drive = new Drive(api);
    await resetStats(ctx.emu.url);
    expect(await drive.move("/m1/a.txt", "/m1/b.txt", { overwrite: false })).toEqual({
      created: true,
    });
    expect(await calls(ctx.emu.url, RENAME)).toBe(1);
    expect(await calls(ctx.emu.url, MOVE)).toBe(0);
    expect(await tree("m1")).toEqual({ "b.txt": "A" });
  });

  it("moves to another folder keeping the name with one move call", async () => {
    await given({ "m2/x/a.txt": "A", "m2/y/keep.txt": "K" });
    const drive = new Drive(api);
    await resetStats(ctx.emu.url);
    await drive.move("/m2/x/a.txt", "/m2/y/a.txt", { overwrite: false });
    expect(await calls(ctx.emu.url, MOVE)).toBe(1);
    expect(await calls(ctx.emu.url, RENAME)).toBe(0);
    expect(await tree("m2")).toEqual({ "x/": "", "y/": "", "y/a.txt": "A", "y/keep.txt": "K" });
  });

  it("moves to another folder under a new name", async () => {
    await given({ "m3/x/a.txt": "A" });
    await mkdirRaw("m3/y");
    await new Drive(api).move("/m3/x/a.txt", "/m3/y/b.txt", { overwrite: false });
    expect(await tree("m3")).toEqual({ "x/": "", "y/": "", "y/b.txt": "A" });
  });

  it.each([
    ["unknown to the cache", false],
    ["known from a cached listing", true],
  ])("moves into a folder that holds an item with the source's name (%s)", async (_, cached) => {
    const base = cached ? "m4c" : "m4u";
    await given({ [`${base}/x/a.txt`]: "source", [`${base}/y/a.txt`]: "bystander" });
    const drive = new Drive(api);
    if (cached) await drive.list(`/${base}/y`);
    await drive.move(`/${base}/x/a.txt`, `/${base}/y/b.txt`, { overwrite: false });
    expect(await tree(base)).toEqual({
      "x/": "",
      "y/": "",
      "y/a.txt": "bystander",
      "y/b.txt": "source",
    });
    expect((await drive.list(`/${base}/y`)).map((e) => e.name).sort()).toEqual(["a.txt", "b.txt"]);
  });

  it("moves a folder with its contents into a folder holding its name", async () => {
    await given({ "m5/x/d/f.txt": "F", "m5/y/d/g.txt": "G" });
    await new Drive(api).move("/m5/x/d", "/m5/y/e", { overwrite: false });
    expect(await tree("m5")).toEqual({
      "x/": "",
      "y/": "",
      "y/d/": "",
      "y/d/g.txt": "G",
      "y/e/": "",
      "y/e/f.txt": "F",
    });
  });

  it("with Overwrite: T replaces a file; the old one goes to the trash", async () => {
    await given({ "m6/a.txt": "new", "m6/y/b.txt": "old" });
    const drive = new Drive(api);
    expect(await drive.move("/m6/a.txt", "/m6/y/b.txt", { overwrite: true })).toEqual({
      created: false,
    });
    expect(await tree("m6")).toEqual({ "y/": "", "y/b.txt": "new" });
    expect((await drive.stat("/m6/y/b.txt")).size).toBe(3);
    const trash = await ctx.api.call<{ files: { metadata: Record<string, string> }[] }>(
      "GET",
      "/file",
      { query: { uri: "cloudreve://trash" } },
    );
    // The replaced item was parked under a temporary name before it was deleted.
    expect(
      trash.json.data!.files.some((f) =>
        f.metadata["sys:restore_uri"]?.startsWith(myUri("m6/y/.cloudreve-dav-")),
      ),
    ).toBe(true);
  });

  it("with Overwrite: T replaces a folder, same name in another folder", async () => {
    await given({ "m7/x/d/new.txt": "N", "m7/y/d/old.txt": "O" });
    const drive = new Drive(api);
    await drive.list("/m7/y/d");
    await resetStats(ctx.emu.url);
    expect(await drive.move("/m7/x/d", "/m7/y/d", { overwrite: true })).toEqual({
      created: false,
    });
    // Aside, move, delete: the destination being replaced is no clash for the move.
    expect(await calls(ctx.emu.url, RENAME)).toBe(1);
    expect(await calls(ctx.emu.url, MOVE)).toBe(1);
    expect(await calls(ctx.emu.url, "DELETE /api/v4/file")).toBe(1);
    expect(await tree("m7")).toEqual({ "x/": "", "y/": "", "y/d/": "", "y/d/new.txt": "N" });
    expect((await drive.list("/m7/y/d")).map((e) => e.name)).toEqual(["new.txt"]);
    await expect(drive.stat("/m7/y/d/old.txt")).rejects.toBeInstanceOf(NotFound);
  });

  it("with Overwrite: F refuses an existing destination and changes nothing", async () => {
    await given({ "m8/a.txt": "A", "m8/b.txt": "B" });
    const drive = new Drive(api);
    await resetStats(ctx.emu.url);
    await expect(drive.move("/m8/a.txt", "/m8/b.txt", { overwrite: false })).rejects.toBeInstanceOf(
      PreconditionFailed,
    );
    expect((await calls(ctx.emu.url, MOVE)) + (await calls(ctx.emu.url, RENAME))).toBe(0);
    expect(await tree("m8")).toEqual({ "a.txt": "A", "b.txt": "B" });
  });

  it("refuses a missing destination parent, a file as parent, and a folder into itself", async () => {
    await given({ "m9/d/a.txt": "A", "m9/f.txt": "F" });
    const drive = new Drive(api);
    await expect(drive.move("/m9/d", "/m9/nope/d", { overwrite: true })).rejects.toBeInstanceOf(
      MissingParent,
    );
    await expect(drive.move("/m9/d", "/m9/f.txt/d", { overwrite: true })).rejects.toBeInstanceOf(
      MissingParent,
    );
    await expect(drive.move("/m9/d", "/m9/d/inner", { overwrite: true })).rejects.toBeInstanceOf(
      Forbidden,
    );
    await expect(drive.move("/m9/d/a.txt", "/m9/d", { overwrite: true })).rejects.toBeInstanceOf(
      Forbidden,
    );
    await expect(drive.move("/m9/d", "/m9/d", { overwrite: true })).rejects.toBeInstanceOf(
      Forbidden,
    );
    await expect(drive.move("/m9/none", "/m9/x", { overwrite: true })).rejects.toBeInstanceOf(
      NotFound,
    );
    expect(await tree("m9")).toEqual({ "d/": "", "d/a.txt": "A", "f.txt": "F" });
  });

  it("puts the source back when the last step (the rename) fails", async () => {
    await given({ "m10/x/a.txt": "precious" });
    await mkdirRaw("m10/y");
    const drive = new Drive(api);
    await setFaults(ctx.emu.url, [{ route: RENAME, failWith: 502 }]);
    await resetStats(ctx.emu.url);
    await expect(
      drive.move("/m10/x/a.txt", "/m10/y/b.txt", { overwrite: false }),
    ).rejects.toBeInstanceOf(UpstreamError);
    expect(await calls(ctx.emu.url, MOVE)).toBe(2); // there and back
    expect(await tree("m10")).toEqual({ "x/": "", "x/a.txt": "precious", "y/": "" });
    expect((await drive.stat("/m10/x/a.txt")).size).toBe(8);
    await expect(drive.stat("/m10/y/b.txt")).rejects.toBeInstanceOf(NotFound);
  });

  it("puts the replaced destination back when the move fails", async () => {
    await given({ "m11/x/a.txt": "source", "m11/y/a.txt": "destination" });
    const drive = new Drive(api);
    await setFaults(ctx.emu.url, [{ route: MOVE, failWith: 503 }]);
    await expect(
      drive.move("/m11/x/a.txt", "/m11/y/a.txt", { overwrite: true }),
    ).rejects.toBeInstanceOf(UpstreamError);
    expect(await tree("m11")).toEqual({
      "x/": "",
      "x/a.txt": "source",
      "y/": "",
      "y/a.txt": "destination",
    });
    expect((await drive.list("/m11/y")).map((e) => e.name)).toEqual(["a.txt"]);
  });

  it("renames a parked source back when its move fails", async () => {
    await given({ "m12/x/a.txt": "kept", "m12/y/a.txt": "bystander" });
    const drive = new Drive(api);
    await drive.list("/m12/y"); // the clash is known, so the source is parked first
    await setFaults(ctx.emu.url, [{ route: MOVE, failWith: 502 }]);
    await resetStats(ctx.emu.url);
    await expect(
      drive.move("/m12/x/a.txt", "/m12/y/b.txt", { overwrite: false }),
    ).rejects.toBeInstanceOf(UpstreamError);
    expect(await calls(ctx.emu.url, RENAME)).toBe(2); // parked and back
    expect(await tree("m12")).toEqual({
      "x/": "",
      "x/a.txt": "kept",
      "y/": "",
      "y/a.txt": "bystander",
    });
  });
});

describe("copy", () => {
  it("copies a folder tree with depth infinity under a new name", async () => {
    await given({ "c1/src/a.txt": "A", "c1/src/sub/b.txt": "B" });
    await mkdirRaw("c1/dst");
    const drive = new Drive(api);
    expect(
      await drive.copy("/c1/src", "/c1/dst/copy", { overwrite: false, depth: "infinity" }),
    ).toEqual({ created: true });
    expect(await tree("c1")).toEqual({
      "dst/": "",
      "dst/copy/": "",
      "dst/copy/a.txt": "A",
      "dst/copy/sub/": "",
      "dst/copy/sub/b.txt": "B",
      "src/": "",
      "src/a.txt": "A",
      "src/sub/": "",
      "src/sub/b.txt": "B",
    });
    expect((await drive.list("/c1/dst")).map((e) => e.name)).toEqual(["copy"]);
  });

  it("copies within the source's own folder", async () => {
    await given({ "c2/a.txt": "A" });
    const drive = new Drive(api);
    await drive.list("/c2");
    await drive.copy("/c2/a.txt", "/c2/b.txt", { overwrite: false, depth: "infinity" });
    expect(await tree("c2")).toEqual({ "a.txt": "A", "b.txt": "A" });
    expect((await drive.list("/c2")).map((e) => e.name).sort()).toEqual(["a.txt", "b.txt"]);
  });

  it("copies a folder with depth 0 as the folder alone, dead properties included", async () => {
    await given({ "c3/src/a.txt": "A" });
    const drive = new Drive(api);
    const prop = { ns: "urn:x", name: "p", innerXml: "v" };
    await drive.setDeadProps("/c3/src", { set: [prop], remove: [] });
    await drive.copy("/c3/src", "/c3/shallow", { overwrite: false, depth: 0 });
    expect(await tree("c3")).toEqual({ "shallow/": "", "src/": "", "src/a.txt": "A" });
    expect(await drive.list("/c3/shallow")).toEqual([]);
    expect((await new Drive(api).getDeadProps(["/c3/shallow"]))[0]).toEqual([prop]);
  });

  it("copies into a folder holding the source's name", async () => {
    await given({ "c4/x/a.txt": "source", "c4/y/a.txt": "bystander" });
    await new Drive(api).copy("/c4/x/a.txt", "/c4/y/b.txt", {
      overwrite: false,
      depth: "infinity",
    });
    expect(await tree("c4")).toEqual({
      "x/": "",
      "x/a.txt": "source",
      "y/": "",
      "y/a.txt": "bystander",
      "y/b.txt": "source",
    });
  });

  it("with Overwrite: T replaces the destination, with F refuses it", async () => {
    await given({ "c5/a.txt": "new", "c5/b.txt": "old", "c5/d/x.txt": "X" });
    const drive = new Drive(api);
    await expect(
      drive.copy("/c5/a.txt", "/c5/b.txt", { overwrite: false, depth: "infinity" }),
    ).rejects.toBeInstanceOf(PreconditionFailed);
    expect(await tree("c5")).toEqual({ "a.txt": "new", "b.txt": "old", "d/": "", "d/x.txt": "X" });

    expect(
      await drive.copy("/c5/a.txt", "/c5/b.txt", { overwrite: true, depth: "infinity" }),
    ).toEqual({ created: false });
    expect(await drive.copy("/c5/a.txt", "/c5/d", { overwrite: true, depth: 0 })).toEqual({
      created: false,
    });
    expect(await tree("c5")).toEqual({ "a.txt": "new", "b.txt": "new", d: "new" });
    expect((await drive.stat("/c5/d")).isDir).toBe(false);
  });

  it("refuses a missing destination parent and a copy into the source", async () => {
    await given({ "c6/d/a.txt": "A" });
    const drive = new Drive(api);
    await expect(
      drive.copy("/c6/d", "/c6/none/d", { overwrite: false, depth: "infinity" }),
    ).rejects.toBeInstanceOf(MissingParent);
    await expect(
      drive.copy("/c6/d", "/c6/d/d", { overwrite: false, depth: "infinity" }),
    ).rejects.toBeInstanceOf(Forbidden);
    expect(await tree("c6")).toEqual({ "d/": "", "d/a.txt": "A" });
  });

  it("keeps the source and leaves nothing behind when a staged copy fails", async () => {
    await given({ "c7/a.txt": "A" });
    await setFaults(ctx.emu.url, [{ route: RENAME, failWith: 502 }]);
    await expect(
      new Drive(api).copy("/c7/a.txt", "/c7/b.txt", { overwrite: false, depth: "infinity" }),
    ).rejects.toBeInstanceOf(UpstreamError);
    expect(await tree("c7")).toEqual({ "a.txt": "A" });
  });
});

describe("mkdir collisions", () => {
  it("tells Exists from a cache that missed the item", async () => {
    const drive = new Drive(api, { negativeTtlMs: 60_000 });
    await expect(drive.stat("/k1/late")).rejects.toBeInstanceOf(NotFound);
    await mkdirRaw("k1/late");
    await expect(drive.mkdir("/k1/late")).rejects.toBeInstanceOf(Exists);
    expect((await drive.stat("/k1/late")).isDir).toBe(true);
  });
});
