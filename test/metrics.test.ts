/**
 * Health probes and Prometheus metrics: /healthz and /readyz on the WebDAV listener without
 * sign-in, /metrics on a listener of its own, and counters that move by exactly what was done.
 */
import { mkdtemp } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { ConfigError, defaults, loadConfig } from "../src/config.js";
import { createLogger } from "../src/log.js";
import { hashPassword } from "../src/passwords.js";
import { startGateway } from "../src/server.js";
import { setFaults } from "./helpers/control.js";
import { EMAIL, PASSWORD } from "./helpers/emulator.js";
import { useGateway } from "./helpers/gateway.js";
import { open } from "./helpers/http-raw.js";
import { until } from "./helpers/wait.js";

const ALICE = "alice:alice's passphrase";
const users = [{ name: "alice", passwordHash: await hashPassword("alice's passphrase") }];

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of Prometheus' text format (prom-client writes label values without escapes here). */
function parse(text: string): Sample[] {
  return text
    .split("\n")
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => {
      const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`not a sample: ${line}`);
      const labels = Object.fromEntries(
        [...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]),
      );
      return { name: m[1]!, labels, value: Number(m[3]) };
    });
}

/** The sum of `name`'s samples whose labels include `labels`. */
function total(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return parse(await res.text());
}

/** A request as bytes on the wire, closing its connection, so that its size is known exactly. */
function wireRequest(
  method: string,
  path: string,
  options: { auth?: string; body?: string; headers?: Record<string, string> } = {},
): Buffer {
  const body = Buffer.from(options.body ?? "");
  const head = [`${method} ${path} HTTP/1.1`, "Host: gateway", "Connection: close"];
  if (options.auth)
    head.push(`Authorization: Basic ${Buffer.from(options.auth).toString("base64")}`);
  for (const [name, value] of Object.entries(options.headers ?? {})) head.push(`${name}: ${value}`);
  if (body.length > 0 || method === "PUT") head.push(`Content-Length: ${body.length}`);
  return Buffer.concat([Buffer.from(`${head.join("\r\n")}\r\n\r\n`), body]);
}

/** Sends `request` on a connection of its own; the whole reply, as it came, and its status. */
function exchange(base: string, request: Buffer): Promise<{ status: number; reply: Buffer }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const parts: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => parts.push(chunk));
    socket.on("end", () => {
      const reply = Buffer.concat(parts);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(reply.toString("latin1"))?.[1]), reply });
    });
    socket.on("error", reject);
    socket.write(request);
  });
}

const PROPFIND_NAMES = `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:displayname/><D:getcontentlength/></D:prop></D:propfind>`;

/** Upstream calls by the emulator's name for them ("GET /api/v4/file/info"), from the metrics. */
function upstreamCalls(samples: Sample[]): Map<string, number> {
  const calls = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== "cloudreve_dav_upstream_calls_total") continue;
    const { method, route } = s.labels;
    const key =
      route === "download"
        ? "GET /api/v4/file/content/:id/:speed/:name" // the local policy's content route
        : `${method} /api/v4${route!.replace(/^\/site\/config\/\w+$/, "/site/config/:section")}`;
    calls.set(key, (calls.get(key) ?? 0) + s.value);
  }
  return calls;
}

/** What grew between two readings of `upstreamCalls`. */
function grown(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const diff: Record<string, number> = {};
  for (const [key, n] of after)
    if (n !== (before.get(key) ?? 0)) diff[key] = n - (before.get(key) ?? 0);
  return diff;
}

