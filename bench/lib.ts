/**
 * Small helpers for the benchmark runner: child processes, free ports, readiness, peak RSS
 * of a child (VmHWM, reset through /proc/<pid>/clear_refs) and its current RSS, external
 * clients and statistics.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, openSync } from "node:fs";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The `p`-th percentile (0–100) by nearest rank: the smallest value at least p% of them reach. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** The median of each named series. */
export function medians(series: Record<string, readonly number[]>): Record<string, number> {
  return Object.fromEntries(Object.entries(series).map(([k, v]) => [k, median(v)]));
}

/** Seconds since `started` (a `process.hrtime.bigint()`). */
export const secondsSince = (started: bigint) => Number(process.hrtime.bigint() - started) / 1e9;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface Child {
  name: string;
  process: ChildProcess;
  pid: number;
  stop(): Promise<void>;
}

/** Starts a long-running child with its output going to `logFile`; waits for `ready()`. */
export async function startChild(
  name: string,
  command: string,
  args: readonly string[],
  logFile: string,
  ready: () => Promise<boolean>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Child> {
  const out = openSync(logFile, "a");
  const child = spawn(command, args, { stdio: ["ignore", out, out], env });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exited = true;
      resolve();
    }),
  );
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`${name} exited during start-up; see ${logFile}`);
    if (await ready().catch(() => false)) break;
    if (Date.now() > deadline) throw new Error(`${name} did not become ready; see ${logFile}`);
    await sleep(100);
  }
  return {
    name,
    process: child,
    pid: child.pid!,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** True once something answers HTTP at `url` (any status). */
export async function answers(url: string): Promise<boolean> {
  try {
    const res = await request(url, { method: "GET" });
    await res.body.dump();
    return true;
  } catch {
    return false;
  }
}

/** Peak resident memory of a process since the last reset, in MB (VmHWM). */
export class PeakRss {
  constructor(private readonly pid: number) {}

  /** Resets the kernel's peak-RSS counter (clear_refs 5). */
  async reset(): Promise<void> {
    await writeFile(`/proc/${this.pid}/clear_refs`, "5");
  }

  async peakMB(): Promise<number> {
    const status = await readFile(`/proc/${this.pid}/status`, "utf8");
    const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    return kb / 1024;
  }

  /** Resident memory right now, in MB (VmRSS). */
  async currentMB(): Promise<number> {
    const status = await readFile(`/proc/${this.pid}/status`, "utf8");
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    return kb / 1024;
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a client to completion; rejects on a non-zero exit. */
export function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { maxBuffer: 256 * MiB, cwd: options.cwd, env: options.env ?? process.env },
      (err, stdout, stderr) => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        if (err) {
          reject(new Error(`${command} ${args.join(" ")} failed: ${err.message}\n${stderr}`));
          return;
        }
        resolve({ stdout, stderr, ms });
      },
    );
  });
}

export interface CurlResult {
  status: number;
  ttfbS: number;
  totalS: number;
  bytes: number;
  /** Bytes per second, download or upload, as curl reports it. */
  speed: number;
}

/** One curl transfer; the body goes to /dev/null. */
export async function curl(args: readonly string[]): Promise<CurlResult> {
  const { stdout } = await run("curl", [
    "-s",
    "-o",
    "/dev/null",
    "-H",
    "Expect:",
    "-w",
    "%{http_code} %{time_starttransfer} %{time_total} %{size_download} %{size_upload} %{speed_download} %{speed_upload}",
    ...args,
  ]);
  const [code, ttfb, total, down, up, speedDown, speedUp] = stdout.trim().split(" ").map(Number);
  const upload = (up ?? 0) > (down ?? 0);
  return {
    status: code!,
    ttfbS: ttfb!,
    totalS: total!,
    bytes: upload ? up! : down!,
    speed: upload ? speedUp! : speedDown!,
  };
}

/**
 * Many transfers in one curl, `parallel` at a time (one after another on one connection when
 * 1); each transfer is its own options and URL (`["-T", file, url]`). Answers each transfer's
 * URL, HTTP status and the value of the answer's `header`, in the order they finished.
 */
export async function curlEach(
  transfers: readonly (readonly string[])[],
  parallel: number,
  header: string,
): Promise<{ url: string; status: number; header: string }[]> {
  const args = ["-s", "-H", "Expect:", "-w", `%{url}\t%{http_code}\t%header{${header}}\n`];
  if (parallel > 1) args.push("--parallel", "--parallel-max", String(parallel));
  const { stdout } = await run("curl", [
    ...args,
    ...transfers.flatMap((t) => ["-o", "/dev/null", ...t]),
  ]);
  return stdout
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => {
      const [url = "", status, value = ""] = line.split("\t");
      return { url, status: Number(status), header: value };
    });
}

export function expectStatus(r: CurlResult, wanted: number[], what: string): CurlResult {
  if (!wanted.includes(r.status)) throw new Error(`${what}: HTTP ${r.status}`);
  return r;
}

