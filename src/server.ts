import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { createSecureContext } from "node:tls";
import { LocalState, RedisState, type SharedState } from "./shared/state.js";
import { Accounts, within } from "./accounts.js";
import { upstreamCalls } from "./cloudreve/transport.js";
import { ConfigError, isLoopback, requiresSignIn, type Config } from "./config.js";
import { BasicAuth } from "./dav/basic-auth.js";
import { createDavHandler } from "./dav/server.js";
import { Probes } from "./health.js";
import type { Logger } from "./log.js";
import { Metrics, metricsAddress, serveMetrics } from "./metrics.js";
import { HtpasswdError, LocalPasswords, readHtpasswd } from "./passwords.js";

export interface Gateway {
  /** The URL clients mount, e.g. http://127.0.0.1:8080/ */
  url: string;
  /** Where Prometheus scrapes; absent when `metricsListen` is "off" or its address was taken. */
  metricsUrl?: string;
  server: Server;
  /**
   * Logs the gateway's own account in and asks who it is, so bad credentials show at start;
   * with Cloudreve sign-in, asks the site for its version.
   */
  checkUpstream(): Promise<{ user?: string; version?: string }>;
  /** Reads the TLS certificate and the htpasswd file again (SIGHUP); a bad one keeps the old. */
  reload(): Promise<void>;
  /**
   * Stops accepting, lets in-flight requests finish for `shutdownTimeoutSeconds`, then cuts
   * the rest (their unfinished upload sessions are cancelled upstream) and waits for that
   * clean-up, bounded too.
   */
  close(): Promise<void>;
}

/**
 * The settings of a gateway with its upstream known (configured, or demo mode's emulator), and,
 * in a worker of `--workers`, which of them it is (1 to N, kept by the worker restarted in its place).
 */
export type GatewayConfig = Config & { upstream: string; workerSlot?: number };

function readTls(config: Config): { cert: Buffer; key: Buffer } | undefined {
  if (!config.tlsCert || !config.tlsKey) return undefined;
  const read = (key: "tlsCert" | "tlsKey") => {
    try {
      return readFileSync(config[key]!);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new ConfigError(`${key}: ${config[key]} cannot be read (${e.code ?? e.message})`);
    }
  };
  const pair = { cert: read("tlsCert"), key: read("tlsKey") };
  try {
    createSecureContext(pair);
  } catch (err) {
    throw new ConfigError(
      `tlsCert, tlsKey: ${config.tlsCert} and ${config.tlsKey} are not a PEM certificate and its key (${(err as Error).message})`,
    );
  }
  return pair;
}

async function loadHtpasswd(config: Config): Promise<Map<string, string> | undefined> {
  if (config.htpasswd === undefined) return undefined;
  try {
    return await readHtpasswd(config.htpasswd);
  } catch (err) {
    if (err instanceof HtpasswdError) throw new ConfigError(`htpasswd: ${err.message}`);
    throw err;
  }
}

/** Redis for shared state, reached at start: an unreachable one is a setting to fix. */
async function openShared(url: string, log: Logger): Promise<RedisState> {
  try {
    return await RedisState.open(url, log);
  } catch (err) {
    throw new ConfigError(
      `redis: cannot reach Redis (${(err as Error).message}). Example: --redis redis://127.0.0.1:6379`,
    );
  }
}

/**
 * Wires the layers (Cloudreve client → drive → WebDAV) and listens. `shared` (a worker of
 * `--workers`, without --redis) replaces this process's own state; it is closed with the gateway.
 */
