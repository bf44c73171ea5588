/**
 * The token pair's life beyond single calls, against the emulator over HTTP: the refresh token
 * is renewed in the background before it expires (even when the client is idle), a failed
 * background renewal is retried, and a refused refresh token either falls back to the password
 * or, with none, fails fast and is reported once. The renewal timer is fired by hand while the
 * emulator's clock moves, so no test waits for real time.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { CloudreveApi } from "../../src/cloudreve/api.js";
import type { SetTimer } from "../../src/cloudreve/auth.js";
import { startEmulator } from "../../src/emulator/index.js";
import { CredentialInvalid, type GatewayError } from "../../src/errors.js";
import { EMAIL, PASSWORD, useEmulator } from "../helpers/emulator.js";
import { newClient, type ClientOptions } from "./client-helpers.js";
import {
  emulatorClock,
  R,
  resetStats,
  setFaults,
  stats,
  type FaultRule,
} from "../helpers/control.js";

const ACCESS_TTL = 600;
const REFRESH_TTL = 3600;

type Clock = Awaited<ReturnType<typeof emulatorClock>>;

/** The renewal timer as the test drives it: what is armed, and firing it at its time. */
function manualTimer() {
  let armed: { fire: () => Promise<void>; delayMs: number } | undefined;
  const setTimer: SetTimer = (fire, delayMs) => {
    const entry = { fire, delayMs };
    armed = entry;
    return () => {
      if (armed === entry) armed = undefined;
    };
  };
  return {
    setTimer,
    get armed() {
      return armed;
    },
    /**
     * Moves both clocks past the armed time, fires, waits for its work; resolves to the delay.
     * The extra second covers the client's reading of the emulator's clock, which lags by the
     * control call's latency, so that a busy machine cannot make the timer look early.
     */
    async fire(clock: Clock): Promise<number> {
      const entry = armed;
      if (!entry) throw new Error("no renewal is armed");
      armed = undefined;
      await clock.advance(entry.delayMs / 1000 + 1);
      await entry.fire();
      return entry.delayMs;
    },
  };
}

