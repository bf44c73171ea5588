/**
 * `npm run bench`: the scenarios of issue 6, side by side in one run, against the emulator
 * with no added latency and with 20 ms, and against `rclone serve webdav` on a local folder
 * holding the same data. The gateway runs as a child process (`node dist/cli.js`) so that its
 * peak RSS is its own. Prints the tables and writes bench/RESULTS.md.
 *
 *   npm run bench -- [--only 1,3] [--latency 0,20] [--reps 3] [--reps-copy 1] [--wrk-seconds 10]
 *                    [--relay-gib 5] [--poll-seconds 120] [--profile] [--keep] [--no-write]
 *                    [--log-level info]
 *
 * Scenarios 7–9 (storage policies: S3 PUT and GET of 1 GiB, relay PUT of 5 GiB) are not part of
 * the default run (`--only 7,8,9`; scenario 9 needs twice its file's size of free disk, for the
 * gateway's spool and the emulator's copy). They need curl only, and write their own section
 * of RESULTS.md, which the other scenarios' runs keep.
 *
 * Scenario 10 (polling staleness: a Finder-like client polling 20 folders every 2 s while another
 * client writes through the API; change events vs a 30 s and a 5 s TTL, the three side by side
 * at the same time) is not part of the default run either (`--only 10 [--poll-seconds 120]`,
 * at the highest `--latency`); it needs curl only and writes its own section of RESULTS.md.
 *
 * Scenario 11 (eight users at once: users 1–7 list a 200-file folder in a loop, idle and then while
 * user 8 uploads 1 GiB and the others 64 MiB each; listing p50/p99 and per-user MiB/s, each user in
 * their own account (`--auth cloudreve`) vs all eight in one shared account, with `--cache-ttl-seconds
 * 0` and with the default cache) is not part of the default run either (`--only 11 [--users-gib 1]
 * [--users-listings 200]`, at the highest `--latency`); it needs curl only and about 2.5 GiB of free
 * disk in the tmp dir (the two files it uploads, and one round's uploads in the emulator), and
 * writes its own section of RESULTS.md.
 *
 * Scenario 12 (several workers: wrk PROPFIND Depth 0 and GET of a 6-byte file against gateways
 * with `--workers 1`, `--workers 2` and `--workers 2 --redis`, beside `rclone serve webdav`) is not
 * part of the default run either (`--only 12`); it needs wrk, rclone, redis-server and curl, and
 * writes its own section of RESULTS.md.
 *
 * `--only soak` (alone or with numbers: `--only 1,soak`) runs the soak of bench/soak.ts, which
 * is never part of the default run; its own options are there.
 *
 * --profile runs the gateway under `node --cpu-prof` and leaves the .cpuprofile files in the
 * work directory (see bench/profile-summary.ts).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Pool, request } from "undici";
import { CloudreveApi } from "../src/cloudreve/api.js";
import { hashPassword } from "../src/passwords.js";
import {
  answers,
  cpuMeter,
  curl,
  curlEach,
  diskBytes,
  expectStatus,
  freePort,
  GiB,
  median,
  medians,
  MiB,
  missingTools,
  PeakRss,
  percentile,
  processTree,
  rssMB,
  run,
  sampleMax,
  secondsSince,
  startChild,
  waitForLine,
  wrk,
  writeSection,
  type Child,
} from "./lib.js";
import { runSoak, SOAK_OPTIONS } from "./soak.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const EMAIL = "bench@example.com";
const PASSWORD = "bench-password-1";
const CHUNK_SIZE = 25 * MiB;
const MAX_PAGE_SIZE = 2000;
const LISTING_SIZE = 10_000;
const SMALL_FILES = 1000;
const HAND_WRITTEN = "<!-- Everything below this line is kept by `npm run bench`. -->";

const { values: opts } = parseArgs({
  options: {
    only: { type: "string" },
    latency: { type: "string", default: "0,20" },
    reps: { type: "string", default: "3" },
    "wrk-seconds": { type: "string", default: "10" },
    "log-level": { type: "string", default: "info" },
    profile: { type: "boolean", default: false },
    "no-write": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    "reps-copy": { type: "string", default: "1" },
    "relay-gib": { type: "string", default: "5" },
    "poll-seconds": { type: "string", default: "120" },
    "users-gib": { type: "string", default: "1" },
    "users-listings": { type: "string", default: "200" },
    ...SOAK_OPTIONS,
  },
});
const onlyNames = (opts.only ?? "1,2,3,4,5,6").split(",");
const only = new Set(onlyNames.map(Number));
const latencies = opts.latency!.split(",").map(Number);
const REPS = Number(opts.reps);
const WRK_SECONDS = Number(opts["wrk-seconds"]);
/** rclone copy is paced by rclone itself (10 ms between calls), ~50 s a side: fewer repeats. */
const REPS_COPY = Number(opts["reps-copy"]);
/** Scenario 9's file. */
const RELAY_SIZE = Number(opts["relay-gib"]) * GiB;

interface Row {
  scenario: string;
  metric: string;
  cols: Record<string, string>;
  ratio: string;
  goal: string;
  met: string;
  rss: string;
}
const COLUMNS = ["gateway", "direct", "nginx", "rclone serve"] as const;

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "n/a";
const mb = (bytesPerSecond: number) => fmt(bytesPerSecond / 1e6, 0);
const ms = (seconds: number) => fmt(seconds * 1000, seconds < 0.01 ? 2 : 1);
const yes = (ok: boolean) => (ok ? "yes" : "**no**");
const log = (...parts: unknown[]) => process.stderr.write(`${parts.join(" ")}\n`);

// ---------------------------------------------------------------------------------------------
// Data

/** `size` bytes where byte i is i % 251, as the emulator seeds them, in pieces of ~1 MiB. */
function* pattern(size: number): Generator<Buffer> {
  // A multiple of 251 bytes, so every piece starts at byte 0 of the pattern and can be reused.
  const block = Buffer.alloc(251 * 4096);
  for (let i = 0; i < block.length; i++) block[i] = i % 251;
  for (let at = 0; at < size; at += block.length) {
    yield block.subarray(0, Math.min(block.length, size - at));
  }
}

async function writePattern(path: string, size: number): Promise<void> {
  const file = await open(path, "w");
  try {
    for (const piece of pattern(size)) await file.write(piece);
  } finally {
    await file.close();
  }
}

/** The 1 GiB file at `big` and the chunks a direct upload sends, cut once into `chunks`. */
async function prepareBig(big: string, chunks: string) {
  await writePattern(big, GiB);
  await mkdir(chunks);
  execFileSync("split", ["-b", String(CHUNK_SIZE), "-d", "-a", "3", big, join(chunks, "c")]);
  const chunkFiles = (await readdir(chunks)).sort().map((f) => join(chunks, f));
  return { big, chunkFiles };
}
type BigFile = Awaited<ReturnType<typeof prepareBig>>;

async function prepareData(work: string) {
  const peer = join(work, "peer");
  await mkdir(join(peer, "big"), { recursive: true });
  await mkdir(join(peer, "many"), { recursive: true });
  await mkdir(join(peer, "small"), { recursive: true });
  await mkdir(join(peer, "up"), { recursive: true });
  const { big, chunkFiles } = await prepareBig(
    join(peer, "big", "file-00000.bin"),
    join(work, "chunks"),
  );
  const six = Buffer.from([0, 1, 2, 3, 4, 5]);
  const pad = (i: number) => String(i).padStart(5, "0");
  for (let i = 0; i < LISTING_SIZE; i++) {
    await writeFile(join(peer, "many", `file-${pad(i)}.bin`), six);
  }
  await writeFile(join(peer, "small", "file-00000.bin"), six);
  const src1000 = join(work, "src1000");
  await mkdir(src1000);
  for (let i = 0; i < SMALL_FILES; i++) {
    await writeFile(join(src1000, `small-${pad(i)}.bin`), randomBytes(4096));
  }
  await writeFile(join(work, "rclone.conf"), "");
  await writeFile(
    join(work, "propfind0.lua"),
    'wrk.method = "PROPFIND"\nwrk.headers["Depth"] = "0"\n',
  );
  return { peer, big, src1000, chunkFiles };
}

// ---------------------------------------------------------------------------------------------
// An emulator and a gateway in front of it; one upstream setting adds nginx and rclone serve

/** Both children get their own TMPDIR: the emulator keeps its blobs there, the gateway spools. */
interface Stack {
  latency: number;
  work: string;
  emulator: Child & { url: string };
  gateway: Child & { url: string };
  api: CloudreveApi;
  rss: PeakRss;
  tmp: { emulator: string; gateway: string };
}

interface Setting extends Stack {
  nginx: Child & { url: string };
  rclone: { url: string };
  data: Awaited<ReturnType<typeof prepareData>>;
}

