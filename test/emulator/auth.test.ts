import { describe, expect, it } from "vitest";
import * as OTPAuth from "otpauth";
import { Api, EMAIL, PASSWORD, useEmulator } from "../helpers/emulator.js";

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Token {
  access_token: string;
  refresh_token: string;
  access_expires: string;
  refresh_expires: string;
}
interface LoginData {
  user: { id: string; email?: string; nickname: string };
  token: Token;
}

async function login(api: Api, email = EMAIL, password = PASSWORD) {
  return api.call<LoginData>("POST", "/session/token", { json: { email, password }, auth: false });
}

async function refresh(api: Api, refreshToken: string) {
  return api.call<Token>("POST", "/session/token/refresh", {
    json: { refresh_token: refreshToken },
    auth: false,
  });
}

function withToken(base: string, token: string): Api {
  const a = new Api(base);
  a.token = token;
  return a;
}

async function advance(api: Api, seconds: number): Promise<void> {
  const r = await api.call("POST", "/__emulator/clock", { json: { advanceSeconds: seconds } });
  expect(r.status).toBe(200);
}

function expectToken(t: Token): void {
  expect(typeof t.access_token).toBe("string");
  expect(t.access_token.length).toBeGreaterThan(0);
  expect(typeof t.refresh_token).toBe("string");
  expect(t.refresh_token.length).toBeGreaterThan(0);
  expect(t.access_token).not.toBe(t.refresh_token);
  expect(t.access_expires).toMatch(RFC3339);
  expect(t.refresh_expires).toMatch(RFC3339);
}

describe("§2.1 prepare", () => {
  const ctx = useEmulator();

  it("§2.1 a known email → {webauthn_enabled, password_enabled}", async () => {
    const r = await ctx.api.call<{ webauthn_enabled: boolean; password_enabled: boolean }>(
      "GET",
      "/session/prepare",
      { query: { email: EMAIL }, auth: false },
    );
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(0);
    expect(r.json.data).toEqual({ webauthn_enabled: false, password_enabled: true });
  });

  it("§2.1 an unknown email → code 404", async () => {
    const r = await ctx.api.call("GET", "/session/prepare", {
      query: { email: "nobody@example.com" },
      auth: false,
    });
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(404);
  });

  it("§2.1 a malformed email → 40001", async () => {
    const r = await ctx.api.call("GET", "/session/prepare", {
      query: { email: "not-an-email" },
      auth: false,
    });
    expect(r.json.code).toBe(40001);
  });

  it("§2.1 a missing email → 40001", async () => {
    const r = await ctx.api.call("GET", "/session/prepare", { auth: false });
    expect(r.json.code).toBe(40001);
  });
});

describe("§2.2 password login", () => {
  const ctx = useEmulator();

  it("§2.2 success → {user, token} with RFC 3339 expiries", async () => {
    const r = await login(ctx.api);
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(0);
    const d = r.json.data!;
    expect(typeof d.user.id).toBe("string");
    expect(d.user.id.length).toBeGreaterThan(0);
    expect(typeof d.user.nickname).toBe("string");
    expectToken(d.token);
  });

  it("§2.2/§2.4 the expiries follow the default TTLs (3600 s access, 14 days refresh)", async () => {
    const r = await login(ctx.api);
    const t = r.json.data!.token;
    const diff = (Date.parse(t.refresh_expires) - Date.parse(t.access_expires)) / 1000;
    expect(Math.abs(diff - (1_209_600 - 3600))).toBeLessThan(5);
  });

  it("§2.2 the login user is the same user as /user/me", async () => {
    const r = await login(ctx.api);
    const api = withToken(ctx.emu.url, r.json.data!.token.access_token);
    const me = await api.call<{ id: string }>("GET", "/user/me");
    expect(me.json.code).toBe(0);
    expect(me.json.data!.id).toBe(r.json.data!.user.id);
  });

  it("§2.2 wrong password → 40080", async () => {
    const r = await login(ctx.api, EMAIL, "wrong-password");
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40080);
    expect(r.json).not.toHaveProperty("data");
  });

  it("§2.2 unknown email → 40080 (same code as a wrong password)", async () => {
    const r = await login(ctx.api, "ghost@example.com", PASSWORD);
    expect(r.json.code).toBe(40080);
  });

  it("§2.2 a malformed email or a too-short password → 40001", async () => {
    expect((await login(ctx.api, "not-an-email", PASSWORD)).json.code).toBe(40001);
    expect((await login(ctx.api, EMAIL, "abc")).json.code).toBe(40001);
  });

  it("§2.2 every login issues distinct tokens", async () => {
    const a = (await login(ctx.api)).json.data!.token;
    const b = (await login(ctx.api)).json.data!.token;
    expect(a.refresh_token).not.toBe(b.refresh_token);
  });
});

