import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { CloudreveApi } from "./cloudreve/api.js";
import { ChangeFeed, loadClientId } from "./cloudreve/events.js";
import { upstreamCalls } from "./cloudreve/transport.js";
import type { Config } from "./config.js";
import { MemoryLockSystem } from "./dav/locks.js";
import { createDavHandler } from "./dav/server.js";
import { AppleDoubleOverlay } from "./drive/appledouble.js";
import { Drive } from "./drive/drive.js";
import type { Logger } from "./log.js";

export interface Gateway {
  /** The URL clients mount, e.g. http://127.0.0.1:8080/ */
  url: string;
  server: Server;
  /** Logs in upstream and asks for the account, so bad credentials show at start. */
  checkUpstream(): Promise<{ user: string }>;
  /**
   * Stops accepting, lets in-flight requests finish for `shutdownTimeoutSeconds`, then cuts
   * the rest (their unfinished upload sessions are cancelled upstream) and waits for that
   * clean-up, bounded too.
   */
  close(): Promise<void>;
}

/** After the drain, how long cut requests get to clean up upstream (cancel upload sessions). */
const CLEANUP_MS = 10_000;

/** Resolves with `promise` or after `ms`, whichever comes first; true when it settled. */
function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The settings of a gateway with its upstream known (configured, or demo mode's emulator). */
export type GatewayConfig = Config & { upstream: string };

/** A name for one account on one site, for the files the gateway keeps of it. */
function accountOf(config: GatewayConfig): string {
  const site = new URL(config.upstream).host.replace(/[^A-Za-z0-9.-]/g, "_");
  const who = (config.email ?? "token").replace(/[^A-Za-z0-9.@-]/g, "_");
  return `${site}-${who}`;
}

/**
 * Keeps the drive's cache in step with Cloudreve's change events on the served folder (§5.12):
 * each event forgets the paths it names, and while events flow what is cached is trusted for
 * the longer lifetime. Whatever may have been missed (a reconnect, a full buffer) forgets
 * everything; without events the shorter lifetime alone applies.
 */
function followChanges(api: CloudreveApi, drive: Drive, config: GatewayConfig, log: Logger) {
  const ttl = { cacheTtlSeconds: config.cacheTtlSeconds };
  // A cache turned off (TTL 0) stays off: events only lengthen a cache that is on.
  const ttlWithEvents = config.cacheTtlSeconds === 0 ? 0 : config.cacheTtlWithEventsSeconds;
  let openedBefore = false;
  let up = false;
  /** A stream that stopped (or never opened) is told once, until one opens again. */
  let told = false;
  return new ChangeFeed(api.transport, config.rootUri, {
    opened() {
      // Opened again, resumed or not: events may have been dropped while it was closed.
      if (openedBefore) drive.forgetAll();
      if (!openedBefore || told) {
        const withEvents = { cacheTtlSeconds: ttlWithEvents };
        log.info(withEvents, "following Cloudreve's change events");
      }
      openedBefore = up = true;
      told = false;
      drive.setCacheTtl(ttlWithEvents * 1000);
    },
    changed(events, complete) {
      if (!complete) return drive.forgetAll();
      try {
        // Paths are relative to the subscribed folder, which is the gateway's "/".
        for (const { from, to } of events)
          for (const path of [from, to]) if (path) drive.forget(path);
      } catch {
        drive.forgetAll(); // a path the drive cannot take: the safe answer
      }
    },
    down(err) {
      if (up) {
        drive.setCacheTtl(ttl.cacheTtlSeconds * 1000);
        drive.forgetAll();
      }
      if (!told) {
        log.warn(
          { ...ttl, problem: err.message },
          "Cloudreve's change events stopped: reconnecting, and trusting the cache for the shorter time meanwhile",
        );
      }
      up = false;
      told = true;
    },
    unavailable(err) {
      log.info(
        { ...ttl, problem: err.message },
        "Cloudreve sends no change events (turned off, or older than 4.11): the cache is trusted for the shorter time",
      );
    },
  });
}

/** Wires the layers (Cloudreve client → drive → WebDAV) and listens. */
export async function startGateway(config: GatewayConfig, log: Logger): Promise<Gateway> {
  const account = accountOf(config);
  const api = new CloudreveApi({
    baseUrl: config.upstream,
    clientId: await loadClientId(join(config.stateDir, "client-id", account)),
    email: config.email,
    password: config.password,
    refreshToken: config.refreshToken,
    stateFile: join(config.stateDir, `${account}.json`),
    uploadJournalDir: join(config.stateDir, "uploads", account),
    log,
    timeouts: {
      connectMs: config.upstreamConnectTimeoutSeconds * 1000,
      headersMs: config.upstreamResponseTimeoutSeconds * 1000,
      bodyIdleMs: config.upstreamIdleTimeoutSeconds * 1000,
    },
    queue: { concurrency: config.concurrency },
    auth: {
      // Once per outage: every request fails with this until the operator acts.
      onCredentialsRefused: (err) =>
        log.error(
          { upstream: config.upstream, problem: err.message },
          "Cloudreve refused the gateway's credentials: WebDAV requests answer 503 until this is fixed",
        ),
    },
  });
  // Upload sessions a crash left behind hold their paths locked upstream for a day: cancel them.
  // In the background, so an unreachable upstream does not delay the start.
  const recovered = api.journal
    .recover(api)
    .catch((err: unknown) =>
      log.warn({ err }, "could not cancel the upload sessions of an earlier run"),
    );
  const drive = new Drive(api, {
    rootUri: config.rootUri,
    cacheTtlMs: config.cacheTtlSeconds * 1000,
    maxEntries: config.cacheMaxEntries,
    permanentDelete: config.permanentDelete,
    directUploadMaxBytes: config.directUploadMaxBytes,
    account: config.email ?? "token",
    log,
  });
  const fs =
    config.appleDouble === "local"
      ? new AppleDoubleOverlay(drive, join(config.stateDir, "appledouble", account))
      : drive;
  const handler = createDavHandler({
    fs,
    locks: new MemoryLockSystem(),
    users: config.users,
    log,
    upstreamCalls,
    downloadMode: config.downloadMode,
    lockTimeoutMaxSeconds: config.lockTimeoutMaxSeconds,
  });
  let closing = false;
  const server = createServer((req, res) => {
    // Once stopping, a kept-alive connection goes as soon as its last reply is out.
    res.once("finish", () => {
      if (closing) setImmediate(() => server.closeIdleConnections());
    });
    handler(req, res);
  });
  // Large uploads stream for a long time; Node's default request timeout (5 min) would cut them.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;

  const url = `http://${host}:${port}/`;
  let closed: Promise<void> | undefined;
  const changes = followChanges(api, drive, config, log);

  async function stop(): Promise<void> {
    closing = true;
    // The stream never ends by itself: it would hold the upstream connections open.
    await changes.close();
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    if (!(await within(stopped, (config.shutdownTimeoutSeconds ?? 10) * 1000))) {
      log.warn(
        { timeoutSeconds: config.shutdownTimeoutSeconds },
        "in-flight requests did not finish in time: cutting them",
      );
      // Their sockets go, which aborts their upstream work; unfinished uploads cancel their sessions.
      server.closeAllConnections();
      await stopped;
    }
    if (!(await within(Promise.all([drive.writesSettled(), recovered]), CLEANUP_MS))) {
      log.warn("upstream clean-up did not finish in time");
    }
    if (!(await within(api.close(), CLEANUP_MS))) {
      log.warn("upstream connections did not close in time");
    }
  }

  return {
    url,
    server,
    async checkUpstream() {
      const me = await api.me();
      return { user: me.email ?? me.nickname };
    },
    close() {
      closed ??= stop();
      return closed;
    },
  };
}