async function emulatorCall(url: string, path: string, body?: unknown): Promise<unknown> {
  const res = await request(`${url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.body.json()) as unknown;
  if (res.statusCode !== 200) throw new Error(`${path}: ${JSON.stringify(json)}`);
  return json;
}

/** Folder `uri` with `files` files of `size` bytes (see the emulator's README), in `email`'s drive. */
const seed = (url: string, uri: string, files: number, size = 0, email?: string) =>
  emulatorCall(url, "/__emulator/seed", { uri, files, size, email });

interface Stats {
  requests: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
}
const stats = (s: Stack) => emulatorCall(s.emulator.url, "/__emulator/stats") as Promise<Stats>;
const resetStats = (s: Stack) => emulatorCall(s.emulator.url, "/__emulator/stats/reset", {});
const totalCalls = (st: Stats) => Object.values(st.requests).reduce((a, b) => a + b, 0);

/**
 * How the gateway signs in upstream and how the bench signs in to it: by default the gateway's
 * own account (`--email`, `--password`) and no sign-in to the gateway.
 */
interface StackAuth {
  /** The gateway's flags in place of `--email … --password …`. */
  gatewayFlags: readonly string[];
  /** `name:password` for the warm-up request (Basic). */
  user?: string;
}

/**
 * The emulator with `flags` (a storage policy, …), seeded by `prepare` before the gateway starts
 * (its first listing is then cached with the seeded folders), and the gateway (with
 * `gatewayFlags`: cache settings, …), logged in.
 */
async function startStack(
  latency: number,
  work: string,
  flags: readonly string[],
  prepare: (emulatorUrl: string) => Promise<void>,
  gatewayFlags: readonly string[] = [],
  auth: StackAuth = { gatewayFlags: ["--email", EMAIL, "--password", PASSWORD] },
): Promise<Stack> {
  const tmp = { emulator: join(work, "emulator-tmp"), gateway: join(work, "gateway-tmp") };
  for (const dir of Object.values(tmp)) await mkdir(dir, { recursive: true });
  const emuPort = await freePort();
  const emuUrl = `http://127.0.0.1:${emuPort}`;
  const emulator = await startChild(
    "emulator",
    process.execPath,
    [
      join(ROOT, "dist/emulator/cli.js"),
      ...["--port", String(emuPort), "--email", EMAIL, "--password", PASSWORD],
      ...["--latency-ms", String(latency), "--capacity", String(1024 * GiB)],
      ...["--chunk-size", String(CHUNK_SIZE), "--max-page-size", String(MAX_PAGE_SIZE)],
      ...flags,
    ],
    join(work, "emulator.log"),
    () => answers(`${emuUrl}/__emulator/stats`),
    { ...process.env, TMPDIR: tmp.emulator },
  );
  let gateway: Child | undefined;
  try {
    await prepare(emuUrl);
    const gwPort = await freePort();
    const gwUrl = `http://127.0.0.1:${gwPort}/`;
    const nodeFlags = opts.profile
      ? ["--cpu-prof", "--cpu-prof-dir", join(work, "profile")]
      : ([] as string[]);
    gateway = await startChild(
      "gateway",
      process.execPath,
      [
        ...nodeFlags,
        join(ROOT, "dist/cli.js"),
        ...["--upstream", emuUrl, ...auth.gatewayFlags],
        ...["--port", String(gwPort), "--state-dir", join(work, "state")],
        ...["--log-level", opts["log-level"]!],
        ...gatewayFlags,
      ],
      join(work, "gateway.log"),
      () => answers(gwUrl),
      { ...process.env, TMPDIR: tmp.gateway },
    );
    // The gateway logs in on its first request; do it now, outside any measurement.
    const signIn = auth.user === undefined ? [] : ["-u", auth.user];
    expectStatus(
      await curl([...signIn, "-X", "PROPFIND", "-H", "Depth: 0", gwUrl]),
      [207],
      "gateway warm-up",
    );
    const api = new CloudreveApi({
      baseUrl: emuUrl,
      email: EMAIL,
      password: PASSWORD,
      stateFile: join(work, "bench-client-state.json"),
    });
    return {
      latency,
      work,
      emulator: { ...emulator, url: emuUrl },
      gateway: { ...gateway, url: gwUrl },
      api,
      rss: new PeakRss(gateway.pid),
      tmp,
    };
  } catch (err) {
    await gateway?.stop();
    await emulator.stop();
    throw err;
  }
}

async function stopStack(s: Stack): Promise<void> {
  await s.api.close();
  await s.gateway.stop();
  await s.emulator.stop();
}

async function startSetting(
  latency: number,
  work: string,
  data: Setting["data"],
  rcloneUrl: string,
): Promise<Setting> {
  const dir = join(work, `latency-${latency}`);
  await mkdir(dir, { recursive: true });
  const stack = await startStack(latency, dir, [], async (emuUrl) => {
    log(`  seeding the emulator (latency ${latency} ms)`);
    await seed(emuUrl, "cloudreve://my/big", 1, GiB);
    for (let i = 0; i < REPS; i++) await seed(emuUrl, `cloudreve://my/many-${i}`, LISTING_SIZE, 6);
    await seed(emuUrl, "cloudreve://my/small", 1, 6);
    await seed(emuUrl, "cloudreve://my/up", 0);
  });

  const ngxPort = await freePort();
  const ngxDir = join(dir, "nginx");
  await mkdir(ngxDir, { recursive: true });
  const conf = join(ngxDir, "nginx.conf");
  const emuPort = new URL(stack.emulator.url).port;
  await writeFile(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
error_log ${ngxDir}/error.log warn;
pid ${ngxDir}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${ngxDir}/body;
  proxy_temp_path ${ngxDir}/proxy;
  fastcgi_temp_path ${ngxDir}/fastcgi;
  uwsgi_temp_path ${ngxDir}/uwsgi;
  scgi_temp_path ${ngxDir}/scgi;
  upstream emulator { server 127.0.0.1:${emuPort}; keepalive 8; }
  server {
    listen 127.0.0.1:${ngxPort};
    location / {
      proxy_pass http://emulator;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
      proxy_buffer_size 256k;
      proxy_buffers 8 256k;
      proxy_busy_buffers_size 512k;
      proxy_max_temp_file_size 0;
    }
  }
}
`,
  );
  const ngxUrl = `http://127.0.0.1:${ngxPort}`;
  const nginx = await startChild("nginx", "nginx", ["-c", conf], join(ngxDir, "stdout.log"), () =>
    answers(`${ngxUrl}/__emulator/stats`),
  ).catch(async (err: unknown) => {
    await stopStack(stack);
    throw err;
  });
  return { ...stack, nginx: { ...nginx, url: ngxUrl }, rclone: { url: rcloneUrl }, data };
}

async function stopSetting(s: Setting): Promise<void> {
  await stopStack(s);
  await s.nginx.stop();
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/**
 * GETs of 1 GiB from each target, interleaved rep by rep after a warm-up (page cache, the
 * gateway's signed-URL cache): the median speeds and the gateway's peak RSS.
 */
async function getSpeeds(targets: Record<string, string>, rss: PeakRss) {
  await curl([targets.direct!]);
  await curl(["-I", targets.gateway!]);
  await rss.reset();
  const speeds: Record<string, number[]> = {};
  for (let rep = 0; rep < REPS; rep++) {
    for (const [name, url] of Object.entries(targets)) {
      const r = expectStatus(await curl([url]), [200], `GET ${name}`);
      if (r.bytes !== GiB) throw new Error(`GET ${name}: got ${r.bytes} bytes`);
      (speeds[name] ??= []).push(r.speed);
      log(`    GET 1 GiB ${name}: ${mb(r.speed)} MB/s`);
    }
  }
  const m = medians(speeds);
  return { m, ratio: m.gateway! / m.direct!, peak: await rss.peakMB() };
}

/** 1. GET of a 1 GiB file: gateway vs the signed URL, nginx over it, rclone serve. */
async function getLargeFile(s: Setting): Promise<Row[]> {
  const { url: signed } = await s.api.fileUrl("cloudreve://my/big/file-00000.bin");
  const { m, ratio, peak } = await getSpeeds(
    {
      gateway: `${s.gateway.url}big/file-00000.bin`,
      direct: signed,
      nginx: signed.replace(s.emulator.url, s.nginx.url),
      "rclone serve": `${s.rclone.url}big/file-00000.bin`,
    },
    s.rss,
  );
  return [
    {
      scenario: "1 GET 1 GiB",
      metric: "throughput, MB/s",
      cols: Object.fromEntries(Object.entries(m).map(([k, v]) => [k, mb(v)])),
      ratio: `gateway/direct ${fmt(ratio, 2)} (nginx/direct ${fmt(m.nginx! / m.direct!, 2)})`,
      goal: "≥ 0.90; RSS < 150 MB",
      met: yes(ratio >= 0.9 && peak < 150),
      rss: `${fmt(peak)} MB`,
    },
  ];
}

/** 2. Seek: 1 MiB at 90% of the 1 GiB file. */
async function seekInLargeFile(s: Setting): Promise<Row[]> {
  const start = Math.floor(GiB * 0.9);
  const range = `${start}-${start + MiB - 1}`;
  const { url: signed } = await s.api.fileUrl("cloudreve://my/big/file-00000.bin");
  const targets: Record<string, string> = {
    gateway: `${s.gateway.url}big/file-00000.bin`,
    direct: signed,
    "rclone serve": `${s.rclone.url}big/file-00000.bin`,
  };
  const ttfb: Record<string, number[]> = {};
  const total: Record<string, number[]> = {};
  await s.rss.reset();
  for (let rep = 0; rep < Math.max(5, REPS); rep++) {
    for (const [name, url] of Object.entries(targets)) {
      const r = expectStatus(await curl(["-r", range, url]), [206], `seek ${name}`);
      if (r.bytes !== MiB) throw new Error(`seek ${name}: got ${r.bytes} bytes`);
      (ttfb[name] ??= []).push(r.ttfbS);
      (total[name] ??= []).push(r.totalS);
    }
  }
  await resetStats(s);
  await curl(["-r", range, targets.gateway!]);
  const st = await stats(s);
  const peak = await s.rss.peakMB();
  const t = Object.fromEntries(Object.entries(ttfb).map(([k, v]) => [k, median(v)]));
  const tt = Object.fromEntries(Object.entries(total).map(([k, v]) => [k, median(v)]));
  return [
    {
      scenario: "2 seek 1 MiB at 90%",
      metric: "time to first byte, ms",
      cols: Object.fromEntries(Object.entries(t).map(([k, v]) => [k, ms(v)])),
      ratio: `gateway − direct ${ms(t.gateway! - t.direct!)} ms`,
      goal: "reported",
      met: "—",
      rss: `${fmt(peak)} MB`,
    },
    {
      scenario: "2 seek 1 MiB at 90%",
      metric: "whole 1 MiB, ms",
      cols: Object.fromEntries(Object.entries(tt).map(([k, v]) => [k, ms(v)])),
      ratio: `direct/gateway ${fmt(tt.direct! / tt.gateway!, 2)}`,
      goal: "reported",
      met: "—",
      rss: "",
    },
    {
      scenario: "2 seek 1 MiB at 90%",
      metric: "upstream bytes (requests) for one seek",
      cols: { gateway: `${fmt(st.bytesOut)} (${totalCalls(st)})` },
      ratio: `${fmt(st.bytesOut / MiB, 3)} × range`,
      goal: "≤ range + read-ahead (none)",
      met: yes(st.bytesOut <= MiB + 4096),
      rss: "",
    },
  ];
}

/** 3. PUT of a 1 GiB file: gateway vs the same chunks straight to the upload API. */
async function putLargeFile(s: Setting): Promise<Row[]> {
  const { big, chunkFiles } = s.data;
  const speeds: Record<string, number[]> = {};
  const push = (name: string, v: number) => (speeds[name] ??= []).push(v);
  let peakLength = 0;
  let peakChunked = 0;
  for (let rep = 0; rep < REPS; rep++) {
    const tag = `l${s.latency}-r${rep}`;
    // Through the gateway, with a length.
    await s.rss.reset();
    let r = expectStatus(
      await curl(["-T", big, `${s.gateway.url}up/gw-${tag}.bin`]),
      [201],
      "PUT gateway",
    );
    peakLength = Math.max(peakLength, await s.rss.peakMB());
    push("gateway", GiB / r.totalS);

    // Straight to the emulator: session, then every chunk in order on one connection.
    const uri = `cloudreve://my/up/direct-${tag}.bin`;
    const started = process.hrtime.bigint();
    const session = await s.api.createUploadSession({ uri, size: GiB, replace: false });
    if (session.chunk_size !== CHUNK_SIZE) throw new Error(`chunk size ${session.chunk_size}`);
    const token = await s.api.transport.auth.accessToken();
    const base = `${s.emulator.url}/api/v4/file/upload/${session.session_id}`;
    const args = ["-s", "-H", "Expect:", "-X", "POST"];
    args.push(
      "-H",
      `authorization: Bearer ${token}`,
      "-H",
      "content-type: application/octet-stream",
    );
    chunkFiles.forEach((file, i) => args.push("-T", file, `${base}/${i}`));
    const out = await run("curl", args);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const ok = out.stdout.split('"code":0').length - 1;
    if (ok !== chunkFiles.length) throw new Error(`direct upload: ${out.stdout.slice(0, 300)}`);
    const info = await s.api.info(uri);
    if (info.size !== GiB) throw new Error(`direct upload left ${info.size} bytes`);
    push("direct", GiB / seconds);

    // rclone serve, with a length.
    r = expectStatus(await curl(["-T", big, `${s.rclone.url}up/${tag}.bin`]), [201], "PUT rclone");
    push("rclone serve", GiB / r.totalS);
    await rm(join(s.data.peer, "up", `${tag}.bin`), { force: true });

    // Chunked, no length: the gateway spools.
    await s.rss.reset();
    r = expectStatus(
      await curl([
        "-T",
        big,
        "-H",
        "Transfer-Encoding: chunked",
        `${s.gateway.url}up/gwc-${tag}.bin`,
      ]),
      [201],
      "PUT chunked gateway",
    );
    peakChunked = Math.max(peakChunked, await s.rss.peakMB());
    push("gateway chunked", GiB / r.totalS);
    r = expectStatus(
      await curl(["-T", big, "-H", "Transfer-Encoding: chunked", `${s.rclone.url}up/c-${tag}.bin`]),
      [201],
      "PUT chunked rclone",
    );
    push("rclone chunked", GiB / r.totalS);
    await rm(join(s.data.peer, "up", `c-${tag}.bin`), { force: true });
    log(
      `    PUT 1 GiB: ${Object.entries(speeds)
        .map(([k, v]) => `${k} ${mb(v.at(-1)!)}`)
        .join(", ")} MB/s`,
    );
  }
  const m = Object.fromEntries(Object.entries(speeds).map(([k, v]) => [k, median(v)]));
  const rssGoal = (2 * CHUNK_SIZE) / 1e6 + 100;
  const ratio = m.gateway! / m.direct!;
  const ratioChunked = m["gateway chunked"]! / m.direct!;
  return [
    {
      scenario: "3 PUT 1 GiB",
      metric: "throughput, MB/s",
      cols: {
        gateway: mb(m.gateway!),
        direct: mb(m.direct!),
        "rclone serve": mb(m["rclone serve"]!),
      },
      ratio: `gateway/direct ${fmt(ratio, 2)}`,
      goal: `≥ 0.85; RSS < ${fmt(rssGoal)} MB`,
      met: yes(ratio >= 0.85 && peakLength < rssGoal),
      rss: `${fmt(peakLength)} MB`,
    },
    {
      scenario: "3 PUT 1 GiB, chunked (no length)",
      metric: "throughput, MB/s",
      cols: {
        gateway: mb(m["gateway chunked"]!),
        direct: mb(m.direct!),
        "rclone serve": mb(m["rclone chunked"]!),
      },
      ratio: `gateway/direct ${fmt(ratioChunked, 2)}`,
      goal: `reported; RSS < ${fmt(rssGoal)} MB`,
      met: yes(peakChunked < rssGoal),
      rss: `${fmt(peakChunked)} MB`,
    },
  ];
}

/** 4. PROPFIND Depth 1 of a 10,000-entry folder, cold and warm. */
async function listLargeFolder(s: Setting): Promise<Row[]> {
  const propfind = (url: string) =>
    curl(["-X", "PROPFIND", "-H", "Depth: 1", url]).then((r) =>
      expectStatus(r, [207], `PROPFIND ${url}`),
    );
  await s.rss.reset();
  const cold: number[] = [];
  const listCalls: number[] = [];
  const allCalls: number[] = [];
  let bytes = 0;
  for (let rep = 0; rep < REPS; rep++) {
    await resetStats(s);
    const r = await propfind(`${s.gateway.url}many-${rep}/`);
    const st = await stats(s);
    cold.push(r.totalS);
    bytes = r.bytes;
    listCalls.push(st.requests["GET /api/v4/file"] ?? 0);
    allCalls.push(totalCalls(st));
  }
  const warm: number[] = [];
  const peer: number[] = [];
  let peerBytes = 0;
  for (let rep = 0; rep < Math.max(5, REPS); rep++) {
    warm.push((await propfind(`${s.gateway.url}many-${REPS - 1}/`)).totalS);
    const p = await propfind(`${s.rclone.url}many/`);
    peer.push(p.totalS);
    peerBytes = p.bytes;
  }
  const peak = await s.rss.peakMB();
  const expected = Math.ceil(LISTING_SIZE / MAX_PAGE_SIZE);
  const w = median(warm);
  const p = median(peer);
  return [
    {
      scenario: "4 PROPFIND D1 10k, cold",
      metric: "time, ms (list calls / all calls)",
      cols: {
        gateway: `${ms(median(cold))} (${median(listCalls)} / ${median(allCalls)})`,
        "rclone serve": ms(p),
      },
      ratio: `gateway/rclone ${fmt(median(cold) / p, 2)}`,
      goal: `list calls = ${expected}`,
      met: yes(listCalls.every((c) => c === expected)),
      rss: `${fmt(peak)} MB`,
    },
    {
      scenario: "4 PROPFIND D1 10k, warm",
      metric: "time, ms (body MB)",
      cols: {
        gateway: `${ms(w)} (${fmt(bytes / 1e6, 1)})`,
        "rclone serve": `${ms(p)} (${fmt(peerBytes / 1e6, 1)})`,
      },
      ratio: `gateway/rclone ${fmt(w / p, 2)}`,
      goal: "≤ 0.35",
      met: yes(w / p <= 0.35),
      rss: "",
    },
  ];
}

/** 5. Small requests under load: wrk, 16 connections. */
async function manySmallRequests(s: Setting): Promise<Row[]> {
  const file = "small/file-00000.bin";
  const script = join(s.data.peer, "..", "propfind0.lua");
  expectStatus(
    await curl(["-X", "PROPFIND", "-H", "Depth: 0", `${s.gateway.url}${file}`]),
    [207],
    "prime",
  );
  expectStatus(await curl([`${s.gateway.url}${file}`]), [200], "prime GET");
  const rps: Record<string, number[]> = {};
  await s.rss.reset();
  for (let rep = 0; rep < REPS; rep++) {
    for (const [name, base] of [
      ["gateway", s.gateway.url],
      ["rclone serve", s.rclone.url],
    ] as const) {
      const pf = await wrk(`${base}${file}`, WRK_SECONDS, 16, script);
      const get = await wrk(`${base}${file}`, WRK_SECONDS, 16);
      if (pf.non2xx > 0 || get.non2xx > 0) {
        throw new Error(`wrk against ${name}: non-2xx answers\n${pf.output}\n${get.output}`);
      }
      (rps[`${name} propfind`] ??= []).push(pf.rps);
      (rps[`${name} get`] ??= []).push(get.rps);
      log(`    wrk ${name}: PROPFIND ${fmt(pf.rps)}/s, GET ${fmt(get.rps)}/s`);
    }
  }
  const peak = await s.rss.peakMB();
  const m = Object.fromEntries(Object.entries(rps).map(([k, v]) => [k, median(v)]));
  const ratio = m["gateway propfind"]! / m["rclone serve propfind"]!;
  return [
    {
      scenario: "5 wrk PROPFIND D0 (cached file)",
      metric: "requests/s",
      cols: {
        gateway: fmt(m["gateway propfind"]!),
        "rclone serve": fmt(m["rclone serve propfind"]!),
      },
      ratio: `gateway/rclone ${fmt(ratio, 2)}`,
      goal: "≥ 1",
      met: yes(ratio >= 1),
      rss: `${fmt(peak)} MB`,
    },
    {
      scenario: "5 wrk GET 6-byte file",
      metric: "requests/s",
      cols: { gateway: fmt(m["gateway get"]!), "rclone serve": fmt(m["rclone serve get"]!) },
      ratio: `gateway/rclone ${fmt(m["gateway get"]! / m["rclone serve get"]!, 2)}`,
      goal: "reported",
      met: "—",
      rss: "",
    },
  ];
}

/** 6. rclone copy of 1,000 files of 4 KiB up and back. */
async function rcloneManySmallFiles(s: Setting): Promise<Row[]> {
  const rclone = (args: string[]) =>
    run("rclone", ["--config", join(s.data.peer, "..", "rclone.conf"), "-q", ...args]);
  const remote = (url: string) => `:webdav,url='${url}',vendor=other:`;
  const times: Record<string, number[]> = {};
  const callsUp: number[] = [];
  const callsBack: number[] = [];
  const push = (k: string, v: number) => (times[k] ??= []).push(v);
  await s.rss.reset();
  for (let rep = 0; rep < REPS_COPY; rep++) {
    const tag = `l${s.latency}-r${rep}`;
    const back = join(s.work, "back", tag);
    await resetStats(s);
    push(
      "gateway up",
      (await rclone(["copy", s.data.src1000, `${remote(s.gateway.url)}c6-${tag}`])).ms,
    );
    callsUp.push(totalCalls(await stats(s)));
    await resetStats(s);
    push(
      "gateway back",
      (await rclone(["copy", `${remote(s.gateway.url)}c6-${tag}`, join(back, "gw")])).ms,
    );
    callsBack.push(totalCalls(await stats(s)));
    if ((await readdir(join(back, "gw"))).length !== SMALL_FILES)
      throw new Error("copy back lost files");
    push(
      "rclone up",
      (await rclone(["copy", s.data.src1000, `${remote(s.rclone.url)}c6-${tag}`])).ms,
    );
    push(
      "rclone back",
      (await rclone(["copy", `${remote(s.rclone.url)}c6-${tag}`, join(back, "peer")])).ms,
    );
    await rm(join(s.data.peer, `c6-${tag}`), { recursive: true, force: true });
    log(
      `    rclone copy: ${Object.entries(times)
        .map(([k, v]) => `${k} ${fmt(v.at(-1)! / 1000, 2)} s`)
        .join(", ")}`,
    );
  }
  const peak = await s.rss.peakMB();
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const up = median(callsUp) / SMALL_FILES;
  const down = median(callsBack) / SMALL_FILES;
  const sec = (v: number) => fmt(v / 1000, 2);
  return [
    {
      scenario: "6 rclone copy 1,000 × 4 KiB, up",
      metric: "time, s (upstream calls/file)",
      cols: {
        gateway: `${sec(m["gateway up"]!)} (${fmt(up, 2)})`,
        "rclone serve": sec(m["rclone up"]!),
      },
      ratio: `gateway/rclone time ${fmt(m["gateway up"]! / m["rclone up"]!, 2)}`,
      goal: "calls/file ≤ 3",
      met: yes(up <= 3),
      rss: `${fmt(peak)} MB`,
    },
    {
      scenario: "6 rclone copy 1,000 × 4 KiB, back",
      metric: "time, s (upstream calls/file)",
      cols: {
        gateway: `${sec(m["gateway back"]!)} (${fmt(down, 2)})`,
        "rclone serve": sec(m["rclone back"]!),
      },
      ratio: `gateway/rclone time ${fmt(m["gateway back"]! / m["rclone back"]!, 2)}`,
      goal: "calls/file ≤ 3",
      met: yes(down <= 3),
      rss: "",
    },
  ];
}

const SCENARIOS: Record<number, (s: Setting) => Promise<Row[]>> = {
  1: getLargeFile,
  2: seekInLargeFile,
  3: putLargeFile,
  4: listLargeFolder,
  5: manySmallRequests,
  6: rcloneManySmallFiles,
};

// ---------------------------------------------------------------------------------------------
// Storage policies: one emulator and gateway per policy setting, no nginx or rclone serve

interface StorageRun {
  latency: number;
  work: string;
  data: BigFile;
}

/** Gateway vs direct: the MB/s of each and their ratio against `goal`. */
function throughputRow(scenario: string, m: Record<string, number>, goal: number, peak: number) {
  const ratio = m.gateway! / m.direct!;
  return {
    scenario,
    metric: "throughput, MB/s",
    cols: { gateway: mb(m.gateway!), direct: mb(m.direct!) },
    ratio: `gateway/direct ${fmt(ratio, 2)}`,
    goal: `≥ ${fmt(goal, 2)}`,
    met: yes(ratio >= goal),
    rss: `${fmt(peak)} MB`,
  };
}

/** Runs `use` on a stack of its own (emulator `flags`), stopped afterwards. */
async function withStack<T>(
  r: StorageRun,
  name: string,
  flags: readonly string[],
  use: (st: Stack) => Promise<T>,
  prepare: (emulatorUrl: string) => Promise<void> = async () => undefined,
): Promise<T> {
  const st = await startStack(r.latency, join(r.work, name), flags, prepare);
  try {
    return await use(st);
  } finally {
    await stopStack(st);
  }
}

/**
 * The S3 upload of `parts` without the gateway, as the gateway does it: the session, the parts
 * PUT to their presigned URLs by one curl (`parallel` at a time), the completion POST, the
 * callback. Bytes per second, timed from the session to the callback's answer.
 */
async function directS3Put(st: Stack, uri: string, parts: string[], parallel: number) {
  const started = process.hrtime.bigint();
  const session = await st.api.createUploadSession({ uri, size: GiB, replace: false });
  const urls = session.upload_urls ?? [];
  if (session.chunk_size !== CHUNK_SIZE || urls.length !== parts.length || !session.completeURL)
    throw new Error(`unexpected upload session ${JSON.stringify(session).slice(0, 300)}`);
  const sent = await curlEach(
    parts.map((file, i) => ["-T", file, urls[i]!]),
    parallel,
    "etag",
  );
  const etags = urls.map((url) => sent.find((t) => t.url === url && t.status === 200)?.header);
  if (etags.some((etag) => !etag)) throw new Error(`part PUTs: ${JSON.stringify(sent)}`);
  const xml = etags
    .map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${etag}</ETag></Part>`)
    .join("");
  const complete = ["-X", "POST", "-H", "content-type: application/xml"];
  complete.push("--data-binary", `<CompleteMultipartUpload>${xml}</CompleteMultipartUpload>`);
  expectStatus(await curl([...complete, session.completeURL]), [200], "CompleteMultipartUpload");
  await st.api.uploadCallback("s3", session.session_id, session.callback_secret);
  const seconds = secondsSince(started);
  const { size } = await st.api.info(uri);
  if (size !== GiB) throw new Error(`direct upload left ${size} bytes`);
  return GiB / seconds;
}

/** 7. PUT of 1 GiB to an S3 policy, chunk_concurrency 1 and 4: gateway vs the same parts direct. */
async function s3PutLargeFile(r: StorageRun): Promise<Row[]> {
  const rows: Row[] = [];
  for (const cc of [1, 4]) {
    const flags = ["--policy", "s3", "--chunk-concurrency", String(cc)];
    const row = await withStack(r, `s3-cc${cc}`, flags, async (st) => {
      const speeds: Record<string, number[]> = { gateway: [], direct: [] };
      let peak = 0;
      for (let rep = 0; rep < REPS; rep++) {
        const names = [`gw-${rep}.bin`, `direct-${rep}.bin`];
        await st.rss.reset();
        const gw = await curl(["-T", r.data.big, `${st.gateway.url}${names[0]}`]);
        peak = Math.max(peak, await st.rss.peakMB());
        speeds.gateway!.push(GiB / expectStatus(gw, [201], "PUT gateway").totalS);
        const uris = names.map((name) => `cloudreve://my/${name}`);
        speeds.direct!.push(await directS3Put(st, uris[1]!, r.data.chunkFiles, cc));
        // Only the disk is freed: every repetition writes new names.
        await st.api.remove(uris, true);
        log(
          `    S3 PUT 1 GiB, cc ${cc}: gateway ${mb(speeds.gateway!.at(-1)!)} MB/s, direct ${mb(speeds.direct!.at(-1)!)} MB/s`,
        );
      }
      return throughputRow(`7 S3 PUT 1 GiB, chunk_concurrency ${cc}`, medians(speeds), 0.85, peak);
    });
    rows.push(row);
  }
  return rows;
}