describe("health, readiness and metrics", () => {
  const fx = useGateway({}, { users });

  it("answers /healthz and /readyz without credentials, while WebDAV asks for them", async () => {
    const health = await fetch(`${fx.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("ok");
    const ready = await fetch(`${fx.url}/readyz?probe=1`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe("ok");
    expect((await fetch(`${fx.url}/healthz`, { method: "HEAD" })).status).toBe(200);

    expect(
      (await exchange(fx.url, wireRequest("PROPFIND", "/", { headers: { Depth: "0" } }))).status,
    ).toBe(401);
    // Only GET and HEAD are probes: a PROPFIND of /healthz is WebDAV's, and there is no such file.
    const webdav = await exchange(
      fx.url,
      wireRequest("PROPFIND", "/healthz", { auth: ALICE, headers: { Depth: "0" } }),
    );
    expect(webdav.status).toBe(404);
  });

  it("serves /metrics on a listener of its own, never on the WebDAV one", async () => {
    const metricsUrl = fx.gw.metricsUrl!;
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(new URL(metricsUrl).port).not.toBe(new URL(fx.url).port);
    const res = await fetch(metricsUrl);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    for (const name of [
      "cloudreve_dav_requests_total",
      "cloudreve_dav_request_duration_seconds",
      "cloudreve_dav_upstream_calls_total",
      "cloudreve_dav_upstream_retries_total",
      "cloudreve_dav_cache_hits_total",
      "cloudreve_dav_cache_misses_total",
      "cloudreve_dav_received_bytes_total",
      "cloudreve_dav_sent_bytes_total",
      "cloudreve_dav_uploads_in_flight",
      "cloudreve_dav_upstream_queue_calls",
      "cloudreve_dav_event_stream_up",
      "cloudreve_dav_accounts_open",
      "cloudreve_dav_sign_in_failures_total",
      "cloudreve_dav_sign_ins_throttled_total",
    ])
      expect(text).toContain(`# TYPE ${name} `);

    // On the WebDAV listener, /metrics is a path of the drive like any other.
    const signedIn = await exchange(fx.url, wireRequest("GET", "/metrics", { auth: ALICE }));
    expect(signedIn.status).toBe(404);
    expect(signedIn.reply.toString()).not.toContain("cloudreve_dav_");
    expect((await exchange(fx.url, wireRequest("GET", "/metrics"))).status).toBe(401);
    expect((await fetch(new URL("/", metricsUrl))).status).toBe(404);
  });

  it("counts requests, bytes, sign-in failures and upstream calls by exactly what was done", async () => {
    const metricsUrl = fx.gw.metricsUrl!;
    const before = await scrape(metricsUrl);
    await fx.resetStats();
    const requests = [
      wireRequest("PROPFIND", "/", { auth: ALICE, body: PROPFIND_NAMES, headers: { Depth: "1" } }),
      wireRequest("PUT", "/counted.txt", { auth: ALICE, body: "hello" }),
      wireRequest("GET", "/counted.txt", { auth: ALICE }),
      wireRequest("GET", "/absent.txt", { auth: ALICE }),
      wireRequest("GET", "/", { auth: "alice:a wrong password" }),
      wireRequest("PROPFIND", "/"), // no credentials: asked for, not refused
    ];
    const replies = [];
    for (const request of requests) replies.push(await exchange(fx.url, request));
    expect(replies.map((r) => r.status)).toEqual([207, 201, 200, 404, 401, 401]);
    expect(replies[2]!.reply.toString()).toMatch(/\r\n\r\nhello$/);

    const grew = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
      total(samples, name, labels) - total(before, name, labels);
    let after = before;
    await until(
      "the six requests to be counted",
      async () => grew((after = await scrape(metricsUrl)), "cloudreve_dav_requests_total") === 6,
      10_000,
    );
    const answered = (method: string, status: string) =>
      grew(after, "cloudreve_dav_requests_total", { method, status });
    expect(answered("PROPFIND", "207")).toBe(1);
    expect(answered("PUT", "201")).toBe(1);
    expect(answered("GET", "200")).toBe(1);
    expect(answered("GET", "404")).toBe(1);
    expect(answered("GET", "401")).toBe(1);
    expect(answered("PROPFIND", "401")).toBe(1);
    const timed = (method: string) =>
      grew(after, "cloudreve_dav_request_duration_seconds_count", { method });
    expect([timed("PROPFIND"), timed("PUT"), timed("GET")]).toEqual([2, 1, 3]);

    const sum = (buffers: Buffer[]) => buffers.reduce((n, b) => n + b.length, 0);
    expect(grew(after, "cloudreve_dav_received_bytes_total")).toBe(sum(requests));
    expect(grew(after, "cloudreve_dav_sent_bytes_total")).toBe(sum(replies.map((r) => r.reply)));
    expect(grew(after, "cloudreve_dav_sign_in_failures_total")).toBe(1);
    expect(grew(after, "cloudreve_dav_sign_ins_throttled_total")).toBe(0);

    // Every upstream call the gateway counted reached the emulator, and nothing else did.
    const emulator = await fx.stats();
    expect(grown(upstreamCalls(before), upstreamCalls(after))).toEqual(emulator.requests);
    expect(Object.keys(emulator.requests).length).toBeGreaterThan(0);
    expect(grew(after, "cloudreve_dav_upstream_calls_total", { result: "ok" })).toBe(
      grew(after, "cloudreve_dav_upstream_calls_total"),
    );
    expect(grew(after, "cloudreve_dav_upstream_retries_total")).toBe(0);
  });

  it("counts a method it does not know as other, so clients cannot grow the label set", async () => {
    const metricsUrl = fx.gw.metricsUrl!;
    const before = await scrape(metricsUrl);
    expect((await exchange(fx.url, wireRequest("REPORT", "/", { auth: ALICE }))).status).toBe(405);
    let after = before;
    const other = { method: "other", status: "405" };
    await until(
      "the request to be counted",
      async () =>
        total((after = await scrape(metricsUrl)), "cloudreve_dav_requests_total", other) >
        total(before, "cloudreve_dav_requests_total", other),
      10_000,
    );
    expect(after.some((s) => s.labels.method === "REPORT")).toBe(false);
  });

  it("counts a repeated listing as cache hits, with no miss and no upstream call", async () => {
    const metricsUrl = fx.gw.metricsUrl!;
    const propfind = wireRequest("PROPFIND", "/", {
      auth: ALICE,
      body: PROPFIND_NAMES,
      headers: { Depth: "1" },
    });
    expect((await exchange(fx.url, propfind)).status).toBe(207);
    const before = await scrape(metricsUrl);
    await fx.resetStats();
    expect((await exchange(fx.url, propfind)).status).toBe(207);
    await until(
      "the listing to be counted",
      async () =>
        total(await scrape(metricsUrl), "cloudreve_dav_requests_total") >
        total(before, "cloudreve_dav_requests_total"),
      10_000,
    );
    const after = await scrape(metricsUrl);
    const grew = (name: string) => total(after, name) - total(before, name);
    expect(grew("cloudreve_dav_cache_hits_total")).toBeGreaterThan(0);
    expect(grew("cloudreve_dav_cache_misses_total")).toBe(0);
    expect(grew("cloudreve_dav_upstream_calls_total")).toBe(0);
    expect((await fx.stats()).requests).toEqual({});
  });

  it("counts a retried upstream call, with the failed attempt's status", async () => {
    const metricsUrl = fx.gw.metricsUrl!;
    const before = await scrape(metricsUrl);
    await setFaults(fx.emu.url, [{ route: "GET /api/v4/file/info", failWith: 503, times: 1 }]);
    try {
      // Not under any listed folder: the gateway has to ask.
      const reply = await exchange(
        fx.url,
        wireRequest("GET", "/elsewhere/file.txt", { auth: ALICE }),
      );
      expect(reply.status).toBe(404);
    } finally {
      await setFaults(fx.emu.url, []);
    }
    const after = await scrape(metricsUrl);
    const grew = (name: string, labels: Record<string, string> = {}) =>
      total(after, name, labels) - total(before, name, labels);
    const info = { method: "GET", route: "/file/info" };
    expect(grew("cloudreve_dav_upstream_retries_total")).toBe(1);
    expect(grew("cloudreve_dav_upstream_calls_total", { ...info, result: "503" })).toBe(1);
    expect(grew("cloudreve_dav_upstream_calls_total", { ...info, result: "NotFound" })).toBe(1);
  });

  it("shows an upload in flight while its body arrives", async () => {
    const metricsUrl = fx.gw.metricsUrl!;
    let release!: () => void;
    const rest = new Promise<void>((resolve) => (release = resolve));
    const body = (async function* () {
      yield Buffer.from("first half, ");
      await rest;
      yield Buffer.from("second half");
    })();
    const [user, password] = ALICE.split(":") as [string, string];
    const put = open(fx.url, "PUT", "/slow.txt", {
      body,
      headers: { "content-length": 23 },
      auth: { user, password },
    });
    const inFlight = async () => total(await scrape(metricsUrl), "cloudreve_dav_uploads_in_flight");
    await until("the upload to be in flight", async () => (await inFlight()) === 1, 10_000);
    release();
    const { res } = await put;
    res.resume();
    expect(res.statusCode).toBe(201);
    expect(await inFlight()).toBe(0);
  });

  it("shows the open account following Cloudreve's events, and idle queues", async () => {
    const samples = await scrape(fx.gw.metricsUrl!);
    expect(samples.filter((s) => s.name === "cloudreve_dav_event_stream_up")).toEqual([
      { name: "cloudreve_dav_event_stream_up", labels: { account: EMAIL }, value: 1 },
    ]);
    expect(total(samples, "cloudreve_dav_accounts_open")).toBe(1);
    expect(total(samples, "cloudreve_dav_upstream_queue_calls", { state: "running" })).toBe(0);
    expect(total(samples, "cloudreve_dav_upstream_queue_calls", { state: "queued" })).toBe(0);
  });

  it("serves the drive anyway when the metrics address is taken, and says so", async () => {
    const taken = new URL(fx.gw.metricsUrl!).host;
    const lines: { msg?: string; level?: number }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean))
          lines.push(JSON.parse(line));
        done();
      },
    });
    const gw = await startGateway(
      {
        ...defaults(),
        upstream: fx.emu.url,
        email: EMAIL,
        password: PASSWORD,
        stateDir: await mkdtemp(join(tmpdir(), "cloudreve-dav-metrics-")),
        port: 0,
        metricsListen: taken,
      },
      createLogger("warn", sink),
    );
    try {
      expect(gw.metricsUrl).toBeUndefined();
      expect(lines.filter((l) => /metrics are not served/.test(l.msg ?? ""))).toMatchObject([
        { level: 40 },
      ]);
      expect((await fetch(`${gw.url}healthz`)).status).toBe(200);
      expect(
        (await exchange(gw.url, wireRequest("PROPFIND", "/", { headers: { Depth: "0" } }))).status,
      ).toBe(207);
    } finally {
      await gw.close();
    }
  });
});

