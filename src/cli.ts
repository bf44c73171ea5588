#!/usr/bin/env node
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline/promises";
import { Writable } from "node:stream";
import { ConfigError, loadConfig, requiresSignIn, usage, type Config } from "./config.js";
import { hashPassword } from "./passwords.js";
import { createLogger } from "./log.js";
import { startGateway, type Gateway, type GatewayConfig } from "./server.js";

/** The first line of standard input; on a terminal it is asked for and not echoed. */
async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    let text = "";
    for await (const chunk of process.stdin) {
      text += String(chunk);
      if (text.includes("\n")) break;
    }
    return text.split(/\r?\n/)[0] ?? "";
  }
  // readline echoes what is typed to its output: give it one that shows nothing.
  const silent = new Writable({ write: (_chunk, _enc, done) => done() });
  const rl = createInterface({ input: process.stdin, output: silent, terminal: true });
  process.stderr.write("password: ");
  try {
    return await rl.question("");
  } finally {
    rl.close();
    process.stderr.write("\n");
  }
}

async function hashPasswordCommand(): Promise<number> {
  const password = await readPassword();
  if (password === "") {
    process.stderr.write(
      "cloudreve-dav hash-password: no password given. Example: echo 'a long passphrase' | cloudreve-dav hash-password\n",
    );
    return 2;
  }
  process.stdout.write(`${await hashPassword(password)}\n`);
  return 0;
}

interface Demo {
  /** The emulated upstream and its account, in place of the configured ones. */
  upstream: Pick<Config, "email" | "password" | "refreshToken" | "stateDir"> & {
    upstream: string;
  };
  close(): Promise<void>;
}

/** No upstream configured: an emulated Cloudreve in-process, so there is something to mount. */
async function startDemoUpstream(): Promise<Demo> {
  const { startEmulator } = await import("./emulator/index.js");
  const email = "demo@example.com";
  const password = randomBytes(9).toString("base64url");
  const emulator = await startEmulator({ email, password });
  // The demo account's tokens are thrown away with it, not kept in the state directory.
  const stateDir = await mkdtemp(join(tmpdir(), "cloudreve-dav-demo-"));
  return {
    upstream: { upstream: emulator.url, email, password, refreshToken: undefined, stateDir },
    async close() {
      await emulator.close();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
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
  if (loaded.positionals[0] === "hash-password" && loaded.positionals.length === 1) {
    return hashPasswordCommand();
  }
  if (loaded.positionals.length > 0) {
    process.stderr.write(
      `cloudreve-dav: unknown command "${loaded.positionals.join(" ")}"\n${usage()}\n`,
    );
    return 2;
  }

  const log = createLogger(loaded.config.logLevel);
  const { upstream } = loaded.config;
  let config: GatewayConfig;
  let demo: Demo | undefined;
  if (upstream) config = { ...loaded.config, upstream };
  else {
    demo = await startDemoUpstream();
    config = { ...loaded.config, ...demo.upstream };
  }
  let gateway: Gateway;
  try {
    gateway = await startGateway(config, log);
  } catch (err) {
    await demo?.close();
    if (err instanceof ConfigError) {
      process.stderr.write(`cloudreve-dav: ${err.message}\n`);
      return 2;
    }
    const problem = listenProblem(err as NodeJS.ErrnoException, config);
    if (!problem) throw err;
    process.stderr.write(`cloudreve-dav: ${problem}\n`);
    return 1;
  }
  if (demo) {
    process.stdout.write(
      `\nDemo mode: no upstream is configured, so an emulated Cloudreve runs in this process.\n` +
        `Mount ${gateway.url} (WebDAV, no login needed on this machine).\n` +
        `Demo Cloudreve account: ${config.email} / ${config.password} at ${config.upstream}\n` +
        `Serve your own drive with: npm start -- --upstream https://your.cloudreve --email you@example.com --password …\n\n`,
    );
  }
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

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    for (const s of ["SIGINT", "SIGTERM"] as const) process.once(s, () => resolve(s));
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