/** 8. GET of 1 GiB stored on the S3 origin: gateway vs the presigned URL. */
async function s3GetLargeFile(r: StorageRun): Promise<Row[]> {
  const uri = "cloudreve://my/big/file-00000.bin";
  const { m, peak } = await withStack(
    r,
    "s3-get",
    ["--policy", "s3"],
    async (st) => {
      const { url: signed } = await st.api.fileUrl(uri);
      if (signed.startsWith(st.emulator.url)) throw new Error(`not a storage URL: ${signed}`);
      return getSpeeds({ gateway: `${st.gateway.url}big/file-00000.bin`, direct: signed }, st.rss);
    },
    async (url) => void (await seed(url, "cloudreve://my/big", 1, GiB)),
  );
  return [throughputRow("8 S3 GET 1 GiB", m, 0.9, peak)];
}

/**
 * 9. Relay PUT of 5 GiB (chunk_size 0: the whole file is one chunk POSTed to Cloudreve) from a
 * generated stream: the gateway's peak RSS, and the disk that it (spooling the chunk for a
 * retry) and the emulator (storing it) take.
 */
async function relayPutHugeFile(r: StorageRun): Promise<Row[]> {
  const size = RELAY_SIZE;
  const uri = "cloudreve://my/relay.bin";
  return withStack(r, "relay", ["--policy", "s3", "--relay"], async (st) => {
    const idle = await st.rss.currentMB();
    await st.rss.reset();
    const disk = sampleMax(async () => {
      const used = [await diskBytes(st.tmp.gateway), await diskBytes(st.tmp.emulator)];
      return [...used, used[0]! + used[1]!];
    });
    const started = process.hrtime.bigint();
    const res = await request(`${st.gateway.url}relay.bin`, {
      method: "PUT",
      headers: { "content-length": String(size), "content-type": "application/octet-stream" },
      body: Readable.from(pattern(size)),
    });
    await res.body.dump();
    const seconds = secondsSince(started);
    const peak = await st.rss.peakMB();
    const [gwDisk = NaN, emuDisk = NaN, bothDisk = NaN] = await disk.stop();
    if (res.statusCode !== 201) throw new Error(`relay PUT: HTTP ${res.statusCode}`);
    const stored = await st.api.info(uri);
    if (stored.size !== size) throw new Error(`relay PUT left ${stored.size} bytes`);
    const gb = (bytes: number) => fmt(bytes / 1e9, 1);
    log(
      `    relay PUT ${fmt(size / GiB)} GiB: ${mb(size / seconds)} MB/s, peak RSS ${fmt(peak)} MB (idle ${fmt(idle)} MB)`,
    );
    // chunk_size 0: 2 × 0 + 100 MB, i.e. no buffer of the chunk (the whole file) in memory.
    const goal = 100;
    return [
      {
        scenario: `9 relay PUT ${fmt(size / GiB)} GiB (chunk_size 0)`,
        metric: "gateway peak RSS, MB (idle before)",
        cols: { gateway: `${fmt(peak)} (${fmt(idle)})` },
        ratio: `peak − idle ${fmt(peak - idle)} MB`,
        goal: `RSS < 2 × 0 + 100 = ${goal} MB`,
        met: yes(peak < goal),
        rss: `${fmt(peak)} MB`,
      },
      {
        scenario: `9 relay PUT ${fmt(size / GiB)} GiB (chunk_size 0)`,
        metric: "throughput, MB/s; peak disk, GB: gateway spool + emulator (together)",
        cols: {
          gateway: `${mb(size / seconds)}; ${gb(gwDisk)} + ${gb(emuDisk)} (${gb(bothDisk)})`,
        },
        ratio: "",
        goal: "reported",
        met: "—",
        rss: "",
      },
    ];
  });
}

