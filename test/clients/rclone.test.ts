import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Api } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import {
  explain,
  ok,
  rclone,
  rcloneEnv,
  requireTool,
  upstreamMtime,
  upstreamTree,
  type RcloneVendor,
  type UpstreamItem,
  readTree,
  type Spec,
  writeTree,
} from "./tools.js";

/**
 * rclone 1.60 as a WebDAV client (docs/clients.md §B.2, docs/clients.md) against the gateway in front of the
 * emulator, with vendor `nextcloud` (X-OC-Mtime on PUT, so modification times are kept) and
 * `other` (no modification times at all). Every change is checked on the Cloudreve side through
 * the emulator's API as well as through rclone.
 */

/**
 * Names exercise URL encoding: space, `+`, `%`, `#`, `&` and non-ASCII, in files and folders.
 * `?` is not here: Cloudreve forbids it in names (\ / : * ? " < > |), see the dedicated test.
 */
function makeTree(): Map<string, Spec> {
  const t = (iso: string) => Date.parse(iso) / 1000;
  return new Map<string, Spec>([
    ["docs/readme.txt", { data: Buffer.from("read me\n"), mtime: t("2021-03-04T05:06:07Z") }],
    [
      "docs/nested/deeper/deep.txt",
      { data: Buffer.from("deep\n"), mtime: t("2019-12-31T23:59:59Z") },
    ],
    [
      "docs/nested/sibling.md",
      { data: Buffer.from("# sibling\n"), mtime: t("2020-02-29T12:00:00Z") },
    ],
    ["empty.bin", { data: Buffer.alloc(0), mtime: t("2018-06-15T08:30:01Z") }],
    ["with space/a b c.txt", { data: Buffer.from("spaces\n"), mtime: t("2022-01-01T00:00:01Z") }],
    ["with space/1+1=2.txt", { data: Buffer.from("plus\n"), mtime: t("2022-01-02T00:00:02Z") }],
    [
      "with space/100% sure.txt",
      { data: Buffer.from("percent\n"), mtime: t("2022-01-03T00:00:03Z") },
    ],
    ["with space/#hash.txt", { data: Buffer.from("hash\n"), mtime: t("2022-01-04T00:00:04Z") }],
    ["with space/rock&roll.txt", { data: Buffer.from("amp\n"), mtime: t("2022-01-05T00:00:05Z") }],
    [
      "dir + % # & ü/ünïcødé 日本語 🚀.txt",
      { data: Buffer.from("unicode ✓\n"), mtime: t("2023-05-06T07:08:09Z") },
    ],
    [
      "dir + % # & ü/%41%2F encoded.txt",
      { data: Buffer.from("not decoded twice\n"), mtime: t("2023-05-07T07:08:09Z") },
    ],
    // 3 MB of random bytes, deliberately not a multiple of any power of two.
    ["blob.bin", { data: randomBytes(3 * 1000 * 1000 + 7), mtime: t("2024-07-08T09:10:11Z") }],
  ]);
}

/** The folders implied by a set of file paths, each ending in `/`. */
function foldersOf(files: Iterable<string>): string[] {
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(`${parts.slice(0, i).join("/")}/`);
  }
  return [...dirs];
}

const sorted = (xs: Iterable<string>) => [...xs].sort();
const seconds = (iso: string) => Math.floor(Date.parse(iso) / 1000);

interface LsJson {
  Path: string;
  Size: number;
  ModTime: string;
  IsDir: boolean;
}

const VENDORS: readonly RcloneVendor[] = ["nextcloud", "other"];

