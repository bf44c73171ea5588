import { afterAll, beforeAll } from "vitest";
import { startEmulator } from "../../src/emulator/index.js";
import type { EmulatorOptions, RunningEmulator } from "../../src/emulator/options.js";
import { defaults, type Config } from "../../src/config.js";
import { createLogger } from "../../src/log.js";
import { startGateway, type Gateway } from "../../src/server.js";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EMAIL, PASSWORD } from "./emulator.js";
import { resetStats, stats, type EmulatorStats } from "./control.js";
import { until } from "./wait.js";

const EVENTS = "GET /api/v4/file/events";

export interface GatewayFixture {
  emu: RunningEmulator;
  gw: Gateway;
  /** The gateway's base URL without the trailing slash. */
  url: string;
  /** Upstream call counts since the last reset. */
  stats(): Promise<EmulatorStats>;
  resetStats(): Promise<void>;
}

/** An emulator and a gateway in front of it, for the enclosing describe block. */
export function useGateway(
  emulatorOptions: EmulatorOptions = {},
  config: Partial<Config> = {},
): GatewayFixture {
  const fx = {} as GatewayFixture;
  beforeAll(async () => {
    fx.emu = await startEmulator({ email: EMAIL, password: PASSWORD, ...emulatorOptions });
    const stateDir = await mkdtemp(join(tmpdir(), "cloudreve-dav-test-"));
    fx.gw = await startGateway(
      {
        ...defaults(),
        upstream: fx.emu.url,
        email: EMAIL,
        password: PASSWORD,
        stateDir,
        port: 0,
        // A port of its own for each gateway: suites run side by side.
        metricsListen: "127.0.0.1:0",
        ...config,
      },
      createLogger("silent"),
    );
    fx.url = fx.gw.url.replace(/\/$/, "");
    fx.stats = () => stats(fx.emu.url);
    fx.resetStats = () => resetStats(fx.emu.url);
    // The gateway subscribes to change events once it listens (signing in first): the suite
    // starts once it has, so that its counts and faults meet a quiet upstream.
    // With Cloudreve sign-in there is no account of the gateway's own until someone signs in.
    if ((emulatorOptions.events ?? "on") !== "absent" && config.auth !== "cloudreve") {
      await until(
        "the gateway to subscribe to change events",
        async () => ((await fx.stats()).requests[EVENTS] ?? 0) > 0,
        10_000,
      );
    }
  });
  afterAll(async () => {
    await fx.gw?.close();
    await fx.emu?.close();
  });
  return fx;
}