const STORAGE_SCENARIOS: Record<number, (r: StorageRun) => Promise<Row[]>> = {
  7: s3PutLargeFile,
  8: s3GetLargeFile,
  9: relayPutHugeFile,
};

// ---------------------------------------------------------------------------------------------
// Scenario 10: a Finder-like poller while another client writes through the API

/** The folders the poller lists, three files each. */
const POLL_FOLDERS = Array.from({ length: 20 }, (_, i) => `poll-${String(i).padStart(2, "0")}`);
/** Finder asks again for each open folder every 2 s. */
const POLL_EVERY_MS = 2000;
/** The writer's pause before each change, drawn from this range. */
const WRITE_PAUSE_MS = [8000, 12_000] as const;
/** Cloudreve's `fs_event_push_debounce` default, which the emulator keeps here. */
const DEBOUNCE_S = 5;
/**
 * With events, a probe lists each changed folder this often from the write until the change
 * shows: the moment the gateway first lists it, to 0.1 s. Before the event the probe is answered
 * from the cache (TTL 600 s) and after it makes the one listing call the poller would have made,
 * so it adds no upstream call; with a TTL alone it would move the refetches, so it runs only there.
 */
const PROBE_EVERY_MS = 100;
const PROBE_LIMIT_MS = 30_000;
/** Polling goes on after the window until every change is seen, at most this long (TTL 30 s + 2 polls). */
const DRAIN_MS = 40_000;
/** The routes the gateway calls while it only lists; the writer calls `POST /api/v4/file/create`. */
const GATEWAY_ROUTES = {
  list: "GET /api/v4/file",
  info: "GET /api/v4/file/info",
  events: "GET /api/v4/file/events",
};
const WRITER_ROUTE = "POST /api/v4/file/create";

interface PollConfig {
  name: string;
  emulatorFlags: string[];
  gatewayFlags: string[];
  /** How the gateway's log says whether it follows change events. */
  logLine: RegExp;
  /** Probes each change (see PROBE_EVERY_MS). */
  probe: boolean;
}
const POLL_CONFIGS: PollConfig[] = [
  {
    name: "events on",
    emulatorFlags: [],
    gatewayFlags: ["--cache-ttl-seconds", "30", "--cache-ttl-with-events-seconds", "600"],
    logLine: /following Cloudreve's change events/,
    probe: true,
  },
  {
    name: "TTL 30 s",
    emulatorFlags: ["--no-events"],
    gatewayFlags: ["--cache-ttl-seconds", "30"],
    logLine: /Cloudreve sends no change events/,
    probe: false,
  },
  {
    name: "TTL 5 s",
    emulatorFlags: ["--no-events"],
    gatewayFlags: ["--cache-ttl-seconds", "5"],
    logLine: /Cloudreve sends no change events/,
    probe: false,
  },
];

/** One change by the writer, as one configuration saw it; times in ms (`performance.now()`). */
interface Change {
  folder: string;
  name: string;
  /** When the writer's call answered; undefined while it runs. */
  written?: number;
  /** The latest PROPFIND sent after `written` whose answer did not list it. */
  lastMiss?: number;
  /** When the first PROPFIND answer listing it arrived. */
  seen?: number;
  /** When the probe's first answer listing it arrived. */
  probed?: number;
}

interface Polled {
  config: PollConfig;
  stack: Stack;
  changes: Change[];
  /** The probe's connection, with `config.probe`. */
  probe?: Pool;
  propfinds: number;
  failed: number;
  /** Upstream calls by route over the window. */
  calls: Record<string, number>;
  peakRss: number;
}

/** A small seeded generator (mulberry32): every run writes the same changes at the same times. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The answer of a PROPFIND Depth 1 (allprop) of `folder`; undefined when it failed. */
async function listFolder(pool: Pool, folder: string): Promise<string | undefined> {
  try {
    const res = await pool.request({
      path: `/${folder}/`,
      method: "PROPFIND",
      headers: { depth: "1" },
    });
    const body = await res.body.text();
    return res.statusCode === 207 ? body : undefined;
  } catch {
    return undefined;
  }
}

const lists = (body: string, c: Change) => body.includes(`/${c.folder}/${c.name}`);

/** One poll of `folder`; notes which pending changes it lists. */
async function pollFolder(p: Polled, pool: Pool, folder: string): Promise<void> {
  const sent = performance.now();
  const body = await listFolder(pool, folder);
  const answered = performance.now();
  p.propfinds++;
  if (body === undefined) {
    p.failed++;
    return;
  }
  for (const c of p.changes) {
    if (c.folder !== folder || c.written === undefined || c.seen !== undefined) continue;
    if (lists(body, c)) c.seen = answered;
    else if (sent >= c.written) c.lastMiss = Math.max(c.lastMiss ?? 0, sent);
  }
}

/** Lists the changed folder every PROBE_EVERY_MS from the write until the change shows. */
async function probeChange(pool: Pool, c: Change): Promise<void> {
  while (performance.now() < c.written! + PROBE_LIMIT_MS) {
    const body = await listFolder(pool, c.folder);
    if (body !== undefined && lists(body, c)) {
      c.probed = performance.now();
      return;
    }
    await sleep(PROBE_EVERY_MS);
  }
}

/**
 * Lists every folder every 2 s (all 20 at once on 4 connections, as a file manager with the
 * folders open does) from `start` until `done()`.
 */
async function poller(p: Polled, start: number, done: () => boolean, onTick?: () => void) {
  const pool = new Pool(new URL(p.stack.gateway.url).origin, { connections: 4 });
  try {
    for (let tick = 0; !done(); tick++) {
      await sleep(Math.max(0, start + tick * POLL_EVERY_MS - performance.now()));
      onTick?.();
      await Promise.all(POLL_FOLDERS.map((folder) => pollFolder(p, pool, folder)));
    }
  } finally {
    await pool.close();
  }
}

/**
 * Every 8–12 s until the window ends, a new file or folder with a unique name in a random one of
 * the folders, made at the same moment in every configuration's emulator, straight through the
 * API (the bench's own session, as the web UI would).
 */
async function writer(polled: Polled[], start: number, windowMs: number): Promise<void> {
  const random = seededRandom(10);
  const probes: Promise<void>[] = [];
  for (let i = 0; ; i++) {
    const [low, high] = WRITE_PAUSE_MS;
    const pause = low + random() * (high - low);
    const folder = POLL_FOLDERS[Math.floor(random() * POLL_FOLDERS.length)]!;
    const folderKind = random() < 0.5;
    const name = `w-${String(i).padStart(3, "0")}-${folderKind ? "dir" : "file.txt"}`;
    if (performance.now() + pause > start + windowMs) break;
    await sleep(pause);
    await Promise.all(
      polled.map(async (p) => {
        const change: Change = { folder, name };
        p.changes.push(change);
        await p.stack.api.create(
          `cloudreve://my/${folder}/${name}`,
          folderKind ? "folder" : "file",
          true,
        );
        change.written = performance.now();
        if (p.probe) probes.push(probeChange(p.probe, change));
      }),
    );
  }
  await Promise.all(probes);
}

/**
 * 10. The three configurations side by side, concurrently: each its own emulator and gateway,
 * its own poller, one writer making the same changes in all three.
 */
async function pollingStaleness(latency: number, work: string, seconds: number) {
  const polled: Polled[] = [];
  try {
    for (const [i, config] of POLL_CONFIGS.entries()) {
      log(`  starting ${config.name}`);
      const dir = join(work, `config-${i}`);
      const stack = await startStack(
        latency,
        dir,
        config.emulatorFlags,
        async (url) => {
          for (const folder of POLL_FOLDERS) await seed(url, `cloudreve://my/${folder}`, 3, 6);
        },
        config.gatewayFlags,
      );
      polled.push({ config, stack, changes: [], propfinds: 0, failed: 0, calls: {}, peakRss: 0 });
      if (config.probe) polled.at(-1)!.probe = new Pool(new URL(stack.gateway.url).origin);
      await waitForLine(join(dir, "gateway.log"), config.logLine);
    }
    // Everything listed once (cached), the writer logged in; then the counts start at zero.
    for (const p of polled) {
      const pool = new Pool(new URL(p.stack.gateway.url).origin, { connections: 4 });
      await Promise.all(POLL_FOLDERS.map((folder) => pollFolder(p, pool, folder)));
      await pool.close();
      if (p.failed > 0) throw new Error(`${p.config.name}: the first listings failed`);
      await p.stack.api.me();
      p.propfinds = 0;
      await p.stack.rss.reset();
      await resetStats(p.stack);
    }
    const windowMs = seconds * 1000;
    const loads: number[] = [];
    const start = performance.now();
    log(`  polling for ${seconds} s while the writer writes`);
    let writing = true;
    // A failed write ends the pollers at once (the error is thrown below).
    let broken = false;
    const write = writer(polled, start, windowMs)
      .catch((err: unknown) => {
        broken = true;
        throw err;
      })
      .finally(() => (writing = false));
    const counted = (async () => {
      await sleep(windowMs);
      for (const p of polled) p.calls = (await stats(p.stack)).requests;
    })();
    const done = (p: Polled) => () => {
      const elapsed = performance.now() - start;
      if (broken) return true;
      if (elapsed < windowMs || writing) return false;
      return elapsed >= windowMs + DRAIN_MS || p.changes.every((c) => c.seen !== undefined);
    };
    await Promise.all([
      write,
      counted,
      ...polled.map((p, i) =>
        poller(p, start, done(p), i === 0 ? () => loads.push(loadavg()[0]!) : undefined),
      ),
    ]);
    for (const p of polled) {
      p.peakRss = await p.stack.rss.peakMB();
      const each = p.changes.map((c) =>
        c.seen === undefined
          ? `${c.name}: unseen`
          : `${fmt(((c.lastMiss ?? c.written!) - c.written!) / 1000, 1)}–${fmt((c.seen - c.written!) / 1000, 1)}${c.probed === undefined ? "" : ` (probe ${fmt((c.probed - c.written!) / 1000, 1)})`}`,
      );
      log(`    ${p.config.name}, staleness per change (lower bound–seen, s): ${each.join(", ")}`);
    }
    return { rows: pollingRows(polled, seconds), loads };
  } finally {
    for (const p of polled) {
      await p.probe?.close();
      await stopStack(p.stack).catch(() => undefined);
    }
  }
}

