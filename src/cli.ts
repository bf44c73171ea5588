#!/usr/bin/env node
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline/promises";
import { ConfigError, loadConfig, usage, type Config } from "./config.js";
import { hashPassword } from "./dav/basic-auth.js";
import { createLogger } from "./log.js";
import { startGateway } from "./server.js";

async function readPassword(): Promise<string> {
  const rl = createInterface({
    input: process.stdin,
    output: process.stderr,
    terminal: process.stdin.isTTY,
  });
  const answer = await rl.question(process.stdin.isTTY ? "password: " : "");
  rl.close();
  return answer;
}

/** No upstream configured: an emulated Cloudreve in-process, so there is something to mount. */
async function startDemoUpstream(config: Config): Promise<{ close(): Promise<void> }> {
  const { startEmulator } = await import("./emulator/index.js");
  const email = "demo@example.com";
  const password = randomBytes(9).toString("base64url");
  const emulator = await startEmulator({ email, password });
  config.upstream = emulator.url;
  config.email = email;
  config.password = password;
  config.refreshToken = undefined;
  return emulator;
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
  if (loaded.positionals[0] === "hash-password") {
    process.stdout.write(`${await hashPassword(await readPassword())}\n`);
    return 0;
  }
  if (loaded.positionals.length > 0) {
    process.stderr.write(`cloudreve-dav: unknown command "${loaded.positionals[0]}"\n${usage()}\n`);
    return 2;
  }

  const { config } = loaded;
  const log = createLogger(config.logLevel);
  const demo = config.upstream ? undefined : await startDemoUpstream(config);
  const gateway = await startGateway(config, log);
  if (demo) {
    process.stdout.write(
      `\nDemo mode: no upstream is configured, so an emulated Cloudreve runs in this process.\n` +
        `Mount ${gateway.url} (WebDAV, no login needed on this machine).\n` +
        `Demo Cloudreve account: ${config.email} / ${config.password} at ${config.upstream}\n` +
        `Serve your own drive with: npm start -- --upstream https://your.cloudreve --email you@example.com --password …\n\n`,
    );
  }
  log.info({ url: gateway.url, upstream: config.upstream, demo: Boolean(demo) }, "serving WebDAV");

  await new Promise<void>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve());
  });
  log.info("stopping: finishing in-flight requests");
  await gateway.close();
  await demo?.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`cloudreve-dav: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