/** wrk's requests per second for one run. */
export async function wrk(
  url: string,
  seconds: number,
  connections: number,
  script?: string,
): Promise<{ rps: number; non2xx: number; output: string }> {
  const args = ["-t", "2", "-c", String(connections), "-d", `${seconds}s`, "--latency"];
  if (script) args.push("-s", script);
  const { stdout } = await run("wrk", [...args, url]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  return { rps, non2xx, output: stdout };
}

/**
 * The tools of `needs` (command → Debian package) that are not on PATH, as one message naming
 * the packages to install; undefined when all are there.
 */
export function missingTools(needs: Record<string, string>): string | undefined {
  const missing = Object.entries(needs).filter(
    ([command]) =>
      spawnSync("sh", ["-c", 'command -v "$1"', "sh", command], { stdio: "ignore" }).status !== 0,
  );
  if (missing.length === 0) return undefined;
  const packages = [...new Set(missing.map(([, pkg]) => pkg))].join(" ");
  return (
    `npm run bench needs ${missing.map(([command]) => command).join(", ")}: ` +
    `install them with apt-get install -y ${packages}`
  );
}

/** Clock ticks per second of /proc's CPU times. */
const CLOCK_TICKS =
  Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;

/** CPU time process `pid` has used so far (user + system), in seconds. */
async function processCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // After "pid (comm) ": state, ppid, …; utime and stime are the 14th and 15th fields.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** `pid` and its descendants (a `--workers` primary and its workers), from /proc. */
export async function processTree(pid: number): Promise<number[]> {
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
  const below = await Promise.all(children.split(" ").filter(Boolean).map(Number).map(processTree));
  return [pid, ...below.flat()];
}

/** Resident memory of these processes together right now, in MB (VmRSS). */
export async function rssMB(pids: readonly number[]): Promise<number> {
  const each = await Promise.all(pids.map((pid) => new PeakRss(pid).currentMB()));
  return each.reduce((a, b) => a + b, 0);
}

/** Busy CPU time of the whole machine so far, all cores together, in seconds. */
async function machineCpuSeconds(): Promise<number> {
  const first = (await readFile("/proc/stat", "utf8")).split("\n")[0] ?? "";
  // cpu user nice system idle iowait irq softirq steal …
  const ticks = first.trim().split(/\s+/).slice(1, 9).map(Number);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return (ticks.reduce((a, b) => a + b, 0) - idle) / CLOCK_TICKS;
}

/**
 * Starts measuring the CPU the processes `pids` and the whole machine use; `stop()` answers
 * each as a percentage of one core over the time since (the machine's last: 100 × cores at most).
 */
export async function cpuMeter(pids: readonly number[]) {
  const read = async () => [
    ...(await Promise.all(pids.map(processCpuSeconds))),
    await machineCpuSeconds(),
  ];
  const started = process.hrtime.bigint();
  const before = await read();
  return {
    async stop(): Promise<number[]> {
      const after = await read();
      const seconds = secondsSince(started);
      return after.map((v, i) => ((v - before[i]!) / seconds) * 100);
    },
  };
}

/** Disk space the files below `dir` take (allocated blocks: a sparse file counts what it holds). */
export async function diskBytes(dir: string): Promise<number> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  let total = 0;
  for (const name of names) {
    // Files come and go while an upload runs.
    const s = await stat(join(dir, name)).catch(() => undefined);
    if (s?.isFile()) total += s.blocks * 512;
  }
  return total;
}

/** Calls `measure` every `everyMs` until `stop()`, which answers the largest of each number seen. */
export function sampleMax(measure: () => Promise<number[]>, everyMs = 250) {
  let max: number[] = [];
  let last = Promise.resolve();
  const tick = async () => {
    const values = await measure();
    max = values.map((v, i) => Math.max(v, max[i] ?? -Infinity));
  };
  const timer = setInterval(() => (last = last.then(tick)), everyMs);
  // A measurement that throws before `stop()` must not keep the process alive.
  timer.unref();
  return {
    async stop(): Promise<number[]> {
      clearInterval(timer);
      await last;
      await tick();
      return max;
    },
  };
}

/**
 * Replaces the section of RESULTS.md between `begin` and `end` (both included in `section`), or
 * puts it just below the kept-marker line, so runs of the numbered scenarios (which rewrite
 * everything above that line) keep it.
 */
export async function writeSection(
  file: string,
  keptMarker: string,
  markers: { begin: string; end: string },
  section: string,
): Promise<void> {
  const previous = existsSync(file) ? await readFile(file, "utf8") : "";
  const begin = previous.indexOf(markers.begin);
  const end = previous.indexOf(markers.end);
  let next: string;
  if (begin >= 0 && end > begin) {
    next = previous.slice(0, begin) + section + previous.slice(end + markers.end.length);
  } else if (previous.includes(keptMarker)) {
    next = previous.replace(keptMarker, `${keptMarker}\n\n${section}`);
  } else {
    next = `${previous}\n${keptMarker}\n\n${section}\n`;
  }
  await writeFile(file, next);
}

/** Waits until a line of `file` matches `pattern` (a child's log); answers that line. */
export async function waitForLine(file: string, pattern: RegExp, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await readFile(file, "utf8").catch(() => "");
    const line = text.split("\n").find((l) => pattern.test(l));
    if (line !== undefined) return line;
    if (Date.now() > deadline) throw new Error(`no line matching ${pattern} in ${file}`);
    await sleep(100);
  }
}
