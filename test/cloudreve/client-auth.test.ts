/**
 * Authentication of the Cloudreve client against the emulator over HTTP: one login, one
 * refresh per expiry (also under concurrency), fallback from a dead refresh token to the
 * password, fail-closed logins, refresh-token-only accounts and the state file.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { CloudreveApi } from "../../src/cloudreve/api.js";
import { startEmulator } from "../../src/emulator/index.js";
import { LoginRejected } from "../../src/errors.js";
import { EMAIL, PASSWORD, useEmulator } from "../helpers/emulator.js";
import { newClient, type ClientOptions } from "./client-helpers.js";
import { advanceClock, calls, emulatorClock, R, resetStats, stats } from "../helpers/control.js";

const ACCESS_TTL = 3600;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "client-auth-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("login and token renewal", () => {
  const ctx = useEmulator({ accessTtl: ACCESS_TTL, refreshTtl: 4 * ACCESS_TTL });
  const clients: CloudreveApi[] = [];
  const client = (options: ClientOptions = {}) => {
    const c = newClient(ctx.emu.url, options);
    clients.push(c);
    return c;
  };
  beforeEach(() => resetStats(ctx.emu.url));
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  it("logs in once, on the first call, and reuses the token", async () => {
    const api = client();
    expect(await calls(ctx.emu.url, R.login)).toBe(0); // constructing costs nothing
    const me = await api.me();
    expect(me.email).toBe(EMAIL);
    await Promise.all(Array.from({ length: 10 }, () => api.capacity()));
    await api.me();
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.login]).toBe(1);
    expect(s.requests[R.refresh]).toBeUndefined();
    expect(s.requests[R.me]).toBe(2);
  });

  it("20 concurrent first calls share one login", async () => {
    const api = client();
    const users = await Promise.all(Array.from({ length: 20 }, () => api.me()));
    expect(users.every((u) => u.email === EMAIL)).toBe(true);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.login]).toBe(1);
    expect(s.requests[R.me]).toBe(20);
  });

  it("an access token that expired without the client noticing costs one refresh (401 path)", async () => {
    const api = client();
    await api.me();
    await advanceClock(ctx.emu.url, ACCESS_TTL + 60);
    await resetStats(ctx.emu.url);
    const me = await api.me(); // 401 (anonymous), one refresh, one repeat
    expect(me.email).toBe(EMAIL);
    await api.me();
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBeUndefined();
    expect(s.requests[R.me]).toBe(3);
  });

  it("20 concurrent calls on an expired token share one refresh (401 path)", async () => {
    const api = client();
    await api.me();
    await advanceClock(ctx.emu.url, ACCESS_TTL + 60);
    await resetStats(ctx.emu.url);
    const users = await Promise.all(Array.from({ length: 20 }, () => api.me()));
    expect(users.every((u) => u.email === EMAIL)).toBe(true);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBeUndefined();
    // Every call was answered 401 once at most and repeated once.
    expect(s.requests[R.me]).toBeGreaterThanOrEqual(21);
    expect(s.requests[R.me]).toBeLessThanOrEqual(40);
  });

  it("refreshes proactively inside the 5-minute margin: one refresh, no failed call", async () => {
    const clock = await emulatorClock(ctx.emu.url);
    const api = client({ auth: { now: clock.now } });
    await api.me();
    // Four minutes before access_expires: inside the margin, the token still works upstream.
    await clock.advance(ACCESS_TTL - 240);
    await resetStats(ctx.emu.url);
    const users = await Promise.all(Array.from({ length: 20 }, () => api.me()));
    expect(users.every((u) => u.email === EMAIL)).toBe(true);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBeUndefined();
    expect(s.requests[R.me]).toBe(20); // none was sent with the old token and refused
  });

  it("refreshes proactively after the access token expired: one refresh, no failed call", async () => {
    const clock = await emulatorClock(ctx.emu.url);
    const api = client({ auth: { now: clock.now } });
    await api.me();
    await clock.advance(ACCESS_TTL + 60);
    await resetStats(ctx.emu.url);
    await Promise.all(Array.from({ length: 20 }, () => api.capacity()));
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBeUndefined();
    expect(s.requests["GET /api/v4/user/capacity"]).toBe(20);
  });

  it("a refresh token known to be expired is skipped: one password login", async () => {
    const clock = await emulatorClock(ctx.emu.url);
    const api = client({ auth: { now: clock.now } });
    await api.me();
    await clock.advance(4 * ACCESS_TTL + 60);
    await resetStats(ctx.emu.url);
    await Promise.all(Array.from({ length: 20 }, () => api.me()));
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBeUndefined();
    expect(s.requests[R.login]).toBe(1);
    expect(s.requests[R.me]).toBe(20);
  });

  it("a refresh token that died upstream (expired unnoticed) falls back to the password once", async () => {
    const api = client();
    await api.me();
    await advanceClock(ctx.emu.url, 4 * ACCESS_TTL + 60);
    await resetStats(ctx.emu.url);
    const users = await Promise.all(Array.from({ length: 20 }, () => api.me()));
    expect(users.every((u) => u.email === EMAIL)).toBe(true);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1); // refused with 40020
    expect(s.requests[R.login]).toBe(1);
  });

  it("a signed-out refresh token falls back to the password once", async () => {
    const api = client();
    await api.me();
    const refresh = api.transport.auth.current?.refresh_token;
    expect(refresh).toBeTruthy();
    const out = await fetch(`${ctx.emu.url}/api/v4/session/token`, {
      method: "DELETE",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: refresh }),
    });
    expect(((await out.json()) as { code: number }).code).toBe(0);
    // Access tokens outlive a sign-out; let this one expire so the client must renew.
    await advanceClock(ctx.emu.url, ACCESS_TTL + 60);
    await resetStats(ctx.emu.url);
    await Promise.all(Array.from({ length: 5 }, () => api.me()));
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBe(1);
  });

  it("an access TTL shorter than the refresh margin does not cost a refresh per call", async () => {
    // The margin is 5 minutes; this server issues 2-minute access tokens.
    const short = await startEmulator({ email: EMAIL, password: PASSWORD, accessTtl: 120 });
    const clock = await emulatorClock(short.url);
    const api = newClient(short.url, { auth: { now: clock.now } });
    try {
      for (let i = 0; i < 10; i++) await api.me();
      let s = await stats(short.url);
      expect(s.requests[R.login]).toBe(1);
      expect(s.requests[R.refresh]).toBeUndefined();
      // Past half the lifetime: renewed before it expires, once.
      await clock.advance(70);
      for (let i = 0; i < 10; i++) await api.me();
      s = await stats(short.url);
      expect(s.requests[R.refresh]).toBe(1);
      expect(s.requests[R.me]).toBe(20);
    } finally {
      await api.close();
      await short.close();
    }
  });

  it("a wrong password is LoginRejected, one login attempt for a burst, none in the cooldown", async () => {
    const clock = await emulatorClock(ctx.emu.url);
    const api = client({ password: "not-the-password", auth: { now: clock.now } });
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => api.me()));
    for (const r of results) {
      expect(r.status).toBe("rejected");
      const err = (r as PromiseRejectedResult).reason as Error;
      expect(err).toBeInstanceOf(LoginRejected);
      expect(err.message).toMatch(/wrong email or password/);
    }
    expect(await calls(ctx.emu.url, R.login)).toBe(1);
    expect(await calls(ctx.emu.url, R.me)).toBe(0); // fails closed: no anonymous calls

    // Still within the 30 s cooldown: no upstream call at all.
    await clock.advance(20);
    await expect(api.me()).rejects.toBeInstanceOf(LoginRejected);
    await expect(api.info("cloudreve://my/x")).rejects.toBeInstanceOf(LoginRejected);
    expect(await calls(ctx.emu.url, R.login)).toBe(1);

    // After the cooldown one more attempt (the password may have been fixed upstream).
    await clock.advance(30);
    await expect(api.me()).rejects.toBeInstanceOf(LoginRejected);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.login]).toBe(2);
    expect(s.requests[R.me]).toBeUndefined();
  });

  it("works with a refresh token and no password", async () => {
    const { api: raw } = ctx;
    await raw.login();
    await resetStats(ctx.emu.url);
    const api = client({ password: undefined, refreshToken: raw.refreshToken });
    expect((await api.me()).email).toBe(EMAIL);
    await api.capacity();
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBeUndefined();
  });

  it("without a password, a dead refresh token is CredentialInvalid and not retried in a loop", async () => {
    const api = client({ password: undefined, refreshToken: "not-a-jwt" });
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => api.me()));
    for (const r of results) {
      expect(r.status).toBe("rejected");
      expect(((r as PromiseRejectedResult).reason as Error).name).toBe("CredentialInvalid");
    }
    await expect(api.me()).rejects.toThrow();
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBeUndefined();
    expect(s.requests[R.me]).toBeUndefined();
  });

  describe("state file", () => {
    it("is written with mode 0600; a second client with it makes no login call", async () => {
      const file = join(dir, "a", "state.json");
      const first = client({ stateFile: file });
      await first.me();
      const mode = (await stat(file)).mode & 0o777;
      expect(mode.toString(8)).toBe("600");
      const saved = JSON.parse(await readFile(file, "utf8")) as {
        email: string;
        token: { access_token: string };
      };
      expect(saved.email).toBe(EMAIL);
      expect(saved.token.access_token).toBe(first.transport.auth.current?.access_token);
      await resetStats(ctx.emu.url);

      const second = client({ stateFile: file });
      expect((await second.me()).email).toBe(EMAIL);
      const s = await stats(ctx.emu.url);
      expect(s.requests[R.login]).toBeUndefined();
      expect(s.requests[R.refresh]).toBeUndefined();
      expect(s.requests[R.me]).toBe(1);
    });

    it("is read before any of the first concurrent calls renews: no login at all", async () => {
      const file = join(dir, "f", "state.json");
      await client({ stateFile: file }).me();
      await resetStats(ctx.emu.url);
      const api = client({ stateFile: file });
      await Promise.all([api.me(), api.capacity(), api.me()]);
      expect(await calls(ctx.emu.url, R.login)).toBe(0);
      expect(await calls(ctx.emu.url, R.refresh)).toBe(0);
    });

    it("is rewritten after a refresh, still 0600", async () => {
      const file = join(dir, "b", "state.json");
      const clock = await emulatorClock(ctx.emu.url);
      const api = client({ stateFile: file, auth: { now: clock.now } });
      await api.me();
      const before = await readFile(file, "utf8");
      await clock.advance(ACCESS_TTL);
      await api.me();
      const after = await readFile(file, "utf8");
      expect(after).not.toBe(before);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    });

    it("of another account is ignored", async () => {
      const file = join(dir, "c", "state.json");
      const other = client({ stateFile: file });
      await other.me();
      const saved = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
      await writeFile(file, JSON.stringify({ ...saved, email: "someone@example.com" }), {
        mode: 0o600,
      });
      await resetStats(ctx.emu.url);
      const api = client({ stateFile: file });
      await api.me();
      expect(await calls(ctx.emu.url, R.login)).toBe(1);
      const rewritten = JSON.parse(await readFile(file, "utf8")) as { email: string };
      expect(rewritten.email).toBe(EMAIL);
    });

    it("that is corrupt is ignored: one login, and the file is rewritten", async () => {
      const file = join(dir, "e", "state.json");
      const first = client({ stateFile: file });
      await first.me();
      const text = await readFile(file, "utf8");
      await writeFile(file, text.slice(0, text.length / 2), { mode: 0o600 }); // torn write
      await resetStats(ctx.emu.url);
      const api = client({ stateFile: file });
      expect((await api.me()).email).toBe(EMAIL);
      expect(await calls(ctx.emu.url, R.login)).toBe(1);
      expect(() => JSON.parse(readFileSync(file, "utf8")) as unknown).not.toThrow();
    });

    it("a token the server no longer accepts (401) is renewed once and the call repeated once", async () => {
      const file = join(dir, "d", "state.json");
      const first = client({ stateFile: file });
      await first.me();
      const saved = JSON.parse(await readFile(file, "utf8")) as {
        email: string;
        token: Record<string, string>;
      };
      // The access token looks valid for another hour to the client, but the server rejects it.
      saved.token.access_token = "garbage.token.value";
      await writeFile(file, JSON.stringify(saved), { mode: 0o600 });
      await resetStats(ctx.emu.url);

      const api = client({ stateFile: file });
      expect((await api.me()).email).toBe(EMAIL);
      let s = await stats(ctx.emu.url);
      expect(s.requests[R.me]).toBe(2);
      expect(s.requests[R.refresh]).toBe(1); // the saved refresh token is still good
      expect(s.requests[R.login]).toBeUndefined();

      // Garbage in both tokens: refresh refused (40020), then the password.
      saved.token.refresh_token = "garbage.refresh.value";
      await writeFile(file, JSON.stringify(saved), { mode: 0o600 });
      await resetStats(ctx.emu.url);
      const third = client({ stateFile: file });
      expect((await third.me()).email).toBe(EMAIL);
      s = await stats(ctx.emu.url);
      expect(s.requests[R.me]).toBe(2);
      expect(s.requests[R.refresh]).toBe(1);
      expect(s.requests[R.login]).toBe(1);
    });
  });
});

describe("logins that need the user's help", () => {
  describe("captcha on", () => {
    const ctx = useEmulator({ captcha: true });
    it("is LoginRejected saying to configure a refresh token or turn the captcha off", async () => {
      const api = newClient(ctx.emu.url);
      try {
        await resetStats(ctx.emu.url);
        const results = await Promise.allSettled(Array.from({ length: 5 }, () => api.me()));
        for (const r of results) {
          const err = (r as PromiseRejectedResult).reason as Error;
          expect(err).toBeInstanceOf(LoginRejected);
          expect(err.message).toMatch(/captcha/);
          expect(err.message).toMatch(/refresh token/);
        }
        expect(await calls(ctx.emu.url, R.login)).toBe(1);
        expect(await calls(ctx.emu.url, R.me)).toBe(0);
      } finally {
        await api.close();
      }
    });

    it("a refresh token from a browser login gets in", async () => {
      // What the message advises: log in once (here: solve the captcha by hand), keep the token.
      const cap = await ctx.api.call<{ ticket: string }>("GET", "/site/captcha", { auth: false });
      const ticket = cap.json.data!.ticket;
      const answer = (await ctx.api.call<never>("GET", `/__emulator/captcha?ticket=${ticket}`))
        .json as unknown as { answer: string };
      const login = await ctx.api.call<{ token: { refresh_token: string } }>(
        "POST",
        "/session/token",
        { json: { email: EMAIL, password: PASSWORD, ticket, captcha: answer.answer }, auth: false },
      );
      expect(login.json.code).toBe(0);
      const api = newClient(ctx.emu.url, {
        password: undefined,
        refreshToken: login.json.data!.token.refresh_token,
      });
      try {
        expect((await api.me()).email).toBe(EMAIL);
      } finally {
        await api.close();
      }
    });
  });

  describe("two-factor authentication on", () => {
    const ctx = useEmulator({ otpSecret: "JBSWY3DPEHPK3PXP" });
    it("is LoginRejected mentioning two-factor authentication", async () => {
      const api = newClient(ctx.emu.url);
      try {
        await resetStats(ctx.emu.url);
        const results = await Promise.allSettled(Array.from({ length: 5 }, () => api.me()));
        for (const r of results) {
          const err = (r as PromiseRejectedResult).reason as Error;
          expect(err).toBeInstanceOf(LoginRejected);
          expect(err.message).toMatch(/two-factor/);
          expect(err.message).toMatch(/refresh token/);
        }
        await expect(api.capacity()).rejects.toBeInstanceOf(LoginRejected);
        expect(await calls(ctx.emu.url, R.login)).toBe(1);
        expect(await calls(ctx.emu.url, "POST /api/v4/session/token/2fa")).toBe(0);
      } finally {
        await api.close();
      }
    });
  });
});