describe("§2.2 login captcha", () => {
  const ctx = useEmulator({ captcha: true });

  async function ticket(): Promise<{ ticket: string; answer: string }> {
    const c = await ctx.api.call<{ image: string; ticket: string }>("GET", "/site/captcha", {
      auth: false,
    });
    expect(c.json.code).toBe(0);
    expect(typeof c.json.data!.image).toBe("string");
    expect(typeof c.json.data!.ticket).toBe("string");
    const a = await ctx.api.call("GET", "/__emulator/captcha", {
      query: { ticket: c.json.data!.ticket },
    });
    expect(a.status).toBe(200);
    const answer = (a.json as unknown as { answer: string }).answer;
    expect(typeof answer).toBe("string");
    return { ticket: c.json.data!.ticket, answer };
  }

  it("§2.2 /site/config/login reports login_captcha true", async () => {
    const r = await ctx.api.call<{ login_captcha: boolean }>("GET", "/site/config/login");
    expect(r.json.code).toBe(0);
    expect(r.json.data!.login_captcha).toBe(true);
  });

  it("§2.2 no captcha → 40026", async () => {
    const r = await login(ctx.api);
    expect(r.json.code).toBe(40026);
  });

  it("§2.2 the captcha is checked before the password (wrong password, no captcha → 40026)", async () => {
    const r = await login(ctx.api, EMAIL, "wrong-password");
    expect(r.json.code).toBe(40026);
  });

  it("§2.2 a wrong captcha answer → 40026", async () => {
    const t = await ticket();
    const r = await ctx.api.call("POST", "/session/token", {
      json: { email: EMAIL, password: PASSWORD, ticket: t.ticket, captcha: t.answer + "x" },
      auth: false,
    });
    expect(r.json.code).toBe(40026);
  });

  it("§2.2 an unknown ticket → 40026", async () => {
    const t = await ticket();
    const r = await ctx.api.call("POST", "/session/token", {
      json: { email: EMAIL, password: PASSWORD, ticket: "no-such-ticket", captcha: t.answer },
      auth: false,
    });
    expect(r.json.code).toBe(40026);
  });

  it("§2.2 the right captcha logs in; the same ticket cannot be used twice", async () => {
    const t = await ticket();
    const body = { email: EMAIL, password: PASSWORD, ticket: t.ticket, captcha: t.answer };
    const ok = await ctx.api.call<LoginData>("POST", "/session/token", { json: body, auth: false });
    expect(ok.json.code).toBe(0);
    expectToken(ok.json.data!.token);
    const again = await ctx.api.call("POST", "/session/token", { json: body, auth: false });
    expect(again.json.code).toBe(40026);
  });

  it("§2.2 right captcha but wrong password → 40080", async () => {
    const t = await ticket();
    const r = await ctx.api.call("POST", "/session/token", {
      json: { email: EMAIL, password: "wrong-password", ticket: t.ticket, captcha: t.answer },
      auth: false,
    });
    expect(r.json.code).toBe(40080);
  });
});

const OTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const totp = new OTPAuth.TOTP({
  secret: OTPAuth.Secret.fromBase32(OTP_SECRET),
  digits: 6,
  period: 30,
  algorithm: "SHA1",
});

function goodOtp(): string {
  return totp.generate({ timestamp: Date.now() });
}

function badOtp(): string {
  const now = Date.now();
  const near = new Set<string>();
  for (let k = -3; k <= 3; k++) near.add(totp.generate({ timestamp: now + k * 30_000 }));
  for (let d = 0; d <= 9; d++) {
    const c = String(d).repeat(6);
    if (!near.has(c)) return c;
  }
  throw new Error("unreachable");
}

describe("§2.3 two-factor login", () => {
  const ctx = useEmulator({
    otpSecret: OTP_SECRET,
    extraUsers: [{ email: "plain@example.com", password: "plain-pass" }],
  });

  async function start2fa(): Promise<string> {
    const r = await login(ctx.api);
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(203);
    expect(typeof r.json.data).toBe("string");
    return r.json.data as unknown as string;
  }

  it("§2.2 a password login with 2FA on → code 203 with data = session id string", async () => {
    const sid = await start2fa();
    expect(sid.length).toBeGreaterThan(0);
    expect(sid).toMatch(UUID_RE);
  });

  it("§2.2 a 2FA login with a wrong password is still 40080, not 203", async () => {
    const r = await login(ctx.api, EMAIL, "wrong-password");
    expect(r.json.code).toBe(40080);
  });

  it("§2.3 a wrong otp → 40022, and the session stays usable", async () => {
    const sid = await start2fa();
    const bad = await ctx.api.call("POST", "/session/token/2fa", {
      json: { otp: badOtp(), session_id: sid },
      auth: false,
    });
    expect(bad.json.code).toBe(40022);
    const good = await ctx.api.call<LoginData>("POST", "/session/token/2fa", {
      json: { otp: goodOtp(), session_id: sid },
      auth: false,
    });
    expect(good.json.code).toBe(0);
    expectToken(good.json.data!.token);
  });

  it("§2.3 an unknown session → 404", async () => {
    const r = await ctx.api.call("POST", "/session/token/2fa", {
      json: { otp: goodOtp(), session_id: "00000000-0000-4000-8000-000000000000" },
      auth: false,
    });
    expect(r.json.code).toBe(404);
  });

  it("§2.3 missing otp or session_id → 40001", async () => {
    const sid = await start2fa();
    const a = await ctx.api.call("POST", "/session/token/2fa", {
      json: { session_id: sid },
      auth: false,
    });
    expect(a.json.code).toBe(40001);
    const b = await ctx.api.call("POST", "/session/token/2fa", {
      json: { otp: goodOtp() },
      auth: false,
    });
    expect(b.json.code).toBe(40001);
  });

  it("§2.3 the right otp → the same login response as §2.2, with a working token", async () => {
    const sid = await start2fa();
    const r = await ctx.api.call<LoginData>("POST", "/session/token/2fa", {
      json: { otp: goodOtp(), session_id: sid },
      auth: false,
    });
    expect(r.json.code).toBe(0);
    expect(typeof r.json.data!.user.id).toBe("string");
    expectToken(r.json.data!.token);
    const me = await withToken(ctx.emu.url, r.json.data!.token.access_token).call<{
      id: string;
    }>("GET", "/user/me");
    expect(me.json.code).toBe(0);
    expect(me.json.data!.id).toBe(r.json.data!.user.id);
  });

  it("§2.2 a user without 2FA logs in directly (code 0) on the same server", async () => {
    const r = await login(ctx.api, "plain@example.com", "plain-pass");
    expect(r.json.code).toBe(0);
    expectToken(r.json.data!.token);
  });

  it("§2.3 a 2FA session expires after 600 s → 404", async () => {
    const sid = await start2fa();
    await advance(ctx.api, 601);
    const r = await ctx.api.call("POST", "/session/token/2fa", {
      json: { otp: goodOtp(), session_id: sid },
      auth: false,
    });
    expect(r.json.code).toBe(404);
  });
});