describe.each(VENDORS)("rclone (vendor %s)", (vendor) => {
  const fx = useGateway();
  const keepsMtime = vendor === "nextcloud";
  let api: Api;
  let env: NodeJS.ProcessEnv;
  let work: string;
  let tree: Map<string, Spec>;
  const rc = (args: string[], timeoutMs?: number) => rclone(env, args, timeoutMs);

  /** The upstream tree, asserting it exists. */
  async function upstream(path: string): Promise<Map<string, UpstreamItem>> {
    const t = await upstreamTree(api, path);
    expect(t, `${path} should exist upstream`).toBeDefined();
    return t!;
  }

  /** Upstream holds exactly these files (with these sizes) and the folders leading to them. */
  async function expectUpstreamFiles(path: string, files: Map<string, Buffer | Spec>) {
    const up = await upstream(path);
    const want = [...files.keys(), ...foldersOf(files.keys())];
    expect(sorted(up.keys())).toEqual(sorted(want));
    for (const [rel, f] of files) {
      const size = Buffer.isBuffer(f) ? f.length : f.data.length;
      expect(up.get(rel)?.size, `upstream size of ${rel}`).toBe(size);
    }
    return up;
  }

  beforeAll(async () => {
    requireTool("rclone", "rclone");
    api = new Api(fx.emu.url);
    await api.login();
    env = rcloneEnv(fx.url, vendor);
    work = await mkdtemp(join(tmpdir(), `cloudreve-dav-rclone-${vendor}-`));
    tree = makeTree();
    await writeTree(join(work, "up"), tree);
  });

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("copies a tree up: every file and folder lands upstream with its size", async () => {
    ok("rclone copy up", await rc(["copy", join(work, "up"), "X:tree"]));
    const up = await expectUpstreamFiles("tree", tree);
    if (keepsMtime) {
      // X-OC-Mtime on PUT becomes Cloudreve's updated_at, to the second.
      for (const [rel, spec] of tree) {
        expect(upstreamMtime(up.get(rel)!), `upstream updated_at of ${rel}`).toBe(spec.mtime);
      }
    }
  });

  it("check --download finds the remote byte-identical", async () => {
    const r = await rc(["check", join(work, "up"), "X:tree", "--download"]);
    ok("rclone check --download", r);
    expect(r.stderr).toContain("0 differences found");
    expect(r.stderr).toContain(`${tree.size} matching files`);
  });

  it("lists sizes (and, with nextcloud, modification times to the second) through lsjson", async () => {
    const out = ok("rclone lsjson -R", await rc(["lsjson", "-R", "--files-only", "X:tree"]));
    const items = JSON.parse(out) as LsJson[];
    expect(sorted(items.map((i) => i.Path))).toEqual(sorted(tree.keys()));
    for (const item of items) {
      const spec = tree.get(item.Path)!;
      expect(item.Size, item.Path).toBe(spec.data.length);
      if (keepsMtime) expect(seconds(item.ModTime), item.Path).toBe(spec.mtime);
    }
    if (keepsMtime) {
      const lsl = ok("rclone lsl", await rc(["lsl", "X:tree/docs"]));
      expect(lsl).toMatch(/^\s+8 2021-03-04 05:06:07\.0+ readme\.txt$/m);
    }
  });

  it("copies the tree back down unchanged", async () => {
    const down = join(work, "down");
    ok("rclone copy down", await rc(["copy", "X:tree", down]));
    const got = await readTree(down);
    expect(sorted(got.keys())).toEqual(sorted(tree.keys()));
    for (const [rel, spec] of tree) {
      expect(got.get(rel)!.equals(spec.data), `content of ${rel}`).toBe(true);
      if (keepsMtime) {
        const st = await stat(join(down, rel));
        expect(Math.floor(st.mtimeMs / 1000), `local mtime of ${rel}`).toBe(spec.mtime);
      }
    }
  });

  it("sync mirrors additions, edits and deletions (files and whole folders)", async () => {
    const src = join(work, "sync-src");
    const next = new Map(tree);
    next.delete("docs/nested/deeper/deep.txt"); // its folder empties: sync removes it
    next.delete("with space/#hash.txt");
    next.delete("empty.bin");
    // A different size, so even vendor `other` (size-only comparison) sees the edit.
    next.set("docs/readme.txt", { data: Buffer.from("read me, edited\n"), mtime: 1_700_000_000 });
    next.set("new folder/new & fresh ü.txt", { data: Buffer.from("new\n"), mtime: 1_700_000_001 });
    await writeTree(src, next);

    ok("rclone sync", await rc(["sync", src, "X:tree"]));
    const up = await expectUpstreamFiles("tree", next);
    expect(up.has("docs/nested/deeper/")).toBe(false);
    if (keepsMtime) {
      expect(upstreamMtime(up.get("docs/readme.txt")!)).toBe(1_700_000_000);
      expect(upstreamMtime(up.get("new folder/new & fresh ü.txt")!)).toBe(1_700_000_001);
    }
    const check = await rc(["check", src, "X:tree", "--download"]);
    ok("rclone check after sync", check);
    expect(check.stderr).toContain("0 differences found");
    tree = next;
  });

  it("moveto renames a file across folders server-side, keeping its content", async () => {
    await fx.resetStats();
    const from = "with space/rock&roll.txt";
    const to = "dir + % # & ü/renamed #1 100%.txt";
    ok("rclone moveto file", await rc(["moveto", `X:tree/${from}`, `X:tree/${to}`]));
    const stats = await fx.stats();
    // A server-side move: no upload session and no content download upstream.
    expect(stats.requests["PUT /api/v4/file/upload"] ?? 0).toBe(0);
    expect(stats.requests["POST /api/v4/file/url"] ?? 0).toBe(0);

    const spec = tree.get(from)!;
    tree.delete(from);
    tree.set(to, spec);
    await expectUpstreamFiles("tree", tree);
    const cat = await rc(["cat", `X:tree/${to}`]);
    expect(ok("rclone cat", cat)).toBe(spec.data.toString());
  });

  if (keepsMtime) {
    // rclone 1.60 sends `X-OC-Mtime: <source mtime>` on MOVE and COPY and, unlike later
    // versions, never follows up with a PROPPATCH: the time must survive the request itself.
    // (Cloudreve bumps updated_at on every move and rename.)
    it.each([
      ["moveto", "a rename in place", "with space/a b c.txt", "with space/a b c renamed.txt"],
      ["moveto", "a move to another folder", "with space/1+1=2.txt", "new folder/1+1=2.txt"],
      ["copyto", "a server-side copy", "with space/100% sure.txt", "new folder/copy of 100%.txt"],
    ])("%s keeps the modification time on %s", async (cmd, _what, from, to) => {
      const spec = tree.get(from)!;
      const r = await rc([cmd, `X:tree/${from}`, `X:tree/${to}`, "-vv", "--dump", "headers"]);
      ok(`rclone ${cmd}`, r);
      expect(r.stderr).toMatch(/DEBUG : (MOVE|COPY) \/tree\//);
      expect(r.stderr).toContain(`X-Oc-Mtime: ${spec.mtime}`);
      if (cmd === "moveto") tree.delete(from);
      tree.set(to, spec);
      const items = JSON.parse(ok("lsjson", await rc(["lsjson", "-R", "X:tree"]))) as LsJson[];
      const item = items.find((i) => i.Path === to);
      expect(item, `${to} listed`).toBeDefined();
      expect(seconds(item!.ModTime), `rclone's view of ${to}`).toBe(spec.mtime);
      const up = await expectUpstreamFiles("tree", tree);
      expect(upstreamMtime(up.get(to)!), `upstream time of ${to}`).toBe(spec.mtime);
    });
  }

  it("moves a whole directory server-side (DirMove), nested content included", async () => {
    await fx.resetStats();
    ok("rclone moveto dir", await rc(["moveto", "X:tree/docs", "X:elsewhere/docs moved"]));
    const stats = await fx.stats();
    expect(stats.requests["PUT /api/v4/file/upload"] ?? 0, JSON.stringify(stats)).toBe(0);

    const moved = new Map<string, Spec>();
    for (const [rel, spec] of tree) {
      if (rel.startsWith("docs/")) moved.set(rel.slice("docs/".length), spec);
    }
    expect(moved.size).toBeGreaterThan(1);
    const up = await expectUpstreamFiles("elsewhere/docs moved", moved);
    if (keepsMtime) {
      for (const [rel, spec] of moved) expect(upstreamMtime(up.get(rel)!), rel).toBe(spec.mtime);
    }
    const left = await upstream("tree");
    expect([...left.keys()].filter((k) => k.startsWith("docs/"))).toEqual([]);
    expect(left.has("docs/")).toBe(false);
    const lsf = ok("rclone lsf -R", await rc(["lsf", "-R", "X:elsewhere"]));
    expect(lsf).toContain("docs moved/nested/sibling.md");
  });

  it("refuses a name with `?` (forbidden by Cloudreve) with an error, creating nothing", async () => {
    const local = join(work, "bad");
    await mkdir(local, { recursive: true });
    await writeFile(join(local, "what?.txt"), "question\n");
    const before = await upstream("tree");
    await fx.resetStats();

    const r = await rc([
      "copyto",
      join(local, "what?.txt"),
      "X:tree/what?.txt",
      "--retries",
      "1",
      "--low-level-retries",
      "1",
    ]);
    expect(r.code, explain("rclone copyto of a `?` name must fail", r)).not.toBe(0);
    expect(r.stderr).toMatch(/what\?\.txt/);

    const mk = await rc(["mkdir", "X:tree/bad?dir", "--retries", "1", "--low-level-retries", "1"]);
    expect(mk.code, explain("rclone mkdir of a `?` name must fail", mk)).not.toBe(0);

    const after = await upstream("tree");
    expect(sorted(after.keys())).toEqual(sorted(before.keys()));
    // No upload session was left behind to hold a placeholder or a lock.
    const stats = await fx.stats();
    expect(stats.requests["PUT /api/v4/file/upload"] ?? 0).toBe(0);
    const ls = ok("rclone lsf", await rc(["lsf", "X:tree"]));
    expect(ls).not.toContain("?");
  });

  it("about reports the Cloudreve quota (GET /user/capacity)", async () => {
    const r = ok("rclone about --json", await rc(["about", "X:", "--json"]));
    const about = JSON.parse(r) as { total: number; used: number; free: number };
    const cap = await api.call<{ total: number; used: number }>("GET", "/user/capacity");
    expect(cap.json.code).toBe(0);
    const { total, used } = cap.json.data!;
    expect(about).toEqual({ total, used, free: total - used });
    expect(used).toBeGreaterThan(3_000_000); // the blob is in there
  });

  it("purge removes whole trees", async () => {
    ok("rclone purge tree", await rc(["purge", "X:tree"]));
    ok("rclone purge elsewhere", await rc(["purge", "X:elsewhere"]));
    expect(await upstreamTree(api, "tree")).toBeUndefined();
    expect(await upstreamTree(api, "elsewhere")).toBeUndefined();
    const root = await upstream("");
    expect([...root.keys()]).toEqual([]);
    const ls = await rc(["lsf", "X:tree"]);
    expect(ls.code, explain("lsf of a purged folder", ls)).not.toBe(0);
    expect(ls.stderr).toMatch(/not found/i);
  });

  if (keepsMtime) {
    it("PROPPATCH DAV:lastmodified, as rclone ≥ 1.63 sends it, sets the time rclone lists", async () => {
      // rclone 1.60 cannot set times after upload (`rclone touch` says "can't set modified
      // time"); later versions PROPPATCH this body (backend/webdav owncloudPropset).
      ok("upload", await rc(["copyto", join(work, "up", "docs", "readme.txt"), "X:pp/readme.txt"]));
      const when = Date.parse("2015-10-21T16:29:01Z") / 1000;
      const res = await fetch(`${fx.url}/pp/readme.txt`, {
        method: "PROPPATCH",
        headers: {
          "content-type": "application/xml; charset=utf-8",
          "user-agent": "rclone/v1.70.3",
        },
        body:
          `<?xml version="1.0" encoding="utf-8" ?>\n<D:propertyupdate xmlns:D="DAV:">\n` +
          ` <D:set>\n  <D:prop>\n   <lastmodified xmlns="DAV:">${when}</lastmodified>\n` +
          `  </D:prop>\n </D:set>\n</D:propertyupdate>\n`,
      });
      const text = await res.text();
      expect(res.status, text).toBe(207);
      expect(text).toMatch(/HTTP\/1\.1 200/);
      const items = JSON.parse(ok("lsjson", await rc(["lsjson", "X:pp"]))) as LsJson[];
      expect(seconds(items[0]!.ModTime)).toBe(when);
      // Cloudreve cannot set updated_at without an upload: the gateway keeps the time in its
      // own metadata property, tied to the current version.
      const up = await upstream("pp");
      expect(upstreamMtime(up.get("readme.txt")!)).toBe(when);
      ok("purge", await rc(["purge", "X:pp"]));
    });
  }
});
