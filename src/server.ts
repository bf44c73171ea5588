import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { CloudreveApi } from "./cloudreve/api.js";
import { upstreamCalls } from "./cloudreve/transport.js";
import type { Config } from "./config.js";
import { MemoryLockSystem } from "./dav/locks.js";
import { createDavHandler } from "./dav/server.js";
import { Drive } from "./drive/drive.js";
import type { Logger } from "./log.js";

export interface Gateway {
  /** The URL clients mount, e.g. http://127.0.0.1:8080/ */
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** How long in-flight requests may run on after a stop was asked for. */
const DRAIN_MS = 10_000;

/** A file name for the token state of one account on one site. */
function stateFileOf(config: Config): string {
  const site = new URL(config.upstream!).host.replace(/[^A-Za-z0-9.-]/g, "_");
  const who = (config.email ?? "token").replace(/[^A-Za-z0-9.@-]/g, "_");
  return join(config.stateDir, `${site}-${who}.json`);
}

/** Wires the layers (Cloudreve client → drive → WebDAV) and listens. */
export async function startGateway(config: Config, log: Logger): Promise<Gateway> {
  const api = new CloudreveApi({
    baseUrl: config.upstream!,
    email: config.email,
    password: config.password,
    refreshToken: config.refreshToken,
    stateFile: stateFileOf(config),
    queue: { concurrency: config.concurrency },
  });
  const drive = new Drive(api, {
    rootUri: config.rootUri,
    cacheTtlMs: config.cacheTtlSeconds * 1000,
    maxEntries: config.cacheMaxEntries,
    permanentDelete: config.permanentDelete,
    account: config.email ?? "token",
  });
  const handler = createDavHandler({
    fs: drive,
    locks: new MemoryLockSystem(),
    users: config.users,
    log,
    upstreamCalls,
    downloadMode: config.downloadMode,
    lockTimeoutMaxSeconds: config.lockTimeoutMaxSeconds,
  });
  const server = createServer(handler);
  // Large uploads stream for a long time; Node's default request timeout (5 min) would cut them.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;

  return {
    url: `http://${host}:${port}/`,
    server,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // In-flight requests get a bounded time; then their sockets go, which aborts their
      // upstream work and makes unfinished uploads cancel their sessions.
      const timer = setTimeout(() => server.closeAllConnections(), DRAIN_MS);
      await closed;
      clearTimeout(timer);
      await api.close();
    },
  };
}
