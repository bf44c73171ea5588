/**
 * The gateway's Prometheus metrics: the observer hooks of each layer (src/dav, src/drive,
 * src/cloudreve) implemented with prom-client, and the listener that serves them, apart from
 * WebDAV so that it needs no sign-in and is never exposed with the drive.
 */
import { createServer } from "node:http";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AccountStatus } from "./accounts.js";
import type { RequestQueueStats } from "./cloudreve/queue.js";
import type { UpstreamObserver } from "./cloudreve/transport.js";
import type { FinishedRequest, RequestObserver } from "./dav/server.js";
import type { DriveObserver } from "./drive/drive.js";

/** From a PROPFIND answered from the cache (milliseconds) to a large upload (minutes). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** What the gauges read when scraped. */
export interface GatewayStatus {
  accounts: AccountStatus[];
  queues: RequestQueueStats[];
}

/**
 * The metrics of one gateway, in a registry of its own: several gateways can run in one
 * process (the tests do), and none writes into prom-client's global registry.
 */
export class Metrics implements RequestObserver, UpstreamObserver, DriveObserver {
  readonly registry = new Registry();
  private readonly requests: Counter<"method" | "status">;
  private readonly duration: Histogram<"method">;
  private readonly received: Counter;
  private readonly sent: Counter;
  private readonly signInFailures: Counter;
  private readonly signInsThrottled: Counter;
  private readonly upstreamCalls: Counter<"method" | "route" | "result">;
  private readonly retries: Counter;
  private readonly cacheHits: Counter<"kind">;
  private readonly cacheMisses: Counter<"kind">;
  private readonly uploads: Gauge;

  constructor(status: () => GatewayStatus) {
    const registers = [this.registry];
    const prefix = "cloudreve_dav_";
    this.requests = new Counter({
      name: `${prefix}requests_total`,
      help: "WebDAV requests answered, by method and status",
      labelNames: ["method", "status"],
      registers,
    });
    this.duration = new Histogram({
      name: `${prefix}request_duration_seconds`,
      help: "Time from a WebDAV request's arrival to the end of its answer, by method",
      labelNames: ["method"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.received = new Counter({
      name: `${prefix}received_bytes_total`,
      help: "Bytes received from WebDAV clients (requests, head and body)",
      registers,
    });
    this.sent = new Counter({
      name: `${prefix}sent_bytes_total`,
      help: "Bytes sent to WebDAV clients (responses, head and body)",
      registers,
    });
    this.signInFailures = new Counter({
      name: `${prefix}sign_in_failures_total`,
      help: "Requests whose credentials were refused",
      registers,
    });
    this.signInsThrottled = new Counter({
      name: `${prefix}sign_ins_throttled_total`,
      help: "Requests refused with 429 after too many failed sign-ins from their address",
      registers,
    });
    this.upstreamCalls = new Counter({
      name: `${prefix}upstream_calls_total`,
      help: "Calls to Cloudreve (route: the API path without ids) and to its storage (download, storage), by result: ok, the HTTP status, the error class, or aborted",
      labelNames: ["method", "route", "result"],
      registers,
    });
    this.retries = new Counter({
      name: `${prefix}upstream_retries_total`,
      help: "Upstream calls tried again after a transient failure",
      registers,
    });
    this.cacheHits = new Counter({
      name: `${prefix}cache_hits_total`,
      help: "Lookups answered from memory: entry (metadata), listing, content (small files)",
      labelNames: ["kind"],
      registers,
    });
    this.cacheMisses = new Counter({
      name: `${prefix}cache_misses_total`,
      help: "Lookups that had to ask Cloudreve: entry (metadata), listing, content (small files)",
      labelNames: ["kind"],
      registers,
    });
    this.uploads = new Gauge({
      name: `${prefix}uploads_in_flight`,
      help: "Uploads to Cloudreve under way",
      registers,
    });
    // The gauges below are read from the accounts when scraped.
    new Gauge({
      name: `${prefix}upstream_queue_calls`,
      help: "Upstream calls of every account's request queue: running (holding a slot) or queued (waiting for one, or for their retry)",
      labelNames: ["state"],
      registers,
      collect() {
        const { queues } = status();
        this.set(
          { state: "running" },
          queues.reduce((n, q) => n + q.running, 0),
        );
        this.set(
          { state: "queued" },
          queues.reduce((n, q) => n + q.queued, 0),
        );
      },
    });
    new Gauge({
      name: `${prefix}event_stream_up`,
      help: "Per open account: 1 while Cloudreve's change events are followed, 0 while the stream is down or unavailable",
      labelNames: ["account"],
      registers,
      collect() {
        // An account closed since the last scrape leaves no series behind.
        this.reset();
        for (const a of status().accounts) this.set({ account: a.account }, a.following ? 1 : 0);
      },
    });
    new Gauge({
      name: `${prefix}accounts_open`,
      help: "Cloudreve accounts the gateway has open (its own, and users' own accounts in use)",
      registers,
      collect() {
        this.set(status().accounts.length);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  finished(r: FinishedRequest): void {
    this.requests.inc({ method: r.method, status: r.status });
    this.duration.observe({ method: r.method }, r.seconds);
    this.received.inc(r.received);
    this.sent.inc(r.sent);
  }

  signInRefused(throttled: boolean): void {
    (throttled ? this.signInsThrottled : this.signInFailures).inc();
  }

  called(method: string, route: string, result: string): void {
    this.upstreamCalls.inc({ method, route, result });
  }

  retried(): void {
    this.retries.inc();
  }

  cacheLookup(kind: "entry" | "listing" | "content", hit: boolean): void {
    (hit ? this.cacheHits : this.cacheMisses).inc({ kind });
  }

  uploading(change: 1 | -1): void {
    this.uploads.inc(change);
  }
}

/** The address of `metricsListen`: HOST:PORT, an IPv6 host in brackets; undefined for "off". */
export function metricsAddress(listen: string): { host: string; port: number } | undefined {
  if (listen === "off") return undefined;
  // The setting's pattern (config.ts) has checked the shape.
  const at = listen.lastIndexOf(":");
  return {
    host: listen.slice(0, at).replace(/^\[(.*)\]$/, "$1"),
    port: Number(listen.slice(at + 1)),
  };
}

/** Serves `GET /metrics` from `registry` at `address`, and nothing else. */
export async function serveMetrics(
  registry: Registry,
  address: { host: string; port: number },
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res
        .writeHead(404, { "content-type": "text/plain" })
        .end("not found: metrics are at /metrics");
      return;
    }
    registry.metrics().then(
      (text) =>
        res
          .writeHead(200, { "content-type": registry.contentType })
          .end(req.method === "HEAD" ? undefined : text),
      (err: unknown) =>
        res.writeHead(500, { "content-type": "text/plain" }).end(String((err as Error).message)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(address.port, address.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === "object" && bound ? bound.port : address.port;
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  return {
    url: `http://${host}:${port}/metrics`,
    close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // A scraper's kept-alive connection would hold the close; nothing on it is worth waiting for.
      server.closeAllConnections();
      return closed;
    },
  };
}
