#!/usr/bin/env node
import cluster from "node:cluster";
import { readFileSync } from "node:fs";
import {
  commandName,
  ConfigError,
  loadConfig,
  requiresSignIn,
  usage,
  type Config,
} from "./config.js";
import { hashPassword } from "./passwords.js";
import { loginCommand } from "./login.js";
import { Prompter } from "./prompt.js";
import { createLogger } from "./log.js";
import { startGateway, type Gateway, type GatewayConfig } from "./server.js";
import { isStop, READY, runPrimary, workerSlot } from "./workers.js";
import type { Demo } from "./demo.js";
import { WorkerState } from "./shared/primary-state.js";
import type { SharedState } from "./shared/state.js";

async function hashPasswordCommand(): Promise<number> {
  const prompter = new Prompter();
  const password = await prompter
    .ask("password: ", { secret: true })
    .finally(() => prompter.close());
  if (!password) {
    process.stderr.write(
      `cloudreve-dav hash-password: no password given. Example: echo 'a long passphrase' | ${commandName()} hash-password\n`,
    );
    return 2;
  }
  process.stdout.write(`${await hashPassword(password)}\n`);
  return 0;
}

/** A listen error a person can act on. */
function listenProblem(err: NodeJS.ErrnoException, config: Config): string | undefined {
  switch (err.code) {
    case "EADDRINUSE":
      return `port ${config.port} on ${config.host} is already in use. Example: --port 8081`;
    case "EACCES":
      return `not allowed to listen on port ${config.port} (ports below 1024 need privileges). Example: --port 8080`;
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
      return `host ${config.host} is not an address of this machine. Example: --host 127.0.0.1`;
    default:
      return undefined;
  }
}

async function main(): Promise<number> {
  let loaded;
  try {
    loaded = loadConfig(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`cloudreve-dav: ${err.message}\n`);
    return 2;
  }
  if (loaded.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  if (loaded.version) {
    // package.json sits one folder above this file, in a checkout (src/, dist/) and installed.
    const pkg = readFileSync(new URL("../package.json", import.meta.url), "utf8");
    process.stdout.write(`${(JSON.parse(pkg) as { version: string }).version}\n`);
    return 0;
  }
  if (loaded.positionals[0] === "hash-password" && loaded.positionals.length === 1) {
    return hashPasswordCommand();
  }
  if (loaded.positionals[0] === "login" && loaded.positionals.length === 1) {
    return loginCommand(loaded.config);
  }
  if (loaded.positionals.length > 0) {
    process.stderr.write(
      `cloudreve-dav: unknown command "${loaded.positionals.join(" ")}"\n${usage()}\n`,
    );
    return 2;
  }

  const log = createLogger(loaded.config.logLevel);
  // --workers N: this process forks the N gateway processes and waits for them (src/workers.ts).
  const worker = loaded.config.workers > 1 && cluster.isWorker;
  if (loaded.config.workers > 1 && cluster.isPrimary) {
    return runPrimary(loaded.config, log);
  }
  const { upstream } = loaded.config;
  let config: GatewayConfig;
  let demo: Demo | undefined;
  let shared: SharedState | undefined;
  if (worker) {
    // The primary said why metrics are off; without --redis, locks and notices are its.
    loaded.config.metricsListen = "off";
    if (!loaded.config.redis) shared = new WorkerState();
  }
  // Demo mode is refused with --workers above 1 (config.ts): its emulator is one process's.
  if (upstream)
    config = { ...loaded.config, upstream, workerSlot: worker ? workerSlot() : undefined };
  else {
    // Loaded only here: demo mode alone brings the emulator into the process.
    const { startDemoUpstream } = await import("./demo.js");
    demo = await startDemoUpstream();
    config = { ...loaded.config, ...demo.upstream };
  }
  let gateway: Gateway;
  try {
    gateway = await startGateway(config, log, { shared });
  } catch (err) {
    await demo?.close();
    await shared?.close();
    if (err instanceof ConfigError) {
      process.stderr.write(`cloudreve-dav: ${err.message}\n`);
      return 2;
    }
    const problem = listenProblem(err as NodeJS.ErrnoException, config);
    if (!problem) throw err;
    process.stderr.write(`cloudreve-dav: ${problem}\n`);
    return 1;
  }
  if (demo) process.stdout.write(demo.banner(gateway.url, requiresSignIn(config)));
  log.info(
    {
      url: gateway.url,
      upstream: config.upstream,
      demo: Boolean(demo),
      auth: requiresSignIn(config) ? config.auth : "none",
    },
    "serving WebDAV",
  );
  process.on("SIGHUP", () => void gateway.reload());
  if (worker) process.send?.({ type: READY });
  if (!demo) {
    gateway.checkUpstream().then(
      ({ user, version }) =>
        log.info(user ? { user } : { version }, user ? "logged in upstream" : "upstream answers"),
      (err: unknown) =>
        log.error(
          { upstream: config.upstream, problem: (err as Error).message },
          "cannot log in upstream yet; requests will fail until it works (check upstream, email and password)",
        ),
    );
  }

  const signal = await new Promise<NodeJS.Signals | "primary">((resolve) => {
    for (const s of ["SIGINT", "SIGTERM"] as const) process.once(s, () => resolve(s));
    // A worker is told by its primary, not by a signal: a terminal's Ctrl-C reaches every
    // process of the group, and a forwarded signal would then count as the second one.
    if (worker) {
      const onMessage = (msg: unknown) => {
        if (!isStop(msg)) return;
        process.off("message", onMessage);
        resolve("primary");
      };
      process.on("message", onMessage);
    }
  });
  log.info(
    { signal, timeoutSeconds: config.shutdownTimeoutSeconds },
    "stopping: finishing in-flight requests (signal again to stop at once)",
  );
  for (const s of ["SIGINT", "SIGTERM"] as const) {
    process.once(s, () => {
      log.warn({ signal: s }, "stopping at once");
      process.exit(1);
    });
  }
  await gateway.close();
  await demo?.close();
  log.info("stopped");
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`cloudreve-dav: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
