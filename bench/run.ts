/**
 * `npm run bench`: the scenarios of issue 6, side by side in one run, against the emulator
 * with no added latency and with 20 ms, and against `rclone serve webdav` on a local folder
 * holding the same data. The gateway runs as a child process (`node dist/cli.js`) so that its
 * peak RSS is its own. Prints the tables and writes bench/RESULTS.md.
 *
 *   npm run bench -- [--only 1,3] [--latency 0,20] [--reps 3] [--reps-copy 1] [--wrk-seconds 10]
 *                    [--profile] [--keep] [--no-write] [--log-level info]
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
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { request } from "undici";
import { CloudreveApi } from "../src/cloudreve/api.js";
import {
  answers,
  curl,
  expectStatus,
  freePort,
  GiB,
  median,
  MiB,
  missingTools,
  PeakRss,
  run,
  startChild,
  wrk,
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

/** Writes `size` bytes where byte i is i % 251, as the emulator seeds them. */
async function writePattern(path: string, size: number): Promise<void> {
  const block = Buffer.alloc(251 * 4096);
  for (let i = 0; i < block.length; i++) block[i] = i % 251;
  const file = await open(path, "w");
  try {
    for (let at = 0; at < size; at += block.length) {
      await file.write(block, 0, Math.min(block.length, size - at));
    }
  } finally {
    await file.close();
  }
}

async function prepareData(work: string) {
  const peer = join(work, "peer");
  await mkdir(join(peer, "big"), { recursive: true });
  await mkdir(join(peer, "many"), { recursive: true });
  await mkdir(join(peer, "small"), { recursive: true });
  await mkdir(join(peer, "up"), { recursive: true });
  const big = join(peer, "big", "file-00000.bin");
  await writePattern(big, GiB);
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
  // The chunks a direct upload sends, cut once.
  const chunks = join(work, "chunks");
  await mkdir(chunks);
  execFileSync("split", ["-b", String(CHUNK_SIZE), "-d", "-a", "3", big, join(chunks, "c")]);
  const chunkFiles = (await readdir(chunks)).sort().map((f) => join(chunks, f));
  await writeFile(join(work, "rclone.conf"), "");
  await writeFile(
    join(work, "propfind0.lua"),
    'wrk.method = "PROPFIND"\nwrk.headers["Depth"] = "0"\n',
  );
  return { peer, big, src1000, chunkFiles };
}

// ---------------------------------------------------------------------------------------------
// One upstream setting: emulator, gateway, nginx

interface Setting {
  latency: number;
  emulator: Child & { url: string };
  gateway: Child & { url: string };
  nginx: Child & { url: string };
  rclone: { url: string };
  api: CloudreveApi;
  rss: PeakRss;
  work: string;
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

interface Stats {
  requests: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
}
const stats = (s: Setting) => emulatorCall(s.emulator.url, "/__emulator/stats") as Promise<Stats>;
const resetStats = (s: Setting) => emulatorCall(s.emulator.url, "/__emulator/stats/reset", {});
const totalCalls = (st: Stats) => Object.values(st.requests).reduce((a, b) => a + b, 0);

async function startSetting(
  latency: number,
  work: string,
  data: Setting["data"],
  rcloneUrl: string,
): Promise<Setting> {
  const dir = join(work, `latency-${latency}`);
  await mkdir(dir, { recursive: true });
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
    ],
    join(dir, "emulator.log"),
    () => answers(`${emuUrl}/__emulator/stats`),
  );
  log(`  seeding the emulator (latency ${latency} ms)`);
  await emulatorCall(emuUrl, "/__emulator/seed", {
    uri: "cloudreve://my/big",
    files: 1,
    size: GiB,
  });
  for (let i = 0; i < REPS; i++) {
    await emulatorCall(emuUrl, "/__emulator/seed", {
      uri: `cloudreve://my/many-${i}`,
      files: LISTING_SIZE,
      size: 6,
    });
  }
  await emulatorCall(emuUrl, "/__emulator/seed", {
    uri: "cloudreve://my/small",
    files: 1,
    size: 6,
  });
  await emulatorCall(emuUrl, "/__emulator/seed", { uri: "cloudreve://my/up", files: 0 });

  const gwPort = await freePort();
  const gwUrl = `http://127.0.0.1:${gwPort}/`;
  const nodeFlags = opts.profile
    ? ["--cpu-prof", "--cpu-prof-dir", join(dir, "profile")]
    : ([] as string[]);
  const gateway = await startChild(
    "gateway",
    process.execPath,
    [
      ...nodeFlags,
      join(ROOT, "dist/cli.js"),
      ...["--upstream", emuUrl, "--email", EMAIL, "--password", PASSWORD],
      ...["--port", String(gwPort), "--state-dir", join(dir, "state")],
      ...["--log-level", opts["log-level"]!],
    ],
    join(dir, "gateway.log"),
    () => answers(gwUrl),
  );

  const ngxPort = await freePort();
  const ngxDir = join(dir, "nginx");
  await mkdir(ngxDir, { recursive: true });
  const conf = join(ngxDir, "nginx.conf");
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
  );

  const api = new CloudreveApi({
    baseUrl: emuUrl,
    email: EMAIL,
    password: PASSWORD,
    stateFile: join(dir, "bench-client-state.json"),
  });
  // The gateway logs in on its first request; do it now, outside any measurement.
  expectStatus(await curl(["-X", "PROPFIND", "-H", "Depth: 0", gwUrl]), [207], "gateway warm-up");
  return {
    latency,
    emulator: { ...emulator, url: emuUrl },
    gateway: { ...gateway, url: gwUrl },
    nginx: { ...nginx, url: ngxUrl },
    rclone: { url: rcloneUrl },
    api,
    rss: new PeakRss(gateway.pid),
    work: dir,
    data,
  };
}