async function signOut(base: string, refreshToken: string): Promise<void> {
  const res = await fetch(`${base}/api/v4/session/token`, {
    method: "DELETE",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  expect(((await res.json()) as { code: number }).code).toBe(0);
}

/** The code the upstream answers a refresh with this token (0 when it is still good). */
async function refreshCode(base: string, refreshToken: string): Promise<number> {
  const res = await fetch(`${base}/api/v4/session/token/refresh`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  return ((await res.json()) as { code: number }).code;
}

const expiry = (api: CloudreveApi) => Date.parse(api.transport.auth.current!.refresh_expires);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "token-lifecycle-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("token lifecycle", () => {
  const ctx = useEmulator({ accessTtl: ACCESS_TTL, refreshTtl: REFRESH_TTL });
  const clients: CloudreveApi[] = [];
  const client = (options: ClientOptions = {}) => {
    const c = newClient(ctx.emu.url, options);
    clients.push(c);
    return c;
  };
  /** A refresh token from a login of its own (a browser session the operator copied it from). */
  const browserRefreshToken = async () => {
    await ctx.api.login();
    return ctx.api.refreshToken!;
  };
  beforeEach(() => resetStats(ctx.emu.url));
  afterEach(() => setFaults(ctx.emu.url, []));
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  it("a client with only a refresh token, idle for three refresh lifetimes, keeps working", async () => {
    const configured = await browserRefreshToken();
    const clock = await emulatorClock(ctx.emu.url);
    const timer = manualTimer();
    await resetStats(ctx.emu.url);
    const api = client({
      password: undefined,
      refreshToken: configured,
      auth: { now: clock.now, setTimer: timer.setTimer },
    });
    await api.me();

    let idleMs = 0;
    let fires = 0;
    while (idleMs <= 3 * REFRESH_TTL * 1000) {
      const before = expiry(api);
      const delayMs = await timer.fire(clock);
      idleMs += delayMs;
      fires++;
      expect(delayMs).toBeLessThan(REFRESH_TTL * 1000); // before the token it renews expires
      expect(expiry(api)).toBeGreaterThan(before);
    }

    expect(await refreshCode(ctx.emu.url, configured)).toBe(40020); // long dead on its own
    expect((await api.me()).email).toBe(EMAIL);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1 + fires + 1); // + the probe of the configured token
    expect(s.requests[R.login]).toBeUndefined();
    expect(s.requests[R.me]).toBe(2);
  });

  it("a refresh lifetime shorter than the access margin is renewed in time, not in a loop", async () => {
    // 2-minute refresh tokens, hour-long access tokens: only the timer keeps the pair alive.
    const short = await startEmulator({
      email: EMAIL,
      password: PASSWORD,
      accessTtl: 3600,
      refreshTtl: 120,
    });
    const clock = await emulatorClock(short.url);
    const timer = manualTimer();
    const login = await fetch(`${short.url}/api/v4/session/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
    });
    const configured = ((await login.json()) as { data: { token: { refresh_token: string } } }).data
      .token.refresh_token;
    const api = newClient(short.url, {
      password: undefined,
      refreshToken: configured,
      auth: { now: clock.now, setTimer: timer.setTimer },
    });
    try {
      await api.me();
      let idleMs = 0;
      let fires = 0;
      while (idleMs <= 5 * 120_000) {
        const delayMs = await timer.fire(clock);
        idleMs += delayMs;
        fires++;
        expect(delayMs).toBeLessThan(120_000);
        expect(delayMs).toBeGreaterThanOrEqual(10_000);
      }
      expect((await api.me()).email).toBe(EMAIL);
      const s = await stats(short.url);
      expect(s.requests[R.login]).toBe(1); // the test's own, for the token
      expect(s.requests[R.refresh]).toBe(1 + fires);
    } finally {
      await api.close();
      await short.close();
    }
  });

  it.each<FaultRule["failWith"]>([502, "reset"])(
    "a background renewal that fails (%s) is retried later, sooner than expiry",
    async (failWith) => {
      const configured = await browserRefreshToken();
      const clock = await emulatorClock(ctx.emu.url);
      const timer = manualTimer();
      const api = client({
        password: undefined,
        refreshToken: configured,
        auth: { now: clock.now, setTimer: timer.setTimer },
      });
      await api.me();
      const before = expiry(api);
      await setFaults(ctx.emu.url, [{ route: R.refresh, failWith, times: 3 }]);
      await resetStats(ctx.emu.url);

      const delays: number[] = [];
      for (let i = 0; i < 3; i++) {
        await timer.fire(clock);
        expect(expiry(api)).toBe(before); // not renewed yet
        const retry = timer.armed;
        expect(retry).toBeDefined();
        expect(clock.now() + retry!.delayMs).toBeLessThan(before);
        delays.push(retry!.delayMs);
      }
      // Backing off, never a tight loop.
      expect(delays[0]).toBeGreaterThanOrEqual(10_000);
      expect(delays[1]).toBeGreaterThan(delays[0]!);
      expect(delays[2]).toBeGreaterThan(delays[1]!);

      await timer.fire(clock);
      expect(expiry(api)).toBeGreaterThan(before);
      expect(timer.armed).toBeDefined(); // the next renewal
      expect((await api.me()).email).toBe(EMAIL);
      const s = await stats(ctx.emu.url);
      expect(s.requests[R.refresh]).toBe(4);
      expect(s.requests[R.login]).toBeUndefined();
    },
  );

  it("a signed-out refresh token with a password: the background renewal logs in again", async () => {
    const clock = await emulatorClock(ctx.emu.url);
    const timer = manualTimer();
    const refusals: GatewayError[] = [];
    const api = client({
      auth: {
        now: clock.now,
        setTimer: timer.setTimer,
        onCredentialsRefused: (e) => refusals.push(e),
      },
    });
    await api.me();
    await signOut(ctx.emu.url, api.transport.auth.current!.refresh_token);
    await resetStats(ctx.emu.url);

    await timer.fire(clock);
    let s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1); // refused
    expect(s.requests[R.login]).toBe(1);
    expect(timer.armed).toBeDefined();

    await clock.advance(ACCESS_TTL + 60);
    expect((await api.me()).email).toBe(EMAIL); // the new login's refresh token works
    s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(2);
    expect(s.requests[R.login]).toBe(1);
    expect(refusals).toEqual([]);
  });

  it("a signed-out refresh token without a password fails fast, is reported once, never retried", async () => {
    const configured = await browserRefreshToken();
    const clock = await emulatorClock(ctx.emu.url);
    const timer = manualTimer();
    const refusals: GatewayError[] = [];
    const api = client({
      password: undefined,
      refreshToken: configured,
      auth: {
        now: clock.now,
        setTimer: timer.setTimer,
        onCredentialsRefused: (e) => refusals.push(e),
      },
    });
    await api.me();
    await signOut(ctx.emu.url, configured);
    await clock.advance(ACCESS_TTL + 60);
    await resetStats(ctx.emu.url);

    const results = await Promise.allSettled(Array.from({ length: 20 }, () => api.me()));
    for (const r of results) {
      expect(r.status).toBe("rejected");
      const err = (r as PromiseRejectedResult).reason as Error;
      expect(err).toBeInstanceOf(CredentialInvalid);
      expect(err.message).toMatch(/refresh token was refused/);
      expect(err.message).toMatch(/configure the new refresh token, or configure the password/);
    }
    expect(refusals).toHaveLength(1);
    expect(refusals[0]!.message).toBe(
      ((results[0] as PromiseRejectedResult).reason as Error).message,
    );
    expect(timer.armed).toBeUndefined(); // nothing left to keep alive

    // Hours later nothing has changed upstream for it: still no call.
    await clock.advance(6 * 3600);
    await expect(api.capacity()).rejects.toBeInstanceOf(CredentialInvalid);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBeUndefined();
    expect(s.requests[R.me]).toBeUndefined();
    expect(refusals).toHaveLength(1);
  });

  it("a new refresh token configured after a refusal wins over the dead one in the state file", async () => {
    const file = join(dir, "refused", "state.json");
    const clock = await emulatorClock(ctx.emu.url);
    const old = await browserRefreshToken();
    const first = newClient(ctx.emu.url, {
      password: undefined,
      refreshToken: old,
      stateFile: file,
      auth: { now: clock.now },
    });
    await first.me();
    await first.close();
    await signOut(ctx.emu.url, old);
    await clock.advance(ACCESS_TTL + 60);

    // The operator signs in again and restarts with the new token; the state file stays.
    const fresh = await browserRefreshToken();
    await resetStats(ctx.emu.url);
    const api = client({
      password: undefined,
      refreshToken: fresh,
      stateFile: file,
      auth: { now: clock.now },
    });
    expect((await api.me()).email).toBe(EMAIL);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(2); // the file's (refused), then the new one
    expect(s.requests[R.login]).toBeUndefined();
  });

  it("close() stops the background renewal", async () => {
    const clock = await emulatorClock(ctx.emu.url);
    const timer = manualTimer();
    const api = newClient(ctx.emu.url, { auth: { now: clock.now, setTimer: timer.setTimer } });
    await api.me();
    const armed = timer.armed;
    expect(armed).toBeDefined();
    await api.close();
    expect(timer.armed).toBeUndefined();
    await resetStats(ctx.emu.url);
    await armed!.fire(); // a timer that fires anyway does nothing
    expect(timer.armed).toBeUndefined();
    expect((await stats(ctx.emu.url)).requests).toEqual({});
  });
});