export async function startGateway(
  config: GatewayConfig,
  log: Logger,
  options: { shared?: SharedState } = {},
): Promise<Gateway> {
  const tls = readTls(config);
  const passwords = new LocalPasswords(config.users, await loadHtpasswd(config));
  let auth: BasicAuth | undefined;
  const metricsAt = metricsAddress(config.metricsListen);
  // Made only when asked for: with "off", no layer is observed at all.
  const metrics: Metrics | undefined = metricsAt && new Metrics(() => accounts.status());
  const shared =
    options.shared ?? (config.redis ? await openShared(config.redis, log) : new LocalState());
  const accounts = new Accounts(config, log, shared, (user) => auth?.forget(user), metrics);
  await accounts.start();
  if (requiresSignIn(config)) {
    auth = new BasicAuth(
      config.auth === "cloudreve"
        ? (email, password) => accounts.checkCloudreveLogin(email, password)
        : async (name, password) => ((await passwords.verify(name, password)) ? name : undefined),
    );
  }
  const handler = createDavHandler({
    auth,
    workspace: (user) => accounts.workspace(user),
    baseUrl: config.baseUrl,
    trustedProxies: config.trustedProxy,
    log,
    upstreamCalls,
    observer: metrics,
    downloadMode: config.downloadMode,
    lockTimeoutMaxSeconds: config.lockTimeoutMaxSeconds,
  });
  let closing = false;
  const probes = new Probes(
    () => accounts.checkUpstream(),
    () => closing,
  );
  const serve = (req: IncomingMessage, res: ServerResponse) => {
    // Once stopping, a kept-alive connection goes as soon as its last reply is out.
    res.once("finish", () => {
      if (closing) setImmediate(() => server.closeIdleConnections());
    });
    if (!probes.answer(req, res)) handler(req, res);
  };
  const secure = tls ? createTlsServer(tls, serve) : undefined;
  const server: Server = secure ?? createServer(serve);
  // Large uploads stream for a long time; Node's default request timeout (5 min) would cut them.
  server.requestTimeout = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (err) {
    // Nothing may keep signing in for a gateway that never started.
    await accounts.close();
    await shared.close();
    throw err;
  }
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `${tls ? "https" : "http"}://${host}:${port}${config.baseUrl}/`;
  if (!tls && !isLoopback(config.host)) {
    log.warn(
      { host: config.host },
      "serving plain HTTP on a non-loopback address: Basic passwords travel in clear unless a TLS proxy is in front (or use --tls-cert and --tls-key)",
    );
  }
  let served: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  if (metricsAt && metrics) {
    try {
      served = await serveMetrics(metrics.registry, metricsAt);
      // Not `url`: that field names the WebDAV URL in the start line.
      log.info({ metricsUrl: served.url }, "serving Prometheus metrics");
    } catch (err) {
      // Metrics are for the operator, the drive is for the clients: a taken address (say, a
      // second gateway on the host with the default) is told, and the drive is served anyway.
      log.warn(
        { metricsListen: config.metricsListen, problem: (err as Error).message },
        "Prometheus metrics are not served: their address could not be had",
      );
    }
  }
  let closed: Promise<void> | undefined;

  async function stop(): Promise<void> {
    closing = true;
    const metricsClosed = served?.close();
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
    await Promise.all([accounts.close(), metricsClosed]);
    await shared.close();
  }

  return {
    url,
    metricsUrl: served?.url,
    server,
    checkUpstream: () => accounts.checkUpstream(),
    async reload() {
      // Each file on its own: a bad one keeps what was loaded from it, not the other.
      try {
        const fresh = readTls(config);
        if (fresh && secure) secure.setSecureContext(fresh);
        if (fresh) log.info("reloaded the TLS certificate");
      } catch (err) {
        log.error(
          { problem: (err as Error).message },
          "TLS reload failed: keeping the certificate",
        );
      }
      try {
        const entries = await loadHtpasswd(config);
        if (entries) {
          passwords.replaceHtpasswd(entries);
          // A changed or removed password must not live on in a remembered sign-in.
          auth?.forgetAll();
          log.info({ users: entries.size }, "reloaded the htpasswd file");
        }
      } catch (err) {
        log.error({ problem: (err as Error).message }, "htpasswd reload failed: keeping its users");
      }
    },
    close() {
      closed ??= stop();
      return closed;
    },
  };
}