async function stopSetting(s: Setting): Promise<void> {
  await s.api.close();
  await s.gateway.stop();
  await s.nginx.stop();
  await s.emulator.stop();
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/** 1. GET of a 1 GiB file: gateway vs the signed URL, nginx over it, rclone serve. */
async function getLargeFile(s: Setting): Promise<Row[]> {
  const { url: signed } = await s.api.fileUrl("cloudreve://my/big/file-00000.bin");
  const targets: Record<string, string> = {
    gateway: `${s.gateway.url}big/file-00000.bin`,
    direct: signed,
    nginx: signed.replace(s.emulator.url, s.nginx.url),
    "rclone serve": `${s.rclone.url}big/file-00000.bin`,
  };
  const speeds: Record<string, number[]> = {};
  // Warm-up: page cache and the gateway's signed-URL cache.
  await curl([targets.direct!]);
  await curl(["-I", targets.gateway!]);
  await s.rss.reset();
  for (let rep = 0; rep < REPS; rep++) {
    for (const [name, url] of Object.entries(targets)) {
      const r = expectStatus(await curl([url]), [200], `GET ${name}`);
      if (r.bytes !== GiB) throw new Error(`GET ${name}: got ${r.bytes} bytes`);
      (speeds[name] ??= []).push(r.speed);
      log(`    GET 1 GiB ${name}: ${mb(r.speed)} MB/s`);
    }
  }
  const peak = await s.rss.peakMB();
  const m = Object.fromEntries(Object.entries(speeds).map(([k, v]) => [k, median(v)]));
  const ratio = m.gateway! / m.direct!;
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
// Report

function machine(): string[] {
  const sh = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n")[0] ?? "n/a";
  };
  return [
    `- date: ${new Date().toISOString()}`,
    `- nproc: ${sh("nproc", [])}; CPU: ${cpus()[0]?.model ?? "n/a"}`,
    `- memory: ${fmt(totalmem() / GiB, 1)} GiB`,
    `- node ${process.version}; ${sh("curl", ["--version"])}`,
    `- ${sh("rclone", ["version"])}; ${sh("wrk", ["-v"]).replace(/ Copyright.*/, "")}; ${sh("nginx", ["-v"])}`,
  ];
}

function table(rows: readonly Row[]): string {
  const head = ["scenario", "metric", ...COLUMNS, "ratio", "goal", "met", "gateway peak RSS"];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    const cells = [
      r.scenario,
      r.metric,
      ...COLUMNS.map((c) => r.cols[c] ?? ""),
      r.ratio,
      r.goal,
      r.met,
      r.rss,
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const started = Date.now();
  const work = await mkdtemp(join(tmpdir(), "cloudreve-dav-bench-"));
  log(`work directory ${work}`);
  let rcloneServe: Child | undefined;
  const settings: Setting[] = [];
  const results: { latency: number; rows: Row[] }[] = [];
  try {
    log("preparing data (1 GiB file, 10,000-file folder, 1,000 × 4 KiB)");
    const data = await prepareData(work);
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
    const rcloneRss = new PeakRss(rcloneServe.pid);
    for (const latency of latencies) {
      log(`upstream: emulator with latency ${latency} ms`);
      const s = await startSetting(latency, work, data, rcloneUrl);
      settings.push(s);
      const rows: Row[] = [];
      for (const n of [1, 2, 3, 4, 5, 6]) {
        if (!only.has(n)) continue;
        log(`  scenario ${n}`);
        rows.push(...(await SCENARIOS[n]!(s)));
      }
      await stopSetting(s);
      settings.pop();
      results.push({ latency, rows });
      log(`\nlatency ${latency} ms\n${table(rows)}\n`);
    }
    const rclonePeak = await rcloneRss.peakMB();
    const minutes = (Date.now() - started) / 60_000;
    const report = [
      "# Benchmarks",
      "",
      `Written by \`npm run bench\` (${process.argv.slice(2).join(" ") || "no options"}); ${REPS} repetitions per measurement (seek, warm PROPFIND: ${Math.max(5, REPS)}; scenario 6: ${REPS_COPY}; wrk: ${WRK_SECONDS} s per run), medians; ratios from this run; took ${fmt(minutes, 1)} min.`,
      "",
      "## Machine",
      "",
      ...machine(),
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
    process.stdout.write(`${report}\n`);
    if (!opts["no-write"]) {
      const file = join(ROOT, "bench", "RESULTS.md");
      const previous = existsSync(file) ? readFileSync(file, "utf8") : "";
      const kept = previous.includes(HAND_WRITTEN)
        ? previous.slice(previous.indexOf(HAND_WRITTEN))
        : `${HAND_WRITTEN}\n`;
      await writeFile(file, `${report}\n${kept}`);
      log(`wrote ${file}`);
    }
  } finally {
    for (const s of settings) await stopSetting(s).catch(() => undefined);
    await rcloneServe?.stop();
    if (!opts.keep && !opts.profile) await rm(work, { recursive: true, force: true });
    else log(`kept ${work}`);
  }
}

if ([...only].some((n) => n in SCENARIOS)) {
  // Every numbered scenario's setting starts nginx and rclone serve; wrk drives scenario 5.
  const needs: Record<string, string> = { nginx: "nginx", rclone: "rclone", curl: "curl" };
  if (only.has(5)) needs.wrk = "wrk";
  const missing = missingTools(needs);
  if (missing) {
    log(missing);
    process.exit(1);
  }
  await main();
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
