import { randomBytes } from "node:crypto";
import {
  chmod,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type WebDAVClient } from "webdav";
import { seed } from "../helpers/control.js";
import { Api, myUri } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { explain, requireTool, run, upstreamTree } from "./tools.js";

/**
 * davfs2 1.6 (a kernel mount of the gateway, docs/clients.md §D.3, docs/clients.md): list, read, write,
 * mkdir, rename and delete through the mount point, then unmount (umount waits for davfs2's
 * delayed uploads) and check the result through other clients: the emulator's Cloudreve API and
 * the `webdav` npm client.
 */

const MOUNT_TIMEOUT_MS = 30_000;
const UMOUNT_TIMEOUT_MS = 60_000;
const SEED_SIZE = 150_000;
const BASE = "dfs";

/** Whether `mountPoint` is in the kernel's mount table. */
async function isMounted(mountPoint: string): Promise<boolean> {
  const table = await readFile("/proc/self/mounts", "utf8");
  return table.split("\n").some((line) => line.split(" ")[1] === mountPoint);
}

/** Byte i of a seeded file is i % 251. */
function seeded(length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = i % 251;
  return b;
}

describe("davfs2 mount of the gateway", () => {
  const fx = useGateway();
  let dir: string;
  let mnt: string;
  let conf: string;
  let api: Api;
  let client: WebDAVClient;
  const payload = randomBytes(700_000);
  const note = "a note written through davfs2\n";

  beforeAll(async () => {
    requireTool("mount.davfs", "davfs2");
    requireTool("umount", "mount");
    await seed(fx.emu.url, { uri: myUri(`${BASE}/seeded`), files: 3, folders: 1, size: SEED_SIZE });
    api = new Api(fx.emu.url);
    await api.login();
    client = createClient(fx.url);

    // A unique mount point (davfs2 keys its pid file on it) and a private cache directory.
    dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-davfs2-"));
    mnt = join(dir, "mnt");
    await mkdir(mnt);
    // mount.davfs drops root for the davfs2 user: it must reach the cache directory.
    await chmod(dir, 0o755);
    await mkdir(join(dir, "cache"));
    await chmod(join(dir, "cache"), 0o777);
    conf = join(dir, "davfs2.conf");
    // buf_size 64: Linux 6.16+ breaks directory reads with the default (docs/davfs2.md).
    await writeFile(conf, `buf_size 64\nuse_locks 1\ncache_dir ${join(dir, "cache")}\n`);
  });

  afterAll(
    async () => {
      if (mnt && (await isMounted(mnt))) {
        const r = await run("umount", [mnt], { timeoutMs: UMOUNT_TIMEOUT_MS });
        if (r.code !== 0 || (await isMounted(mnt))) {
          await run("umount", ["-l", mnt], { timeoutMs: UMOUNT_TIMEOUT_MS });
        }
      }
      if (dir && mnt && !(await isMounted(mnt))) await rm(dir, { recursive: true, force: true });
    },
    2 * UMOUNT_TIMEOUT_MS + 10_000,
  );

  it(
    "mounts with empty credentials on stdin",
    async () => {
      const uid = String(process.getuid?.() ?? 0);
      const gid = String(process.getgid?.() ?? 0);
      const r = await run(
        "mount",
        ["-t", "davfs", "-o", `conf=${conf},uid=${uid},gid=${gid}`, `${fx.url}/`, mnt],
        { input: "\n\n", timeoutMs: MOUNT_TIMEOUT_MS },
      );
      expect(r.code, explain("mount -t davfs", r)).toBe(0);
      expect(await isMounted(mnt)).toBe(true);
    },
    MOUNT_TIMEOUT_MS + 10_000,
  );

  it("lists a folder with sizes", async () => {
    const names = (await readdir(join(mnt, BASE, "seeded"))).sort();
    expect(names).toEqual(["file-00000.bin", "file-00001.bin", "file-00002.bin", "folder-00000"]);
    const f = await stat(join(mnt, BASE, "seeded", "file-00001.bin"));
    expect(f.isFile()).toBe(true);
    expect(f.size).toBe(SEED_SIZE);
    expect((await stat(join(mnt, BASE, "seeded", "folder-00000"))).isDirectory()).toBe(true);
    expect(await readdir(join(mnt, BASE))).toEqual(["seeded"]);
  });

  it("reads a file byte for byte", async () => {
    const got = await readFile(join(mnt, BASE, "seeded", "file-00002.bin"));
    expect(got.length).toBe(SEED_SIZE);
    expect(got.equals(seeded(SEED_SIZE))).toBe(true);
  });

  it("writes, makes folders, renames and deletes", async () => {
    const root = join(mnt, BASE);
    await mkdir(join(root, "work"));
    await mkdir(join(root, "work", "inner"));
    await writeFile(join(root, "work", "payload.bin"), payload);
    await writeFile(join(root, "work", "note.txt"), note);
    await writeFile(join(root, "scratch.txt"), "to be deleted\n");

    // Rename a file within its folder, move one across folders, rename a folder.
    await rename(join(root, "work", "payload.bin"), join(root, "work", "payload-renamed.bin"));
    await rename(join(root, "work", "note.txt"), join(root, "work", "inner", "note.txt"));
    await rename(join(root, "work", "inner"), join(root, "work", "notes"));

    // Delete a new file, a seeded file and an empty seeded folder.
    await unlink(join(root, "scratch.txt"));
    await unlink(join(root, "seeded", "file-00000.bin"));
    await rmdir(join(root, "seeded", "folder-00000"));

    expect((await readdir(root)).sort()).toEqual(["seeded", "work"]);
    expect((await readdir(join(root, "work"))).sort()).toEqual(["notes", "payload-renamed.bin"]);
    expect(await readdir(join(root, "work", "notes"))).toEqual(["note.txt"]);
    expect((await readdir(join(root, "seeded"))).sort()).toEqual([
      "file-00001.bin",
      "file-00002.bin",
    ]);
    const back = await readFile(join(root, "work", "payload-renamed.bin"));
    expect(back.equals(payload)).toBe(true);
    expect(await readFile(join(root, "work", "notes", "note.txt"), "utf8")).toBe(note);
  });

  it(
    "unmounts, flushing every upload; other clients see the result",
    async () => {
      const r = await run("umount", [mnt], { timeoutMs: UMOUNT_TIMEOUT_MS });
      expect(r.code, explain("umount", r)).toBe(0);
      expect(await isMounted(mnt)).toBe(false);

      const tree = await upstreamTree(api, BASE);
      expect(tree, `${BASE} upstream`).toBeDefined();
      const shape = Object.fromEntries(
        [...tree!.entries()].map(([k, v]) => [k, v.type === 1 ? "dir" : v.size]),
      );
      expect(shape).toEqual({
        "seeded/": "dir",
        "seeded/file-00001.bin": SEED_SIZE,
        "seeded/file-00002.bin": SEED_SIZE,
        "work/": "dir",
        "work/notes/": "dir",
        "work/notes/note.txt": Buffer.byteLength(note),
        "work/payload-renamed.bin": payload.length,
      });

      const gotPayload = (await client.getFileContents(`/${BASE}/work/payload-renamed.bin`, {
        format: "binary",
      })) as Buffer;
      expect(Buffer.from(gotPayload).equals(payload)).toBe(true);
      expect(await client.getFileContents(`/${BASE}/work/notes/note.txt`, { format: "text" })).toBe(
        note,
      );
      // The seeded file davfs2 read is untouched.
      const seededBack = (await client.getFileContents(`/${BASE}/seeded/file-00002.bin`, {
        format: "binary",
      })) as Buffer;
      expect(Buffer.from(seededBack).equals(seeded(SEED_SIZE))).toBe(true);
      // davfs2 released every lock it took: another client can overwrite and delete.
      expect(await client.putFileContents(`/${BASE}/work/notes/note.txt`, "replaced")).toBe(true);
      await client.deleteFile(`/${BASE}/work/payload-renamed.bin`);
      expect(await client.exists(`/${BASE}/work/payload-renamed.bin`)).toBe(false);
    },
    UMOUNT_TIMEOUT_MS + 30_000,
  );
});