function pollingRows(polled: readonly Polled[], seconds: number): Row[] {
  const minutes = seconds / 60;
  const perMinute = (p: Polled, route: string) => (p.calls[route] ?? 0) / minutes;
  const gatewayCalls = (p: Polled) =>
    Object.values(GATEWAY_ROUTES).reduce((sum, route) => sum + perMinute(p, route), 0);
  const other = (p: Polled) =>
    Object.entries(p.calls)
      .filter(([route]) => route !== WRITER_ROUTE && !Object.values(GATEWAY_ROUTES).includes(route))
      .reduce((sum, [, n]) => sum + n, 0);
  const staleness = (p: Polled) => {
    const seen = p.changes.flatMap((c) =>
      c.seen === undefined ? [] : [(c.seen - c.written!) / 1000],
    );
    const lower = p.changes.flatMap((c) =>
      c.seen === undefined ? [] : [((c.lastMiss ?? c.written!) - c.written!) / 1000],
    );
    const probed = p.changes.flatMap((c) =>
      c.probed === undefined ? [] : [(c.probed - c.written!) / 1000],
    );
    return { seen, lower, probed, unseen: p.changes.length - seen.length };
  };
  const cols = (value: (p: Polled) => string) =>
    Object.fromEntries(polled.map((p) => [p.config.name, value(p)]));
  const s = (v: number) => fmt(v, 1);
  const spread = (values: number[]) =>
    values.length ? `${s(median(values))} / ${s(Math.max(...values))}` : "n/a";
  const [events, ttl30] = polled;
  const goalS = DEBOUNCE_S + 1;
  const eventStale = staleness(events!);
  const fewer = gatewayCalls(events!) < gatewayCalls(ttl30!);
  const scenario = `10 poll 20 folders every 2 s, ${fmt(seconds)} s`;
  return [
    {
      scenario,
      metric: "upstream calls/min: list + info + events (list / info / events)",
      cols: cols(
        (p) =>
          `${fmt(gatewayCalls(p), 1)} (${Object.values(GATEWAY_ROUTES)
            .map((route) => fmt(perMinute(p, route), 1))
            .join(" / ")})`,
      ),
      ratio: `events/TTL 30 s ${fmt(gatewayCalls(events!) / gatewayCalls(ttl30!), 2)}`,
      goal: "events < TTL 30 s",
      met: yes(fewer),
      rss: "",
    },
    {
      scenario,
      metric: "staleness seen by the poller, s: median / max (first answer listing it − write)",
      cols: cols((p) => spread(staleness(p).seen)),
      ratio: "",
      goal: `events ≤ debounce + 1 s = ${goalS} s`,
      met: yes(eventStale.unseen === 0 && Math.max(...eventStale.seen) <= goalS),
      rss: "",
    },
    {
      scenario,
      metric: "staleness, lower bound, s: median / max (last PROPFIND sent without it − write)",
      cols: cols((p) => spread(staleness(p).lower)),
      ratio: "",
      goal: `events ≤ ${goalS} s`,
      met: yes(eventStale.unseen === 0 && Math.max(...eventStale.lower) <= goalS),
      rss: "",
    },
    {
      scenario,
      metric: `events on: first listed by a probe PROPFIND every ${PROBE_EVERY_MS} ms from the write, s: median / max`,
      cols: cols((p) => (p.config.probe ? spread(staleness(p).probed) : "not probed")),
      ratio: "",
      goal: `events ≤ ${goalS} s`,
      met: yes(
        eventStale.probed.length === events!.changes.length &&
          Math.max(...eventStale.probed) <= goalS,
      ),
      rss: "",
    },
    {
      scenario,
      metric:
        "changes seen / written; PROPFINDs (failed); other upstream calls; gateway peak RSS, MB",
      cols: cols(
        (p) =>
          `${p.changes.length - staleness(p).unseen} / ${p.changes.length}; ${fmt(p.propfinds)} (${p.failed}); ${other(p)}; ${fmt(p.peakRss)}`,
      ),
      ratio: "",
      goal: "all seen, none failed",
      met: yes(polled.every((p) => staleness(p).unseen === 0 && p.failed === 0)),
      rss: "",
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Scenario 11: eight users at once, one of them uploading a large file

/** The emulator's eight extra accounts; the gateway's users have the same names and passwords. */
const MANY_USERS = Array.from({ length: 8 }, (_, i) => ({
  email: `u${i + 1}@example.com`,
  password: `password${i + 1}`,
}));
/** Users 1–7 list (and upload a smaller file once); user 8 uploads the large file. */
const LISTERS = MANY_USERS.slice(0, 7);
const UPLOADER = MANY_USERS[7]!;
/** Files in the folder each user lists. */
const USER_FOLDER_FILES = 200;
/** What each lister uploads once while user 8 uploads the large file. */
const USER_SMALL_UPLOAD = 64 * MiB;
const USER_BIG_UPLOAD = Number(opts["users-gib"]) * GiB;
/** Listings per user while the gateway is idle. */
const USER_LISTINGS = Number(opts["users-listings"]);
/** The calls a listing makes upstream: the folder's entries, and file info. */
const LISTING_ROUTES = ["GET /api/v4/file", "GET /api/v4/file/info"];
const listingCalls = (st: Stats) =>
  LISTING_ROUTES.reduce((sum, route) => sum + (st.requests[route] ?? 0), 0);

interface UsersConfig {
  name: string;
  /** All eight users in the gateway's own account (users mode) rather than each in their own. */
  shared: boolean;
  /** The gateway's cache flags. */
  cacheFlags: string[];
}
const USERS_CONFIGS: UsersConfig[] = [
  { name: "own accounts, TTL 0", shared: false, cacheFlags: ["--cache-ttl-seconds", "0"] },
  { name: "one shared account, TTL 0", shared: true, cacheFlags: ["--cache-ttl-seconds", "0"] },
  { name: "own accounts, default cache", shared: false, cacheFlags: [] },
  { name: "one shared account, default cache", shared: true, cacheFlags: [] },
];

type User = (typeof MANY_USERS)[number];
const basic = (u: User) => `Basic ${Buffer.from(`${u.email}:${u.password}`).toString("base64")}`;

/** One PROPFIND Depth 1 of a user's `/list/`; times in ms (`performance.now()`). */
interface Listing {
  start: number;
  ms: number;
  /** 207 with the folder and its USER_FOLDER_FILES files. */
  ok: boolean;
}

/** A WebDAV request as `u` on `pool`: the status and the whole body. */
async function davAs(
  pool: Pool,
  u: User,
  method: string,
  path: string,
  headers: Record<string, string> = {},
) {
  const res = await pool.request({
    path,
    method,
    headers: { authorization: basic(u), ...headers },
  });
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
}

const responses = (xml: string) => xml.match(/<([A-Za-z]+:)?response[\s>]/g)?.length ?? 0;

async function timedListing(pool: Pool, u: User): Promise<Listing> {
  const start = performance.now();
  let ok = false;
  try {
    const r = await davAs(pool, u, "PROPFIND", "/list/", { depth: "1" });
    ok = r.status === 207 && responses(r.body.toString("utf8")) === USER_FOLDER_FILES + 1;
  } catch {
    ok = false;
  }
  return { start, ms: performance.now() - start, ok };
}

/** Lists `u`'s folder again and again, one at a time, until `stop(listingsSoFar)`. */
async function listingLoop(pool: Pool, u: User, stop: (n: number) => boolean) {
  const listings: Listing[] = [];
  while (!stop(listings.length)) listings.push(await timedListing(pool, u));
  return listings;
}

/** The size PROPFIND Depth 0 gives for `path` (as `u`). */
async function davSize(pool: Pool, u: User, path: string): Promise<number> {
  const r = await davAs(pool, u, "PROPFIND", path, { depth: "0" });
  const size = /getcontentlength>(\d+)</.exec(r.body.toString("utf8"))?.[1];
  if (r.status !== 207 || size === undefined) throw new Error(`PROPFIND ${path}: HTTP ${r.status}`);
  return Number(size);
}

/** A ranged GET of 1 MiB at 90% of `path` (as `u`), compared with the pattern (byte i = i % 251). */
async function checkPatternRange(pool: Pool, u: User, path: string, size: number) {
  const start = Math.floor(size * 0.9);
  const end = Math.min(size, start + MiB) - 1;
  const r = await davAs(pool, u, "GET", path, { range: `bytes=${start}-${end}` });
  const bad = r.body.findIndex((byte, i) => byte !== (start + i) % 251);
  if (r.status !== 206 || r.body.length !== end - start + 1 || bad >= 0) {
    throw new Error(
      `GET ${path} bytes ${start}-${end}: HTTP ${r.status}, ${r.body.length} bytes, first wrong byte at ${bad}`,
    );
  }
}

/** One round in one configuration: the idle listings, then the busy ones with the uploads. */
interface UsersRound {
  idle: Listing[];
  busy: Listing[];
  /** Listings of `busy` started before the last of the 64 MiB uploads answered. */
  during8: Listing[];
  /** …and after: only the large upload still running. */
  alone: Listing[];
  /** Upstream list and info calls, idle and busy (busy: with the uploads' own few info calls). */
  callsIdle: number;
  callsBusy: number;
  /** MiB/s per user, u1…u8. */
  mibPerS: number[];
  /** All eight uploads' bytes / from their start to the last answer, MiB/s. */
  together: number;
  peakRss: number;
  /** CPU, % of one core: the gateway, the emulator, the whole machine; idle and busy. */
  cpuIdle: number[];
  cpuBusy: number[];
}

/** One configuration's emulator and gateway, a connection per user, and its rounds so far. */
interface UsersRun {
  config: UsersConfig;
  stack: Stack;
  pools: Map<User, Pool>;
  rounds: UsersRound[];
}

/** Listings before each round, per user, not counted (JIT, connections, sign-in remembered). */
const USER_WARM_UP_LISTINGS = 20;

/**
 * One round: a warm-up, idle listings, then busy ones while the eight uploads (named for
 * `round`) run; the uploads are checked, then deleted (for good: `--permanent-delete`), so the
 * emulator's disk holds one round's uploads at most.
 */
async function manyUsersRound(
  { stack, pools }: UsersRun,
  files: { big: string; small: string },
  round: number,
): Promise<UsersRound> {
  for (const u of MANY_USERS) {
    if (!(await timedListing(pools.get(u)!, u)).ok) throw new Error(`${u.email} cannot list`);
  }
  await Promise.all(
    LISTERS.map((u) => listingLoop(pools.get(u)!, u, (n) => n >= USER_WARM_UP_LISTINGS)),
  );
  await resetStats(stack);
  const pids = [stack.gateway.pid, stack.emulator.pid];
  let cpu = await cpuMeter(pids);
  const idle = (
    await Promise.all(LISTERS.map((u) => listingLoop(pools.get(u)!, u, (n) => n >= USER_LISTINGS)))
  ).flat();
  const cpuIdle = await cpu.stop();
  const callsIdle = listingCalls(await stats(stack));

  await resetStats(stack);
  await stack.rss.reset();
  cpu = await cpuMeter(pids);
  let uploading = true;
  const started = performance.now();
  const [big, small] = [`big-${round}.bin`, `small-${round}.bin`];
  const put = async (u: User, file: string, name: string) => {
    const r = await curl([
      "-u",
      `${u.email}:${u.password}`,
      "-T",
      file,
      `${stack.gateway.url}${name}`,
    ]);
    expectStatus(r, [201], `PUT ${name} as ${u.email}`);
    return { seconds: r.totalS, end: performance.now() };
  };
  const bigPut = put(UPLOADER, files.big, big).finally(() => (uploading = false));
  const smallPuts = Promise.all(LISTERS.map((u) => put(u, files.small, small)));
  const listings = Promise.all(LISTERS.map((u) => listingLoop(pools.get(u)!, u, () => !uploading)));
  // Every promise settles: a failed large upload ends the listings (finally above) first.
  const [bigR, smallR, busyR] = await Promise.allSettled([bigPut, smallPuts, listings]);
  if (bigR.status === "rejected") throw bigR.reason;
  if (smallR.status === "rejected") throw smallR.reason;
  if (busyR.status === "rejected") throw busyR.reason;
  const cpuBusy = await cpu.stop();
  const busy = busyR.value.flat();
  const peakRss = await stack.rss.peakMB();
  const callsBusy = listingCalls(await stats(stack));
  const smallsEnd = Math.max(...smallR.value.map((r) => r.end));
  const lastEnd = Math.max(smallsEnd, bigR.value.end);

  // The bytes arrived: sizes, and a range of the large file against the pattern; then away.
  const uploader = pools.get(UPLOADER)!;
  const bigSize = await davSize(uploader, UPLOADER, `/${big}`);
  if (bigSize !== USER_BIG_UPLOAD) throw new Error(`${big} holds ${bigSize} bytes`);
  await checkPatternRange(uploader, UPLOADER, `/${big}`, USER_BIG_UPLOAD);
  for (const u of LISTERS) {
    const size = await davSize(pools.get(u)!, u, `/${small}`);
    if (size !== USER_SMALL_UPLOAD) throw new Error(`${u.email}'s ${small} holds ${size} bytes`);
  }
  const uploads: [User, string][] = [
    [UPLOADER, big],
    ...LISTERS.map((l): [User, string] => [l, small]),
  ];
  for (const [u, name] of uploads) {
    const r = await davAs(pools.get(u)!, u, "DELETE", `/${name}`);
    if (r.status !== 204 && r.status !== 200) throw new Error(`DELETE ${name}: HTTP ${r.status}`);
  }
  const total = USER_BIG_UPLOAD + LISTERS.length * USER_SMALL_UPLOAD;
  return {
    idle,
    busy,
    during8: busy.filter((l) => l.start < smallsEnd),
    alone: busy.filter((l) => l.start >= smallsEnd),
    callsIdle,
    callsBusy,
    mibPerS: [
      ...smallR.value.map((r) => USER_SMALL_UPLOAD / MiB / r.seconds),
      USER_BIG_UPLOAD / MiB / bigR.value.seconds,
    ],
    together: total / MiB / ((lastEnd - started) / 1000),
    peakRss,
    cpuIdle,
    cpuBusy,
  };
}

/**
 * One configuration's emulator (eight accounts, each user's folder seeded) and gateway, every
 * user signed in once (a Cloudreve login or an scrypt check, then remembered).
 */
async function openUsersRun(config: UsersConfig, latency: number, dir: string): Promise<UsersRun> {
  await mkdir(dir, { recursive: true });
  const emulatorFlags = MANY_USERS.flatMap((u) => ["--user", `${u.email}:${u.password}`]);
  const first = `${MANY_USERS[0]!.email}:${MANY_USERS[0]!.password}`;
  let auth: StackAuth;
  if (config.shared) {
    // Users mode: eight gateway users, each with a folder of the gateway's own account as root.
    const users = await Promise.all(
      MANY_USERS.map(async (u, i) => ({
        name: u.email,
        passwordHash: await hashPassword(u.password),
        root: `/u${i + 1}`,
      })),
    );
    const file = join(dir, "gateway-config.json");
    await writeFile(file, `${JSON.stringify({ users }, null, 2)}\n`);
    auth = {
      gatewayFlags: ["--config", file, "--email", EMAIL, "--password", PASSWORD],
      user: first,
    };
  } else {
    auth = { gatewayFlags: ["--auth", "cloudreve"], user: first };
  }
  const stack = await startStack(
    latency,
    dir,
    emulatorFlags,
    async (url) => {
      for (const [i, u] of MANY_USERS.entries()) {
        if (config.shared) await seed(url, `cloudreve://my/u${i + 1}/list`, USER_FOLDER_FILES, 6);
        else await seed(url, "cloudreve://my/list", USER_FOLDER_FILES, 6, u.email);
      }
    },
    [...config.cacheFlags, "--permanent-delete"],
    auth,
  );
  const origin = new URL(stack.gateway.url).origin;
  const pools = new Map(MANY_USERS.map((u) => [u, new Pool(origin, { connections: 1 })]));
  const run = { config, stack, pools, rounds: [] };
  try {
    for (const u of MANY_USERS) {
      const l = await timedListing(pools.get(u)!, u);
      if (!l.ok) throw new Error(`${config.name}: ${u.email} cannot list /list/`);
    }
    return run;
  } catch (err) {
    await closeUsersRun(run);
    throw err;
  }
}

async function closeUsersRun(r: UsersRun): Promise<void> {
  for (const pool of r.pools.values()) await pool.close();
  await stopStack(r.stack);
}

/** p50 / p99 / max of the listings that answered, in ms; "(n)" and failures. */
function latencyCell(listings: readonly Listing[]): string {
  const ok = listings.filter((l) => l.ok).map((l) => l.ms);
  const failed = listings.length - ok.length;
  const msOf = (v: number) => fmt(v, v < 10 ? 2 : 1);
  if (ok.length === 0) return `n/a (0${failed ? `, ${failed} failed` : ""})`;
  const spread = [50, 99, 100].map((p) => msOf(percentile(ok, p))).join(" / ");
  return `${spread} (${fmt(ok.length)}${failed ? `, **${failed} failed**` : ""})`;
}

const p99 = (listings: readonly Listing[]) =>
  percentile(
    listings.filter((l) => l.ok).map((l) => l.ms),
    99,
  );

const USERS_LATENCY_COLUMNS = [
  "idle: p50 / p99 / max (listings)",
  "busy: p50 / p99 / max (listings)",
  "busy, while all 8 upload: p50 / p99 / max",
  "busy, the large upload alone: p50 / p99 / max",
  "upstream list + info calls per listing: idle / busy",
];

function manyUsersRows(runs: readonly UsersRun[]): { latency: Row[]; throughput: Row[] } {
  const all = (r: UsersRun, key: "idle" | "busy" | "during8" | "alone") =>
    r.rounds.flatMap((round) => round[key]);
  const latency = runs.map((r): Row => {
    const [idle, busy] = [all(r, "idle"), all(r, "busy")];
    const ratio = p99(busy) / p99(idle);
    const each = r.rounds.map((round) => fmt(p99(round.busy) / p99(round.idle), 2));
    const failed = [...idle, ...busy].some((l) => !l.ok);
    const perListing = (key: "callsIdle" | "callsBusy", listings: Listing[]) =>
      fmt(r.rounds.reduce((sum, round) => sum + round[key], 0) / listings.length, 2);
    return {
      scenario: `11 ${r.config.name}`,
      metric: `PROPFIND D1 of ${USER_FOLDER_FILES} files, ms`,
      cols: {
        [USERS_LATENCY_COLUMNS[0]!]: latencyCell(idle),
        [USERS_LATENCY_COLUMNS[1]!]: latencyCell(busy),
        [USERS_LATENCY_COLUMNS[2]!]: latencyCell(all(r, "during8")),
        [USERS_LATENCY_COLUMNS[3]!]: latencyCell(all(r, "alone")),
        [USERS_LATENCY_COLUMNS[4]!]: `${perListing("callsIdle", idle)} / ${perListing("callsBusy", busy)}`,
      },
      ratio: `busy/idle p99 ${fmt(ratio, 2)} (rounds: ${each.join(", ")})`,
      goal: "≤ 2, none failed",
      met: yes(ratio <= 2 && !failed),
      rss: `${fmt(Math.max(...r.rounds.map((round) => round.peakRss)))} MB`,
    };
  });
  const throughput = runs.map((r): Row => {
    const perUser = MANY_USERS.map((_, i) => median(r.rounds.map((round) => round.mibPerS[i]!)));
    return {
      scenario: `11 ${r.config.name}`,
      metric: `PUT MiB/s, median of ${r.rounds.length} (u1–u7 64 MiB, u8 ${fmt(USER_BIG_UPLOAD / GiB, 2)} GiB)`,
      cols: {
        ...Object.fromEntries(MANY_USERS.map((u, i) => [userLabel(u), fmt(perUser[i]!, 0)])),
        [CPU_COLUMN]: [0, 1, 2]
          .map((i) => {
            const at = (key: "cpuIdle" | "cpuBusy") =>
              fmt(median(r.rounds.map((round) => round[key][i]!)), 0);
            return `${at("cpuIdle")} → ${at("cpuBusy")}`;
          })
          .join(" / "),
      },
      ratio: `all 8 together ${fmt(median(r.rounds.map((round) => round.together)), 0)} MiB/s`,
      goal: "reported",
      met: "—",
      rss: "",
    };
  });
  return { latency, throughput };
}

const userLabel = (u: User) => u.email.replace(/@.*/, "");
const CPU_COLUMN = "CPU, % of one core, idle → busy: gateway / emulator / machine";

/** The commit measured, and the source files changed since (other work may be in progress). */
function sourceVersion(): string {
  const git = (args: string[]) =>
    spawnSync("git", args, { cwd: ROOT, encoding: "utf8" }).stdout ?? "";
  const commit = git(["rev-parse", "--short", "HEAD"]).trim() || "unknown";
  // Porcelain lines are "XY path": two status letters (either may be a space), then the path.
  const changed = git(["status", "--porcelain", "--", "src"])
    .split("\n")
    .filter((line) => line.length > 3)
    .map((line) => line.slice(3));
  return changed.length
    ? `commit ${commit} with uncommitted changes in ${changed.map((f) => `\`${f}\``).join(", ")} (what dist/ was built from)`
    : `commit ${commit}`;
}

const USERS_SECTION = {
  begin: "<!-- many users: replaced by `npm run bench -- --only 11` -->",
  end: "<!-- many users end -->",
};

function manyUsersReport(
  runs: readonly UsersRun[],
  load: number[],
  loads: number[],
  minutes: number,
  latency: number,
) {
  const during = loads.length
    ? `${fmt(Math.min(...loads), 2)}–${fmt(Math.max(...loads), 2)}`
    : "n/a";
  const { latency: latencyRows, throughput } = manyUsersRows(runs);
  return [
    USERS_SECTION.begin,
    "",
    "## Eight users at once (scenario 11)",
    "",
    `Written by \`npm run bench\` (${commandLine()}); the four configurations side by side, each its own emulator and gateway, all started first, then ${REPS} rounds in which each configuration in turn lists idle and then busy (one configuration measured at a time; the others sit idle), the rounds' listings pooled for the percentiles; the run took ${fmt(minutes, 1)} min.`,
    "",
    ...machine(load),
    `- load average (1 min) sampled every 2 s during the run: ${during}`,
    `- source: ${sourceVersion()}`,
    `- Upstream: one emulator per configuration (\`--latency-ms ${latency}\`, chunk size 25 MiB), with its primary account and eight more (\`--user u1@example.com:password1\` … \`u8@example.com:password8\`); each user's folder \`list\` seeded with ${USER_FOLDER_FILES} files of 6 bytes (own accounts: \`cloudreve://my/list\` in each account; shared: \`cloudreve://my/uN/list\` in the primary account).`,
    `- Gateway (\`node dist/cli.js --log-level ${opts["log-level"]}\`, concurrency 8 per account, the default), two ways: **own accounts**: \`--auth cloudreve\`, each user signs in with their own Cloudreve email and password and works in their own account (own client, request queue, cache, event stream); **one shared account**: \`--config\` with eight \`users\` entries (scrypt hashes from \`hashPassword\`, \`root: "/uN"\`, no \`account\`) and \`--email … --password …\`, so the eight share the gateway's one account and its one queue of 8. Both take the same Basic credentials.`,
    `- Cache: "TTL 0" is \`--cache-ttl-seconds 0\`, "default cache" no cache flag (TTL 30 s, 600 s while change events flow). With TTL 0 every listing makes its calls upstream (the last column shows them; busy includes the uploads' own few info calls), so it measures whether the listers' upstream calls wait behind the uploads' chunk calls: the issue's question. With the default cache a repeated listing of the same folder is answered from memory: no upstream call, so it measures only the gateway's own work under load.`,
    `- Idle: users 1–7 at once, each PROPFIND Depth 1 (allprop) of its \`/list/\` (${USER_FOLDER_FILES + 1} entries) ${USER_LISTINGS} times in a row on a keep-alive connection of its own (undici in the bench process); no uploads. Before each round, every user lists once (the Basic sign-in was checked when the gateway started and is remembered) and users 1–7 list ${USER_WARM_UP_LISTINGS} times each, not counted.`,
    `- Busy: the same seven loops, from the moment the uploads start until user 8's answers: user 8 PUTs ${fmt(USER_BIG_UPLOAD / GiB, 2)} GiB, users 1–7 each PUT 64 MiB once, the eight started at once (curl \`-T\` of files written with the pattern byte i = i % 251, with a length, each on its own connection; new names each round). "While all 8 upload": listings started before the last 64 MiB upload answered; "the large upload alone": after. Afterwards the large file's size (PROPFIND Depth 0) and 1 MiB at 90% (ranged GET, compared with the pattern) are checked, and the 64 MiB files' sizes; then the eight files are deleted (the gateways run with \`--permanent-delete\` for this, so the emulator frees their blobs).`,
    `- Latency: per listing, from the request to the end of the answer, as the client sees it; a listing that does not answer 207 with every entry counts as failed and is left out of the percentiles; p99 by nearest rank. Throughput: size / curl's total time, MiB/s (1 MiB = 2^20 bytes); all 8 together: all bytes / from the start to the last answer. CPU: from /proc over the idle and the busy listings (user + system time; the machine's: every process, ${cpus().length} cores = ${cpus().length * 100}% at most), medians of the rounds.`,
    "- Everything (the bench's clients, curl, the gateway, the emulator writing the blobs to the local disk) shares this machine's cores.",
    "",
    table(latencyRows, USERS_LATENCY_COLUMNS, true),
    "",
    table(throughput, [...MANY_USERS.map(userLabel), CPU_COLUMN], false),
    "",
    USERS_SECTION.end,
  ].join("\n");
}

