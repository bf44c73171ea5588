import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir, readFile, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { expect } from "vitest";
import { myUri, type Api } from "../helpers/emulator.js";

/** The absolute path of an executable on PATH, or undefined. */
export function whichTool(name: string): string | undefined {
  try {
    const out = execFileSync("sh", ["-c", 'command -v "$1"', "sh", name], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    return out || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Fails (never skips) the current test or hook when `name` is not on PATH, telling how to
 * install it. Returns the tool's absolute path.
 */
export function requireTool(name: string, debianPackage: string): string {
  const path = whichTool(name);
  if (!path) {
    expect.fail(
      `${name} is not installed: install ${debianPackage} (apt-get install -y ${debianPackage})`,
    );
  }
  return path;
}

export interface Run {
  /** Exit code; null when killed (timeout). */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program without blocking the event loop (the gateway under test lives in this process)
 * and never throws on a non-zero exit: the caller asserts on `code` and quotes `stderr`.
 */
export function run(
  file: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs: number; cwd?: string; input?: string },
): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        timeout: opts.timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; signal?: string }) | null;
        resolve({
          code: e ? (typeof e.code === "number" ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout,
          stderr,
        });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export type RcloneVendor = "nextcloud" | "other" | "owncloud" | "rclone";

/** The environment that defines remote `X:` as a WebDAV remote at `url`, with no credentials. */
export function rcloneEnv(url: string, vendor: RcloneVendor): NodeJS.ProcessEnv {
  return {
    ...process.env,
    RCLONE_CONFIG_X_TYPE: "webdav",
    RCLONE_CONFIG_X_URL: url.endsWith("/") ? url : `${url}/`,
    RCLONE_CONFIG_X_VENDOR: vendor,
  };
}

/** `rclone --config /dev/null ARGS` against remote `X:`. */
export function rclone(
  env: NodeJS.ProcessEnv,
  args: readonly string[],
  timeoutMs = 120_000,
): Promise<Run> {
  return run("rclone", ["--config", "/dev/null", ...args], { env, timeoutMs });
}

/** A failure message quoting what a client printed. */
export function explain(what: string, r: Run): string {
  const tail = (s: string) => (s.length > 4000 ? `…${s.slice(-4000)}` : s);
  return `${what}: exit ${r.code ?? r.signal}\n--- stderr ---\n${tail(r.stderr)}\n--- stdout ---\n${tail(r.stdout)}`;
}

/** Asserts a clean exit, quoting stderr otherwise; returns stdout. */
export function ok(what: string, r: Run): string {
  expect(r.code, explain(what, r)).toBe(0);
  return r.stdout;
}

export interface UpstreamItem {
  type: 0 | 1;
  name: string;
  size: number;
  updated_at: string;
  path: string;
  metadata: Record<string, string> | null;
  primary_entity?: string;
}

/**
 * A file's modification time as stored upstream, in Unix seconds: the gateway's own mtime
 * property (metadata `dav:urn:cloudreve-dav:|mtime`, `<entity> <ms>`, set by PROPPATCH) when it
 * belongs to the current version, else Cloudreve's updated_at.
 */
export function upstreamMtime(item: UpstreamItem): number {
  const raw = item.metadata?.["dav:urn:cloudreve-dav:|mtime"];
  if (raw !== undefined) {
    const { i } = JSON.parse(raw) as { i: string };
    const [entity, ms] = Buffer.from(i, "base64").toString("utf8").split(" ");
    if (entity === item.primary_entity && ms) return Math.floor(Number(ms) / 1000);
  }
  return Math.floor(Date.parse(item.updated_at) / 1000);
}

/** One folder's listing straight from the emulator's Cloudreve API (all pages). */
export async function listUpstream(api: Api, path: string): Promise<UpstreamItem[]> {
  const items: UpstreamItem[] = [];
  let token: string | undefined;
  for (;;) {
    const query: Record<string, string | number> = { uri: myUri(path), page_size: 1000 };
    if (token) query.next_page_token = token;
    const r = await api.call<{
      files: UpstreamItem[];
      pagination: { next_token?: string };
    }>("GET", "/file", { query });
    expect(r.json?.code, `list ${path}: ${r.text}`).toBe(0);
    items.push(...r.json.data!.files);
    token = r.json.data!.pagination.next_token;
    if (!token) return items;
  }
}

/**
 * The whole tree under `path` from the Cloudreve API: relative path → item; folders end in `/`.
 * Undefined when `path` does not exist upstream.
 */
export async function upstreamTree(
  api: Api,
  path: string,
): Promise<Map<string, UpstreamItem> | undefined> {
  const info = await api.call("GET", "/file/info", { query: { uri: myUri(path) } });
  if (path.replace(/\//g, "") !== "" && info.json?.code !== 0) return undefined;
  const out = new Map<string, UpstreamItem>();
  const walk = async (dir: string, rel: string) => {
    for (const item of await listUpstream(api, dir)) {
      if (item.type === 1) {
        out.set(`${rel}${item.name}/`, item);
        await walk(`${dir}/${item.name}`, `${rel}${item.name}/`);
      } else {
        out.set(`${rel}${item.name}`, item);
      }
    }
  };
  await walk(path, "");
  return out;
}

/** sha256 hex of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

/** A local file of a test tree: content and modification time (Unix seconds, maybe fractional). */
export interface Spec {
  data: Buffer;
  mtime: number;
}

/** Writes a tree (relative path → file) under `root`, with each file's modification time. */
export async function writeTree(root: string, tree: Map<string, Spec>): Promise<void> {
  for (const [rel, spec] of tree) {
    const file = join(root, rel);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, spec.data);
    await utimes(file, spec.mtime, spec.mtime);
  }
}

/** Every file under `root`: relative path → bytes. */
export async function readTree(root: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (dir: string, rel: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(dir, e.name), `${rel}${e.name}/`);
      else out.set(`${rel}${e.name}`, await readFile(join(dir, e.name)));
    }
  };
  await walk(root, "");
  return out;
}