describe("readiness when Cloudreve cannot be reached", () => {
  const fx = useGateway();

  it("answers /readyz with 503 and a short reason, /healthz still with 200", async () => {
    await setFaults(fx.emu.url, [{ failWith: "reset" }]);
    try {
      const ready = await fetch(`${fx.url}/readyz`);
      expect(ready.status).toBe(503);
      const reason = await ready.text();
      expect(reason).toMatch(/^Cloudreve (is unreachable|did not answer in time)$/);
      expect((await fetch(`${fx.url}/healthz`)).status).toBe(200);
    } finally {
      await setFaults(fx.emu.url, []);
    }
  });
});

describe("metrics turned off", () => {
  const fx = useGateway({}, { metricsListen: "off" });

  it("serves no metrics, and the probes all the same", async () => {
    expect(fx.gw.metricsUrl).toBeUndefined();
    expect((await fetch(`${fx.url}/readyz`)).status).toBe(200);
  });
});

describe("--metrics-listen", () => {
  const listen = (value: string) =>
    loadConfig(["--metrics-listen", value], {}).config.metricsListen;

  it("takes HOST:PORT, an IPv6 host in brackets, or off", () => {
    expect(listen("0.0.0.0:9464")).toBe("0.0.0.0:9464");
    expect(listen("[::1]:0")).toBe("[::1]:0");
    expect(listen("off")).toBe("off");
    expect(
      loadConfig([], { CLOUDREVE_DAV_METRICS_LISTEN: "localhost:9100" }).config.metricsListen,
    ).toBe("localhost:9100");
    expect(defaults().metricsListen).toBe("127.0.0.1:9464");
  });

  it.each(["9464", "127.0.0.1", "127.0.0.1:65536", "::1:9464", "http://127.0.0.1:9464"])(
    "refuses %s, naming the setting and the shape",
    (value) => {
      expect(() => listen(value)).toThrow(ConfigError);
      expect(() => listen(value)).toThrow(/^metricsListen \(--metrics-listen\): must be HOST:PORT/);
    },
  );
});