/** Scenario 11 on its own: a work directory, the four configurations, its section of RESULTS.md. */
async function runManyUsers(): Promise<void> {
  const started = Date.now();
  const load = [loadavg()[0]!];
  const loads: number[] = [];
  const latency = Math.max(...latencies);
  const work = await mkdtemp(join(tmpdir(), "cloudreve-dav-bench-users-"));
  log(`scenario 11 (latency ${latency} ms), work directory ${work}`);
  try {
    const files = { big: join(work, "big.bin"), small: join(work, "small.bin") };
    await writePattern(files.big, USER_BIG_UPLOAD);
    await writePattern(files.small, USER_SMALL_UPLOAD);
    const runs: UsersRun[] = [];
    try {
      for (const [i, config] of USERS_CONFIGS.entries()) {
        log(`  starting ${config.name}`);
        runs.push(await openUsersRun(config, latency, join(work, `config-${i}`)));
      }
      // Round by round, each configuration in turn: what else runs on the machine meanwhile
      // weighs on all four alike.
      const sampler = setInterval(() => loads.push(loadavg()[0]!), 2000);
      sampler.unref();
      for (let round = 0; round < REPS; round++) {
        for (const run of runs) {
          log(`  round ${round + 1}, ${run.config.name}`);
          const r = await manyUsersRound(run, files, round);
          run.rounds.push(r);
          const disk = await diskBytes(run.stack.tmp.emulator);
          log(
            `    listing p99 idle ${fmt(p99(r.idle), 1)} ms, busy ${fmt(p99(r.busy), 1)} ms (all 8 uploading ${fmt(p99(r.during8), 1)}, large alone ${fmt(p99(r.alone), 1)}); PUT MiB/s ${r.mibPerS.map((v) => fmt(v, 0)).join(", ")}; emulator disk after deleting ${fmt(disk / MiB)} MiB`,
          );
        }
      }
      clearInterval(sampler);
    } finally {
      for (const run of runs) await closeUsersRun(run).catch(() => undefined);
    }
    load.push(loadavg()[0]!);
    const minutes = (Date.now() - started) / 60_000;
    const section = manyUsersReport(runs, load, loads, minutes, latency);
    process.stdout.write(`${section}\n`);
    if (!opts["no-write"]) {
      const file = join(ROOT, "bench", "RESULTS.md");
      await writeSection(file, HAND_WRITTEN, USERS_SECTION, section);
      log(`wrote the many-users section of ${file}`);
    }
  } finally {
    if (!opts.keep) await rm(work, { recursive: true, force: true });
    else log(`kept ${work}`);
  }
}

