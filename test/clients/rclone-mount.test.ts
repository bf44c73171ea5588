import { spawn, type ChildProcess } from "node:child_process";
import {
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  unlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seed } from "../helpers/control.js";
import { Api, myUri } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { until } from "../helpers/wait.js";
import { rcloneEnv, requireTool, run, upstreamTree, type UpstreamItem } from "./tools.js";

/**
 * `rclone mount` (FUSE, --vfs-cache-mode writes) of the gateway: ordinary file-system calls on the
 * mount point, checked afterwards on the Cloudreve side through the emulator's API.
 *
 * The gateway runs in this process, so only asynchronous fs calls touch the mount: a synchronous
 * one would block the event loop that has to answer rclone's requests.
 */

const SEEDED = 4;
const SEED_SIZE = 100_000;

/** The emulator's seed pattern: byte i is i % 251. */
function seedBytes(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = i % 251;
  return b;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Bounds the wait for the mount, and for its writes to reach Cloudreve. */
const WAIT_MS = 20_000;

async function isMounted(dir: string): Promise<boolean> {
  return (await run("mountpoint", ["-q", dir], { timeoutMs: 10_000 })).code === 0;
}

describe("rclone mount (FUSE, vfs-cache-mode writes)", () => {
  const fx = useGateway();
  let api: Api;
  let work: string;
  let mnt: string;
  let child: ChildProcess | undefined;
  let log = "";

  async function tree(): Promise<Map<string, UpstreamItem>> {
    const t = await upstreamTree(api, "");
    expect(t).toBeDefined();
    return t!;
  }

  /** Waits until the upstream tree satisfies `check`; a timeout shows the tree it last saw. */
  async function untilTree(what: string, check: (t: Map<string, UpstreamItem>) => boolean) {
    let seen = new Map<string, UpstreamItem>();
    await until(
      () => `${what}; the tree upstream:\n${sortedKeys(seen).join("\n")}\n${log}`,
      async () => check((seen = await tree())),
      WAIT_MS,
    );
  }

  beforeAll(async () => {
    requireTool("rclone", "rclone");
    requireTool("fusermount3", "fuse3");
    requireTool("mountpoint", "util-linux");
    api = new Api(fx.emu.url);
    await api.login();
    await seed(fx.emu.url, { uri: myUri("seeded"), files: SEEDED, size: SEED_SIZE });

    work = await mkdtemp(join(tmpdir(), "cloudreve-dav-mount-"));
    mnt = join(work, "mnt");
    await mkdir(mnt);
    child = spawn(
      "rclone",
      [
        "--config",
        "/dev/null",
        "mount",
        "X:",
        mnt,
        "--vfs-cache-mode",
        "writes",
        "--vfs-write-back",
        "0s",
        "--dir-cache-time",
        "1s",
        "--cache-dir",
        join(work, "cache"),
        "-v",
      ],
      { env: rcloneEnv(fx.url, "nextcloud"), stdio: ["ignore", "ignore", "pipe"] },
    );
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => {
      log = (log + d).slice(-20_000);
    });
    let exited = false;
    child.once("exit", () => (exited = true));
    const waiting = () => `rclone mount to come up:\n${log}`;
    await until(waiting, async () => exited || (await isMounted(mnt)), WAIT_MS);
    expect(exited, `rclone mount exited:\n${log}`).toBe(false);
  }, 60_000);

  afterAll(async () => {
    if (mnt && (await isMounted(mnt))) {
      for (const [tool, args] of [
        ["fusermount3", ["-u", mnt]],
        ["fusermount", ["-u", mnt]],
        ["fusermount3", ["-uz", mnt]],
      ] as const) {
        await run(tool, args, { timeoutMs: 15_000 });
        if (!(await isMounted(mnt))) break;
      }
    }
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child!.once("exit", r));
      await Promise.race([gone, sleep(10_000)]);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await Promise.race([gone, sleep(5_000)]);
      }
    }
    if (work) await rm(work, { recursive: true, force: true });
  }, 60_000);

  it("lists a folder through the mount", async () => {
    const names = (await readdir(join(mnt, "seeded"))).sort();
    expect(names).toEqual(
      Array.from({ length: SEEDED }, (_, i) => `file-${String(i).padStart(5, "0")}.bin`),
    );
    expect(await readdir(mnt)).toContain("seeded");
  });

  it("reads a file through the mount", async () => {
    const data = await readFile(join(mnt, "seeded", "file-00000.bin"));
    expect(data.length).toBe(SEED_SIZE);
    expect(data.equals(seedBytes(SEED_SIZE))).toBe(true);
  });

  it("writes new files and folders through the mount", async () => {
    const dir = join(mnt, "new dir ü");
    await mkdir(join(dir, "sub"), { recursive: true });
    const body = Buffer.from("written through FUSE\n".repeat(1000));
    await writeFile(join(dir, "sub", "hello & 100%.txt"), body);
    await writeFile(join(dir, "empty.txt"), "");

    await untilTree(
      "the uploads to reach Cloudreve",
      (t) =>
        t.get("new dir ü/sub/hello & 100%.txt")?.size === body.length &&
        t.get("new dir ü/empty.txt")?.size === 0,
    );
    const res = await fetch(`${fx.url}/new%20dir%20%C3%BC/sub/hello%20%26%20100%25.txt`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
    // And read back through the mount.
    expect((await readFile(join(dir, "sub", "hello & 100%.txt"))).equals(body)).toBe(true);
  });

  it("renames and moves files and folders through the mount", async () => {
    await rename(join(mnt, "seeded", "file-00001.bin"), join(mnt, "seeded", "renamed #1.bin"));
    await rename(join(mnt, "seeded", "file-00002.bin"), join(mnt, "new dir ü", "moved.bin"));
    await rename(join(mnt, "new dir ü", "sub"), join(mnt, "sub moved"));

    await untilTree(
      "the renames and moves upstream",
      (t) =>
        !t.has("seeded/file-00001.bin") &&
        t.get("seeded/renamed #1.bin")?.size === SEED_SIZE &&
        !t.has("seeded/file-00002.bin") &&
        t.get("new dir ü/moved.bin")?.size === SEED_SIZE &&
        !t.has("new dir ü/sub/") &&
        t.has("sub moved/hello & 100%.txt"),
    );
    const res = await fetch(`${fx.url}/seeded/renamed%20%231.bin`);
    expect(Buffer.from(await res.arrayBuffer()).equals(seedBytes(SEED_SIZE))).toBe(true);
  });

  it("overwrites a file through the mount", async () => {
    const path = join(mnt, "seeded", "file-00003.bin");
    const body = Buffer.from("replaced\n");
    await writeFile(path, body);
    await untilTree(
      "the overwrite upstream",
      (t) => t.get("seeded/file-00003.bin")?.size === body.length,
    );
    const res = await fetch(`${fx.url}/seeded/file-00003.bin`);
    expect(await res.text()).toBe(body.toString());
  });

  it("deletes files and folders through the mount", async () => {
    await unlink(join(mnt, "seeded", "file-00000.bin"));
    await unlink(join(mnt, "sub moved", "hello & 100%.txt"));
    await rmdir(join(mnt, "sub moved"));
    await rm(join(mnt, "new dir ü"), { recursive: true });

    await untilTree(
      "the deletions upstream",
      (t) =>
        !t.has("seeded/file-00000.bin") &&
        !t.has("sub moved/") &&
        !t.has("new dir ü/") &&
        [...t.keys()].every((k) => k.startsWith("seeded/") || k === "seeded/"),
    );
    expect(sortedKeys(await tree())).toEqual([
      "seeded/",
      "seeded/file-00003.bin",
      "seeded/renamed #1.bin",
    ]);
    expect((await readdir(join(mnt, "seeded"))).sort()).toEqual([
      "file-00003.bin",
      "renamed #1.bin",
    ]);
  });
});

function sortedKeys(m: Map<string, unknown>): string[] {
  return [...m.keys()].sort();
}
