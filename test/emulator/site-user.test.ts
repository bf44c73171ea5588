import { describe, expect, it } from "vitest";
import { Api, EMAIL, myUri, useEmulator } from "../helpers/emulator.js";

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const GIB = 1024 * 1024 * 1024;

interface Capacity {
  total: number;
  used: number;
}
interface User {
  id: string;
  email?: string;
  nickname: string;
  status?: string;
  created_at: string;
  anonymous?: boolean;
  group?: { id: string; name: string; permission?: string };
}

async function put(api: Api, uri: string, size: number) {
  const r = await api.call("PUT", "/file/content", {
    query: { uri },
    body: new Uint8Array(size),
    headers: { "content-type": "application/octet-stream" },
  });
  expect(r.json.code, r.text).toBe(0);
}

describe("§7.1 /user/capacity", () => {
  const EXTRA = { email: "small@example.com", password: "small-pass", capacity: 5555 };
  const ctx = useEmulator({ extraUsers: [EXTRA] });

  it("§7.1 {total, used}: total is 1 GiB for the default User group, used starts at 0", async () => {
    const r = await ctx.api.call<Capacity>("GET", "/user/capacity");
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(0);
    expect(Object.keys(r.json.data!).sort()).toEqual(["total", "used"]);
    expect(r.json.data!.total).toBe(GIB);
    expect(r.json.data!.used).toBe(0);
  });

  it("§7.1 used grows with stored bytes", async () => {
    const before = (await ctx.api.call<Capacity>("GET", "/user/capacity")).json.data!;
    await put(ctx.api, myUri("cap/a.bin"), 1000);
    await put(ctx.api, myUri("cap/b.bin"), 234);
    const after = (await ctx.api.call<Capacity>("GET", "/user/capacity")).json.data!;
    expect(after.used - before.used).toBe(1234);
    expect(after.total).toBe(before.total);
  });

  it("§7.1 a per-user capacity shows up as total", async () => {
    const other = new Api(ctx.emu.url);
    await other.login(EXTRA.email, EXTRA.password);
    const r = await other.call<Capacity>("GET", "/user/capacity");
    expect(r.json.code).toBe(0);
    expect(r.json.data).toEqual({ total: 5555, used: 0 });
  });

  it("§7.1 anonymous → 401", async () => {
    const r = await new Api(ctx.emu.url).call("GET", "/user/capacity");
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(401);
  });
});

describe("§7.1 capacity option", () => {
  const ctx = useEmulator({ capacity: 123_456 });

  it("§7.1 the capacity option sets total", async () => {
    const r = await ctx.api.call<Capacity>("GET", "/user/capacity");
    expect(r.json.data).toEqual({ total: 123_456, used: 0 });
  });
});

describe("§7.2 /user/me", () => {
  const ctx = useEmulator();

  it("§7.2 returns the User shape", async () => {
    const r = await ctx.api.call<User>("GET", "/user/me");
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(0);
    const u = r.json.data!;
    expect(typeof u.id).toBe("string");
    expect(u.id.length).toBeGreaterThan(0);
    expect(u.email).toBe(EMAIL);
    expect(typeof u.nickname).toBe("string");
    expect(u.created_at).toMatch(RFC3339);
    expect(u.anonymous ?? false).toBe(false);
    if (u.status !== undefined) expect(u.status).toBe("active");
    expect(u.group).toBeDefined();
    expect(typeof u.group!.id).toBe("string");
    expect(typeof u.group!.name).toBe("string");
    if (u.group!.permission !== undefined) expect(u.group!.permission).toMatch(BASE64);
  });

  it("§7.2 the id is stable across logins", async () => {
    const a = (await ctx.api.call<User>("GET", "/user/me")).json.data!.id;
    const other = new Api(ctx.emu.url);
    await other.login();
    const b = (await other.call<User>("GET", "/user/me")).json.data!.id;
    expect(b).toBe(a);
  });

  it("§7.2 anonymous → 401", async () => {
    const r = await new Api(ctx.emu.url).call("GET", "/user/me");
    expect(r.json.code).toBe(401);
  });
});

describe("§7.3 site endpoints", () => {
  const ctx = useEmulator();

  it("§7.3 /site/ping → the version string, anonymous", async () => {
    const r = await new Api(ctx.emu.url).call<string>("GET", "/site/ping");
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(0);
    expect(typeof r.json.data).toBe("string");
    expect(r.json.data).toMatch(/^4\.18\.\d+$/);
  });

  it("§7.3 /site/config/basic → an object; user is the caller when logged in", async () => {
    const r = await ctx.api.call<{ user?: User; captcha_type?: string }>(
      "GET",
      "/site/config/basic",
    );
    expect(r.json.code).toBe(0);
    expect(r.json.data).toBeTypeOf("object");
    const me = (await ctx.api.call<User>("GET", "/user/me")).json.data!;
    expect(r.json.data!.user?.id).toBe(me.id);
  });

  it("§7.3 /site/config/basic anonymous → code 0, user is not a logged-in user", async () => {
    const r = await new Api(ctx.emu.url).call<{ user?: User }>("GET", "/site/config/basic");
    expect(r.json.code).toBe(0);
    const me = (await ctx.api.call<User>("GET", "/user/me")).json.data!;
    expect(r.json.data!.user?.id).not.toBe(me.id);
  });

  it("§7.3 /site/config/login → login_captcha false by default", async () => {
    const r = await new Api(ctx.emu.url).call<Record<string, unknown>>("GET", "/site/config/login");
    expect(r.json.code).toBe(0);
    expect(r.json.data!["login_captcha"] ?? false).toBe(false);
  });

  it("§7.3 /site/config/explorer → max_batch_size 3000 by default", async () => {
    const r = await ctx.api.call<{ max_batch_size: number }>("GET", "/site/config/explorer");
    expect(r.json.code).toBe(0);
    expect(r.json.data!.max_batch_size).toBe(3000);
  });
});

describe("§7.3 site endpoints reflect options", () => {
  const ctx = useEmulator({ captcha: true, maxBatchSize: 7 });

  it("§7.3 /site/config/login → login_captcha true with the captcha option", async () => {
    const r = await ctx.api.call<{ login_captcha: boolean }>("GET", "/site/config/login");
    expect(r.json.code).toBe(0);
    expect(r.json.data!.login_captcha).toBe(true);
  });

  it("§2.2/§7.3 /site/config/basic → captcha_type normal", async () => {
    const r = await ctx.api.call<{ captcha_type: string }>("GET", "/site/config/basic");
    expect(r.json.code).toBe(0);
    expect(r.json.data!.captcha_type).toBe("normal");
  });

  it("§2.2 /site/captcha → {image, ticket}", async () => {
    const r = await ctx.api.call<{ image: string; ticket: string }>("GET", "/site/captcha");
    expect(r.json.code).toBe(0);
    expect(typeof r.json.data!.image).toBe("string");
    expect(r.json.data!.image.length).toBeGreaterThan(0);
    expect(typeof r.json.data!.ticket).toBe("string");
    const r2 = await ctx.api.call<{ ticket: string }>("GET", "/site/captcha");
    expect(r2.json.data!.ticket).not.toBe(r.json.data!.ticket);
  });

  it("§7.3 /site/config/explorer → max_batch_size follows maxBatchSize", async () => {
    const r = await ctx.api.call<{ max_batch_size: number }>("GET", "/site/config/explorer");
    expect(r.json.code).toBe(0);
    expect(r.json.data!.max_batch_size).toBe(7);
  });
});