const WORKERS_SECTION = {
  begin: "<!-- several workers: replaced by `npm run bench -- --only 12` -->",
  end: "<!-- several workers end -->",
};

function workersReport(rows: Row[], load: number[], minutes: number) {
  return [
    WORKERS_SECTION.begin,
    "",
    "## Several workers (scenario 12)",
    "",
    `Written by \`npm run bench\` (${commandLine()}); ${REPS} repetitions, each target in turn within a repetition, medians; wrk ${WRK_SECONDS} s per run; the run took ${fmt(minutes, 1)} min.`,
    "",
    ...machine(load),
    `- source: ${sourceVersion()}`,
    `- Targets, all started first and measured one at a time: three gateways (\`node dist/cli.js --log-level ${opts["log-level"]} --metrics-listen off\`, each in front of its own emulator, no added latency) with \`--workers 1\`, \`--workers 2\` (locks and change notices shared through the primary process; each worker answers lock reads from its own copy of the tables) and \`--workers 2 --redis\` (a redis-server of the bench's own: each PROPFIND reads the locks from Redis); and \`rclone serve webdav\` on a local folder holding the same 6-byte file. Metrics are off in all three gateways, as \`--workers 2\` has them off.`,
    `- Requests: wrk \`-t 2 -c ${WORKERS_CONNECTIONS}\` (keep-alive connections, which node:cluster's primary hands to the workers in turn) of \`/${WORKERS_FILE}\`: PROPFIND Depth 0 without a body (allprop), then GET. Both are answered from the gateway's memory once primed (metadata cache, small-file cache): the row of upstream calls shows what the runs cost upstream.`,
    `- CPU: from /proc during each PROPFIND run, user + system time of the target's processes (a gateway's primary and its workers) and of the whole machine (${cpus().length} cores = ${cpus().length * 100}% at most; wrk runs on the same cores). Memory: VmRSS of the target's processes together after the last run.`,
    "",
    table(rows, [...WORKERS_CONFIGS.map((c) => c.name), RCLONE_SERVE], false),
    "",
    WORKERS_SECTION.end,
  ].join("\n");
}