describe("§2.5 refresh and sign-out", () => {
  const ctx = useEmulator();

  it("§2.5 refresh → a new token pair that works", async () => {
    const first = (await login(ctx.api)).json.data!.token;
    // step the clock so the new pair cannot be byte-identical to the old one (same-second JWTs)
    await advance(ctx.api, 10);
    const r = await refresh(ctx.api, first.refresh_token);
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(0);
    const t = r.json.data!;
    expectToken(t);
    expect(t.refresh_token).not.toBe(first.refresh_token);
    expect(t.access_token).not.toBe(first.access_token);
    // the refresh expiry slides from now
    const slid = (Date.parse(t.refresh_expires) - Date.parse(first.refresh_expires)) / 1000;
    expect(slid).toBeGreaterThanOrEqual(9);
    expect(slid).toBeLessThan(20);
    const me = await withToken(ctx.emu.url, t.access_token).call("GET", "/user/me");
    expect(me.json.code).toBe(0);
    const again = await refresh(ctx.api, t.refresh_token);
    expect(again.json.code).toBe(0);
  });

  it("§2.5 the old refresh token still works after a refresh (no rotation)", async () => {
    const first = (await login(ctx.api)).json.data!.token;
    expect((await refresh(ctx.api, first.refresh_token)).json.code).toBe(0);
    const second = await refresh(ctx.api, first.refresh_token);
    expect(second.json.code).toBe(0);
    expectToken(second.json.data!);
  });

  it("§2.5 a garbage refresh token → 40020", async () => {
    const r = await refresh(ctx.api, "garbage.refresh.token");
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40020);
  });

  it("§2.5 an access token passed as refresh_token → 40020", async () => {
    const t = (await login(ctx.api)).json.data!.token;
    const r = await refresh(ctx.api, t.access_token);
    expect(r.json.code).toBe(40020);
  });

  it("§2.5 a missing refresh_token → 40001", async () => {
    const r = await ctx.api.call("POST", "/session/token/refresh", { json: {}, auth: false });
    expect(r.json.code).toBe(40001);
  });

  it("§2.5 sign-out revokes every refresh token of that login; access stays valid", async () => {
    const t = (await login(ctx.api)).json.data!.token;
    const derived = (await refresh(ctx.api, t.refresh_token)).json.data!;
    const api = withToken(ctx.emu.url, t.access_token);
    const out = await api.call("DELETE", "/session/token", {
      json: { refresh_token: t.refresh_token },
    });
    expect(out.status).toBe(200);
    expect(out.json.code).toBe(0);
    expect(out.json.data).toBe("");
    expect((await refresh(ctx.api, t.refresh_token)).json.code).toBe(40020);
    expect((await refresh(ctx.api, derived.refresh_token)).json.code).toBe(40020);
    const me = await api.call("GET", "/user/me");
    expect(me.json.code).toBe(0);
    const me2 = await withToken(ctx.emu.url, derived.access_token).call("GET", "/user/me");
    expect(me2.json.code).toBe(0);
  });

  it("§2.5 sign-out of one login leaves another login's refresh token alive", async () => {
    const a = (await login(ctx.api)).json.data!.token;
    const b = (await login(ctx.api)).json.data!.token;
    const out = await withToken(ctx.emu.url, a.access_token).call("DELETE", "/session/token", {
      json: { refresh_token: a.refresh_token },
    });
    expect(out.json.code).toBe(0);
    expect((await refresh(ctx.api, a.refresh_token)).json.code).toBe(40020);
    expect((await refresh(ctx.api, b.refresh_token)).json.code).toBe(0);
  });
});