/** Scenario 12 on its own: a work directory, the four targets, its section of RESULTS.md. */
async function runWorkers(): Promise<void> {
  const started = Date.now();
  const load = [loadavg()[0]!];
  const work = await mkdtemp(join(tmpdir(), "cloudreve-dav-bench-workers-"));
  log(`scenario 12, work directory ${work}`);
  const children: { stop(): Promise<void> }[] = [];
  try {
    const peer = join(work, "peer");
    await mkdir(join(peer, "small"), { recursive: true });
    await writeFile(join(peer, WORKERS_FILE), Buffer.from([0, 1, 2, 3, 4, 5]));
    const script = join(work, "propfind0.lua");
    await writeFile(script, 'wrk.method = "PROPFIND"\nwrk.headers["Depth"] = "0"\n');
    const redis = await startRedisServer(work);
    children.push(redis);
    const targets: WorkersTarget[] = [];
    for (const [i, config] of WORKERS_CONFIGS.entries()) {
      log(`  starting ${config.name}`);
      const dir = join(work, `config-${i}`);
      await mkdir(dir, { recursive: true });
      const stack = await startStack(
        0,
        dir,
        [],
        (emuUrl) => seed(emuUrl, "cloudreve://my/small", 1, 6).then(() => undefined),
        [
          ...["--workers", String(config.workers), "--metrics-listen", "off"],
          ...(config.redis ? ["--redis", redis.url] : []),
        ],
      );
      children.push({ stop: () => stopStack(stack) });
      await serving(join(dir, "gateway.log"), config.workers);
      const pids = await processTree(stack.gateway.pid);
      targets.push({ name: config.name, url: stack.gateway.url, pids, stack });
    }
    const rclonePort = await freePort();
    const rcloneUrl = `http://127.0.0.1:${rclonePort}/`;
    await writeFile(join(work, "rclone.conf"), "");
    const rclone = await startChild(
      RCLONE_SERVE,
      "rclone",
      [
        ...["--config", join(work, "rclone.conf"), "serve", "webdav", peer],
        ...["--addr", `127.0.0.1:${rclonePort}`],
      ],
      join(work, "rclone-serve.log"),
      () => answers(rcloneUrl),
    );
    children.push(rclone);
    targets.push({ name: RCLONE_SERVE, url: rcloneUrl, pids: [rclone.pid] });

    const rows = workersRows(await measureWorkers(targets, script));
    load.push(loadavg()[0]!);
    const section = workersReport(rows, load, (Date.now() - started) / 60_000);
    process.stdout.write(`${section}\n`);
    if (!opts["no-write"]) {
      const file = join(ROOT, "bench", "RESULTS.md");
      await writeSection(file, HAND_WRITTEN, WORKERS_SECTION, section);
      log(`wrote the several-workers section of ${file}`);
    }
  } finally {
    for (const child of children.reverse()) await child.stop().catch(() => undefined);
    if (!opts.keep) await rm(work, { recursive: true, force: true });
    else log(`kept ${work}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Scenario 12: small requests on several cores, `--workers 1` and `2` beside rclone serve

interface WorkersConfig {
  name: string;
  workers: number;
  redis: boolean;
}

const WORKERS_CONFIGS: WorkersConfig[] = [
  { name: "workers 1", workers: 1, redis: false },
  { name: "workers 2", workers: 2, redis: false },
  { name: "workers 2, Redis", workers: 2, redis: true },
];
const RCLONE_SERVE = "rclone serve";
const WORKERS_FILE = "small/file-00000.bin";
const WORKERS_CONNECTIONS = 16;

/** True once something accepts TCP connections on 127.0.0.1:`port`. */
function listens(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A redis-server of the bench's own on a free port, saving nothing. */
async function startRedisServer(work: string): Promise<Child & { url: string }> {
  const port = await freePort();
  const dir = join(work, "redis");
  await mkdir(dir, { recursive: true });
  const redis = await startChild(
    "redis-server",
    "redis-server",
    [...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir], "--save", ""],
    join(dir, "redis.log"),
    () => listens(port),
  );
  return { ...redis, url: `redis://127.0.0.1:${port}` };
}

/** Waits until `count` processes have logged that they serve (each worker logs it once). */
async function serving(logFile: string, count: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const text = await readFile(logFile, "utf8").catch(() => "");
    if (text.split('"msg":"serving WebDAV"').length - 1 >= count) return;
    if (Date.now() > deadline) throw new Error(`${count} workers did not start; see ${logFile}`);
    await sleep(100);
  }
}

interface WorkersTarget {
  name: string;
  url: string;
  /** The processes whose CPU and memory count: a primary and its workers, or rclone. */
  pids: number[];
  stack?: Stack;
}

interface WorkersMeasure {
  propfind: number[];
  get: number[];
  /** CPU during the PROPFIND runs, % of one core: the target's processes, then the machine's. */
  cpu: number[];
  machineCpu: number[];
  calls: number;
  rssMB: number;
}

/**
 * wrk PROPFIND Depth 0 and GET of a 6-byte file against each target in turn, rep by rep; the
 * gateways answer both from memory after the priming requests (the upstream calls made during
 * the runs are counted).
 */
async function measureWorkers(targets: WorkersTarget[], script: string) {
  const m = new Map<string, WorkersMeasure>();
  for (const t of targets) {
    const url = `${t.url}${WORKERS_FILE}`;
    expectStatus(await curl(["-X", "PROPFIND", "-H", "Depth: 0", url]), [207], `${t.name} prime`);
    expectStatus(await curl([url]), [200], `${t.name} prime GET`);
    if (t.stack) await resetStats(t.stack);
    m.set(t.name, { propfind: [], get: [], cpu: [], machineCpu: [], calls: 0, rssMB: 0 });
  }
  for (let rep = 0; rep < REPS; rep++) {
    for (const t of targets) {
      const r = m.get(t.name)!;
      const url = `${t.url}${WORKERS_FILE}`;
      const meter = await cpuMeter(t.pids);
      const pf = await wrk(url, WRK_SECONDS, WORKERS_CONNECTIONS, script);
      const cpu = await meter.stop();
      const get = await wrk(url, WRK_SECONDS, WORKERS_CONNECTIONS);
      if (pf.non2xx > 0 || get.non2xx > 0) {
        throw new Error(`wrk against ${t.name}: non-2xx answers\n${pf.output}\n${get.output}`);
      }
      r.propfind.push(pf.rps);
      r.get.push(get.rps);
      r.cpu.push(cpu.slice(0, -1).reduce((a, b) => a + b, 0));
      r.machineCpu.push(cpu.at(-1)!);
      log(
        `    rep ${rep + 1}, ${t.name}: PROPFIND ${fmt(pf.rps)}/s (CPU ${fmt(r.cpu.at(-1)!)}%), GET ${fmt(get.rps)}/s`,
      );
    }
  }
  for (const t of targets) {
    const r = m.get(t.name)!;
    r.rssMB = await rssMB(t.pids);
    if (t.stack) r.calls = totalCalls(await stats(t.stack));
  }
  return m;
}

function workersRows(m: Map<string, WorkersMeasure>): Row[] {
  const cols = (pick: (r: WorkersMeasure) => string) =>
    Object.fromEntries([...m].map(([name, r]) => [name, pick(r)]));
  const rclone = m.get(RCLONE_SERVE)!;
  const ratios = (pick: (r: WorkersMeasure) => number[]) =>
    WORKERS_CONFIGS.map(
      (c) => `${c.name} ${fmt(median(pick(m.get(c.name)!)) / median(pick(rclone)), 2)}`,
    ).join("; ");
  const two = median(m.get("workers 2")!.propfind) / median(rclone.propfind);
  return [
    {
      scenario: "12 wrk PROPFIND D0 (cached file)",
      metric: "requests/s",
      cols: cols((r) => fmt(median(r.propfind))),
      ratio: `/rclone: ${ratios((r) => r.propfind)}`,
      goal: "workers 2 ≥ rclone",
      met: yes(two >= 1),
      rss: "",
    },
    {
      scenario: "12 wrk GET 6-byte file",
      metric: "requests/s",
      cols: cols((r) => fmt(median(r.get))),
      ratio: `/rclone: ${ratios((r) => r.get)}`,
      goal: "reported",
      met: "—",
      rss: "",
    },
    {
      scenario: "12 CPU during PROPFIND",
      metric: "% of one core: its processes (machine)",
      cols: cols((r) => `${fmt(median(r.cpu))} (${fmt(median(r.machineCpu))})`),
      ratio: "",
      goal: "reported",
      met: "—",
      rss: "",
    },
    {
      scenario: "12 memory after the runs",
      metric: "RSS MB, all its processes",
      cols: cols((r) => fmt(r.rssMB)),
      ratio: "",
      goal: "reported",
      met: "—",
      rss: "",
    },
    {
      scenario: "12 upstream calls during the runs",
      metric: "calls",
      cols: Object.fromEntries(WORKERS_CONFIGS.map((c) => [c.name, fmt(m.get(c.name)!.calls)])),
      ratio: "",
      goal: "reported",
      met: "—",
      rss: "",
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Report

function machine(load: readonly number[]): string[] {
  const sh = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n")[0] ?? "n/a";
  };
  return [
    `- date: ${new Date().toISOString()}`,
    `- nproc: ${sh("nproc", [])}; CPU: ${cpus()[0]?.model ?? "n/a"}`,
    `- memory: ${fmt(totalmem() / GiB, 1)} GiB`,
    `- load average (1 min) at the start / end of the run: ${load.map((l) => fmt(l, 2)).join(" / ")}`,
    `- node ${process.version}; ${sh("curl", ["--version"])}`,
    `- ${sh("rclone", ["version"])}; ${sh("wrk", ["-v"]).replace(/ Copyright.*/, "")}; ${sh("nginx", ["-v"])}`,
  ];
}

function table(rows: readonly Row[], columns: readonly string[] = COLUMNS, rss = true): string {
  const head = ["scenario", "metric", ...columns, "ratio", "goal", "met"];
  if (rss) head.push("gateway peak RSS");
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    const cells = [
      r.scenario,
      r.metric,
      ...columns.map((c) => r.cols[c] ?? ""),
      r.ratio,
      r.goal,
      r.met,
      ...(rss ? [r.rss] : []),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

interface Results {
  latency: number;
  rows: Row[];
  storage: Row[];
}

const commandLine = () => process.argv.slice(2).join(" ") || "no options";

/** Scenarios 1–6: everything above the kept-marker line of RESULTS.md. */
function mainReport(results: Results[], load: number[], minutes: number, rclonePeak: number) {
  return [
    "# Benchmarks",
    "",
    `Written by \`npm run bench\` (${commandLine()}); ${REPS} repetitions per measurement (seek, warm PROPFIND: ${Math.max(5, REPS)}; scenario 6: ${REPS_COPY}; wrk: ${WRK_SECONDS} s per run), medians; ratios from this run; took ${fmt(minutes, 1)} min.`,
    "",
    "## Machine",
    "",
    ...machine(load),
    "",
    "## Setup",
    "",
    "- Upstream: the emulator (`node dist/emulator/cli.js`, chunk size 25 MiB, max page size 2000), once per latency setting; its blobs live in a temporary directory on the local disk.",
    `- gateway: \`node dist/cli.js --upstream … --log-level ${opts["log-level"]}\` (defaults otherwise: concurrency 8, cache TTL 30 s), in its own process; peak RSS is its VmHWM, reset (clear_refs) before each scenario.`,
    "- direct: the emulator itself (the signed content URL for GET; for PUT the upload session's chunks POSTed in order by one curl on one connection, timed with the session creation).",
    "- nginx: `proxy_pass` to the emulator with `proxy_buffering on`, `proxy_buffers 8 256k`, one worker process.",
    `- rclone serve: \`rclone serve webdav\` on a local folder with the same files (no added latency in either setting); its peak RSS over the whole run was ${fmt(rclonePeak)} MB.`,
    "- Clients: curl (`-o /dev/null`, `Expect:` disabled) for GET/PUT/PROPFIND and seek; wrk `-t 2 -c 16` with a Lua script for PROPFIND Depth 0; rclone 'copy' with a `:webdav,vendor=other` connection string for scenario 6. PROPFIND bodies: none (allprop).",
    "- Everything (clients, proxies, upstream) shares this machine's cores.",
    "",
    ...results.flatMap((r) => [`## Upstream latency ${r.latency} ms`, "", table(r.rows), ""]),
  ].join("\n");
}

const STORAGE_SECTION = {
  begin: "<!-- storage policies: replaced by `npm run bench -- --only 7,8,9` -->",
  end: "<!-- storage policies end -->",
};

/** Scenarios 7–9: their own section below the kept-marker line, kept by the other runs. */
function storageReport(results: Results[], load: number[], minutes: number) {
  return [
    STORAGE_SECTION.begin,
    "",
    "## Storage policies (scenarios 7–9)",
    "",
    `Written by \`npm run bench\` (${commandLine()}); ${REPS} repetitions per measurement (scenario 9: one), medians; ratios from this run; the run took ${fmt(minutes, 1)} min.`,
    "",
    ...machine(load),
    "- Upstream: the emulator with `--policy s3` (its S3-like storage origin on a port of its own: presigned part PUTs, CompleteMultipartUpload, the client callback, presigned GETs), chunk size 25 MiB; one emulator and one gateway per policy setting (7: `--chunk-concurrency 1`, then 4; 8: the object seeded into the storage; 9: `--relay`, so `chunk_size` 0 and the whole file one chunk POSTed to Cloudreve).",
    `- gateway: \`node dist/cli.js --upstream … --log-level ${opts["log-level"]}\` in its own process; peak RSS is its VmHWM, reset (clear_refs) before each measurement. 7 and 8: curl \`-T\` of a 1 GiB file / GET; 9: a generated stream (byte i = i % 251) PUT with its length by the bench process (undici), nothing on disk but what the gateway spools and the emulator stores (each child has its own TMPDIR, sampled every 250 ms).`,
    "- direct, 7: the session created by the bench (`PUT /api/v4/file/upload`), the same 41 parts (`split -b 25M` of the file) PUT to the presigned `upload_urls` by one curl (one connection for chunk_concurrency 1; `--parallel --parallel-max 4` for 4), the completion POSTed by curl, then the callback; timed from the session to the callback's answer. The gateway's time also includes its own session, completion, callback and a final file info.",
    "- direct, 8: curl GET of the presigned storage URL from `POST /api/v4/file/url`.",
    "- Everything (clients, gateway, emulator and its storage origin) shares this machine's cores.",
    "",
    ...results.flatMap((r) => [
      `### Upstream latency ${r.latency} ms`,
      "",
      table(r.storage, ["gateway", "direct"]),
      "",
    ]),
    STORAGE_SECTION.end,
  ].join("\n");
}

const POLLING_SECTION = {
  begin: "<!-- polling staleness: replaced by `npm run bench -- --only 10` -->",
  end: "<!-- polling staleness end -->",
};

/** Scenario 10: its own section below the kept-marker line, kept by the other runs. */
function pollingReport(
  rows: Row[],
  load: number[],
  loads: number[],
  minutes: number,
  latency: number,
  seconds: number,
) {
  const columns = POLL_CONFIGS.map((c) => c.name);
  const during = loads.length
    ? `${fmt(Math.min(...loads), 2)}–${fmt(Math.max(...loads), 2)}`
    : "n/a";
  return [
    POLLING_SECTION.begin,
    "",
    "## Polling staleness (scenario 10)",
    "",
    `Written by \`npm run bench\` (${commandLine()}); one run of ${fmt(seconds)} s, the three configurations side by side at the same time; the run took ${fmt(minutes, 1)} min.`,
    "",
    ...machine(load),
    `- load average (1 min) sampled every 2 s during the window: ${during}`,
    `- Upstream: one emulator per configuration (upstream latency ${latency} ms; \`fs_event_push_debounce\` at Cloudreve's default, ${DEBOUNCE_S} s), each seeded with ${POLL_FOLDERS.length} folders of 3 files; one gateway in front of each (\`node dist/cli.js --log-level ${opts["log-level"]}\`): ${POLL_CONFIGS.map((c) => `${c.name}: \`${[...c.emulatorFlags.map((f) => `emulator ${f}`), ...c.gatewayFlags].join(" ")}\``).join("; ")}.`,
    `- Poller (one per gateway, a Finder-like client): PROPFIND Depth 1 (allprop) of each of the ${POLL_FOLDERS.length} folders every ${POLL_EVERY_MS / 1000} s, the ${POLL_FOLDERS.length} at once on 4 keep-alive connections; all listings were cached once before the window.`,
    `- Writer (the bench's own API session, no client id, as the web UI): every ${WRITE_PAUSE_MS[0] / 1000}–${WRITE_PAUSE_MS[1] / 1000} s (seeded, the same in every run) a new file or folder with a unique name in a random one of the folders, made in the three emulators at the same moment (\`POST /api/v4/file/create\`).`,
    `- Upstream calls: the emulator's \`/__emulator/stats\` over the ${fmt(seconds)} s window, the gateway's routes only (list \`GET /api/v4/file\`, info, events stream; the stream opened before the window, so it counts only if it reconnected); "other" is everything else but the writer's create calls. After the window the pollers go on (up to ${DRAIN_MS / 1000} s) until every change is seen; the PROPFIND count includes that.`,
    `- Staleness: from the writer's answer to the first PROPFIND answer listing the change (what the client sees: includes up to ${POLL_EVERY_MS / 1000} s of polling interval); lower bound: to the last PROPFIND sent after the write whose answer did not list it. The moment the gateway would first have listed the change lies between the two.`,
    `- Probe (events on only): from the writer's answer, PROPFIND Depth 1 of the changed folder every ${PROBE_EVERY_MS} ms on a connection of its own until the change is listed: when the gateway first lists it, to ${PROBE_EVERY_MS / 1000} s. Before the event it is answered from the cache; afterwards it makes the one listing call the poller would have made, so it adds no upstream call. With a TTL alone it would move the refetches, so those two are not probed.`,
    "- Everything (clients, gateways, emulators) shares this machine's cores.",
    "",
    table(rows, columns, false),
    "",
    POLLING_SECTION.end,
  ].join("\n");
}

/** Scenario 10 on its own: a work directory, the run, its section of RESULTS.md. */
async function runPolling(): Promise<void> {
  const started = Date.now();
  const load = [loadavg()[0]!];
  const latency = Math.max(...latencies);
  const seconds = Number(opts["poll-seconds"]);
  const work = await mkdtemp(join(tmpdir(), "cloudreve-dav-bench-poll-"));
  log(`scenario 10 (latency ${latency} ms), work directory ${work}`);
  try {
    const { rows, loads } = await pollingStaleness(latency, work, seconds);
    load.push(loadavg()[0]!);
    const minutes = (Date.now() - started) / 60_000;
    const section = pollingReport(rows, load, loads, minutes, latency, seconds);
    process.stdout.write(`${section}\n`);
    if (!opts["no-write"]) {
      const file = join(ROOT, "bench", "RESULTS.md");
      await writeSection(file, HAND_WRITTEN, POLLING_SECTION, section);
      log(`wrote the polling-staleness section of ${file}`);
    }
  } finally {
    if (!opts.keep) await rm(work, { recursive: true, force: true });
    else log(`kept ${work}`);
  }
}

async function main(classic: number[], storage: number[]): Promise<void> {
  const started = Date.now();
  const load = [loadavg()[0]!];
  const work = await mkdtemp(join(tmpdir(), "cloudreve-dav-bench-"));
  log(`work directory ${work}`);
  let rcloneServe: Child | undefined;
  const settings: Setting[] = [];
  const results: Results[] = [];
  try {
    let data: Setting["data"] | undefined;
    let big: BigFile;
    if (classic.length > 0) {
      log("preparing data (1 GiB file, 10,000-file folder, 1,000 × 4 KiB)");
      big = data = await prepareData(work);
    } else {
      log("preparing data (1 GiB file)");
      big = await prepareBig(join(work, "big.bin"), join(work, "chunks"));
    }
    let rclone: { url: string; rss: PeakRss } | undefined;
    if (data) {
      const rclonePort = await freePort();
      const rcloneUrl = `http://127.0.0.1:${rclonePort}/`;
      rcloneServe = await startChild(
        "rclone serve webdav",
        "rclone",
        [
          "--config",
          join(work, "rclone.conf"),
          "serve",
          "webdav",
          data.peer,
          "--addr",
          `127.0.0.1:${rclonePort}`,
        ],
        join(work, "rclone-serve.log"),
        () => answers(rcloneUrl),
      );
      rclone = { url: rcloneUrl, rss: new PeakRss(rcloneServe.pid) };
    }
    for (const latency of latencies) {
      log(`upstream: emulator with latency ${latency} ms`);
      const r: Results = { latency, rows: [], storage: [] };
      if (data && rclone) {
        const s = await startSetting(latency, work, data, rclone.url);
        settings.push(s);
        for (const n of classic) {
          log(`  scenario ${n}`);
          r.rows.push(...(await SCENARIOS[n]!(s)));
        }
        await stopSetting(s);
        settings.pop();
      }
      for (const n of storage) {
        log(`  scenario ${n}`);
        const run = { latency, work: join(work, `latency-${latency}`), data: big };
        r.storage.push(...(await STORAGE_SCENARIOS[n]!(run)));
      }
      results.push(r);
      log(`\nlatency ${latency} ms\n${table([...r.rows, ...r.storage])}\n`);
    }
    load.push(loadavg()[0]!);
    const minutes = (Date.now() - started) / 60_000;
    const file = join(ROOT, "bench", "RESULTS.md");
    if (rclone) {
      const report = mainReport(results, load, minutes, await rclone.rss.peakMB());
      process.stdout.write(`${report}\n`);
      if (!opts["no-write"]) {
        const previous = existsSync(file) ? readFileSync(file, "utf8") : "";
        const kept = previous.includes(HAND_WRITTEN)
          ? previous.slice(previous.indexOf(HAND_WRITTEN))
          : `${HAND_WRITTEN}\n`;
        await writeFile(file, `${report}\n${kept}`);
        log(`wrote ${file}`);
      }
    }
    if (storage.length > 0) {
      const section = storageReport(results, load, minutes);
      process.stdout.write(`${section}\n`);
      if (!opts["no-write"]) {
        await writeSection(file, HAND_WRITTEN, STORAGE_SECTION, section);
        log(`wrote the storage-policy section of ${file}`);
      }
    }
  } finally {
    for (const s of settings) await stopSetting(s).catch(() => undefined);
    await rcloneServe?.stop();
    if (!opts.keep && !opts.profile) await rm(work, { recursive: true, force: true });
    else log(`kept ${work}`);
  }
}

const classic = Object.keys(SCENARIOS)
  .map(Number)
  .filter((n) => only.has(n));
const storage = Object.keys(STORAGE_SCENARIOS)
  .map(Number)
  .filter((n) => only.has(n));
if (classic.length + storage.length > 0 || [10, 11, 12].some((n) => only.has(n))) {
  // Scenarios 1–6 start nginx and rclone serve; wrk drives scenario 5; split cuts the chunks;
  // every gateway's warm-up is a curl, and scenario 11's uploads.
  const needs: Record<string, string> = { curl: "curl" };
  if (classic.length + storage.length > 0) needs.split = "coreutils";
  if (classic.length > 0) Object.assign(needs, { nginx: "nginx", rclone: "rclone" });
  if (only.has(5) || only.has(12)) needs.wrk = "wrk";
  if (only.has(12)) Object.assign(needs, { rclone: "rclone", "redis-server": "redis-server" });
  const missing = missingTools(needs);
  if (missing) {
    log(missing);
    process.exit(1);
  }
  if (classic.length + storage.length > 0) await main(classic, storage);
  if (only.has(10)) await runPolling();
  if (only.has(11)) await runManyUsers();
  if (only.has(12)) await runWorkers();
}
if (onlyNames.includes("soak")) {
  await runSoak({
    seconds: Number(opts["soak-seconds"]),
    clients: Number(opts["soak-clients"]),
    faultRate: Number(opts["soak-fault-rate"]),
    logLevel: opts["log-level"]!,
    root: ROOT,
    keep: opts.keep!,
    resultsFile: opts["no-write"] ? undefined : join(ROOT, "bench", "RESULTS.md"),
    keptMarker: HAND_WRITTEN,
    commandLine: process.argv.slice(2).join(" "),
  });
}