describe("§2.4 bearer handling", () => {
  const ctx = useEmulator();

  it("§2.4 a garbage bearer is anonymous: 401 on /user/me and on cloudreve://my", async () => {
    const api = withToken(ctx.emu.url, "garbage");
    const me = await api.call("GET", "/user/me");
    expect(me.status).toBe(200);
    expect(me.json.code).toBe(401);
    const list = await api.call("GET", "/file", { query: { uri: "cloudreve://my" } });
    expect(list.status).toBe(200);
    expect(list.json.code).toBe(401);
  });

  it("§2.4 a garbage bearer does not block anonymous routes", async () => {
    const api = withToken(ctx.emu.url, "garbage");
    const r = await api.call("GET", "/site/ping");
    expect(r.json.code).toBe(0);
  });

  it("§2.4 a badly signed JWT is anonymous: 401", async () => {
    const access = ctx.api.token!;
    const parts = access.split(".");
    expect(parts).toHaveLength(3);
    const sig = parts[2]!;
    const forgedSig = "A".repeat(sig.length);
    expect(forgedSig).not.toBe(sig);
    const api = withToken(ctx.emu.url, `${parts[0]}.${parts[1]}.${forgedSig}`);
    expect((await api.call("GET", "/user/me")).json.code).toBe(401);
    const list = await api.call("GET", "/file", { query: { uri: "cloudreve://my" } });
    expect(list.json.code).toBe(401);
  });

  it("§2.4 a refresh token used as bearer → 40020", async () => {
    const api = withToken(ctx.emu.url, ctx.api.refreshToken!);
    const me = await api.call("GET", "/user/me");
    expect(me.status).toBe(200);
    expect(me.json.code).toBe(40020);
    const list = await api.call("GET", "/file", { query: { uri: "cloudreve://my" } });
    expect(list.json.code).toBe(40020);
  });

  it("§2.4 the valid access token works on /user/me and cloudreve://my", async () => {
    expect((await ctx.api.call("GET", "/user/me")).json.code).toBe(0);
    const list = await ctx.api.call("GET", "/file", { query: { uri: "cloudreve://my" } });
    expect(list.json.code).toBe(0);
  });
});

describe("§2.4/§2.5 token expiry by the emulator clock", () => {
  const ctx = useEmulator({ accessTtl: 100, refreshTtl: 1000 });

  it("§2.4 the expiries reflect the configured TTLs", async () => {
    const t = (await login(ctx.api)).json.data!.token;
    const diff = (Date.parse(t.refresh_expires) - Date.parse(t.access_expires)) / 1000;
    expect(Math.abs(diff - 900)).toBeLessThan(5);
  });

  it("§2.4 an expired access token is anonymous: 401 on /user/me and cloudreve://my", async () => {
    expect((await ctx.api.call("GET", "/user/me")).json.code).toBe(0);
    await advance(ctx.api, 101);
    const me = await ctx.api.call("GET", "/user/me");
    expect(me.status).toBe(200);
    expect(me.json.code).toBe(401);
    const list = await ctx.api.call("GET", "/file", { query: { uri: "cloudreve://my" } });
    expect(list.json.code).toBe(401);
  });

  it("§2.5 the refresh token still works after the access token expired", async () => {
    const r = await refresh(ctx.api, ctx.api.refreshToken!);
    expect(r.json.code).toBe(0);
    const me = await withToken(ctx.emu.url, r.json.data!.access_token).call("GET", "/user/me");
    expect(me.json.code).toBe(0);
  });

  it("§2.5 an expired refresh token → 40020; a new login still works", async () => {
    const fresh = (await login(ctx.api)).json.data!.token;
    await advance(ctx.api, 1001);
    expect((await refresh(ctx.api, fresh.refresh_token)).json.code).toBe(40020);
    expect((await refresh(ctx.api, ctx.api.refreshToken!)).json.code).toBe(40020);
    const again = await login(ctx.api);
    expect(again.json.code).toBe(0);
    const me = await withToken(ctx.emu.url, again.json.data!.token.access_token).call(
      "GET",
      "/user/me",
    );
    expect(me.json.code).toBe(0);
  });
});
