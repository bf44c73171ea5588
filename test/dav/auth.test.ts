/**
 * Gateway authentication (Basic, throttling, the loopback rule of the config) and the request
 * log line.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ConfigError, defaults, loadConfig } from "../../src/config.js";
import { hashPassword } from "../../src/passwords.js";
import { startEmulator } from "../../src/emulator/index.js";
import type { RunningEmulator } from "../../src/emulator/options.js";
import { createLogger } from "../../src/log.js";
import { startGateway, type Gateway, type GatewayConfig } from "../../src/server.js";
import { EMAIL, PASSWORD } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { raw } from "../helpers/http-raw.js";

const USER = "alice";
const SECRET = "correct horse battery staple";
const HASH = await hashPassword(SECRET);
const users = [{ name: USER, passwordHash: HASH }];

describe("Basic authentication", () => {
  const fx = useGateway({}, { users });
  const good = { user: USER, password: SECRET };

  it("no credentials → 401 with WWW-Authenticate: Basic", async () => {
    await fx.resetStats();
    const r = await raw(fx.url, "PROPFIND", "/", { headers: { depth: "0" } });
    expect(r.status).toBe(401);
    expect(String(r.headers["www-authenticate"])).toMatch(/^Basic realm="[^"]+"/);
    expect(Object.keys((await fx.stats()).requests)).toEqual([]);
  });

  it("wrong password or unknown user → 401", async () => {
    for (const auth of [
      { user: USER, password: "wrong" },
      { user: "mallory", password: SECRET },
      { user: "", password: "" },
    ]) {
      const r = await raw(fx.url, "GET", "/", { auth });
      expect(r.status).toBe(401);
      expect(r.headers["www-authenticate"]).toBeDefined();
    }
    const bearer = await raw(fx.url, "GET", "/", { headers: { authorization: "Bearer x" } });
    expect(bearer.status).toBe(401);
    const garbage = await raw(fx.url, "GET", "/", { headers: { authorization: "Basic %%%" } });
    expect(garbage.status).toBe(401);
  });

  it("the right credentials work, for every method", async () => {
    expect(
      (await raw(fx.url, "PROPFIND", "/", { headers: { depth: "0" }, auth: good })).status,
    ).toBe(207);
    expect((await raw(fx.url, "PUT", "/a.txt", { body: "x", auth: good })).status).toBe(201);
    expect((await raw(fx.url, "GET", "/a.txt", { auth: good })).text).toBe("x");
    expect((await raw(fx.url, "DELETE", "/a.txt", { auth: good })).status).toBe(204);
  });

  it("a rejected request does not act: PUT without credentials creates nothing", async () => {
    expect((await raw(fx.url, "PUT", "/sneaky.txt", { body: "x" })).status).toBe(401);
    expect((await raw(fx.url, "HEAD", "/sneaky.txt", { auth: good })).status).toBe(404);
  });
});

describe("throttling", () => {
  const fx = useGateway({}, { users });

  it("after 10 failures from one address → 429, even with the right password", async () => {
    for (let i = 0; i < 10; i++) {
      const r = await raw(fx.url, "GET", "/", { auth: { user: USER, password: `bad${i}` } });
      expect(r.status).toBe(401);
    }
    const r = await raw(fx.url, "GET", "/", { auth: { user: USER, password: "bad" } });
    expect(r.status).toBe(429);
    const right = await raw(fx.url, "GET", "/", { auth: { user: USER, password: SECRET } });
    expect(right.status).toBe(429);
    // OPTIONS needs no credentials and stays available.
    expect((await raw(fx.url, "OPTIONS", "/")).status).toBe(200);
  });
});

describe("config: the loopback rule", () => {
  it("refuses a non-loopback host without users", () => {
    expect(() => loadConfig(["--host", "0.0.0.0"], {})).toThrow(ConfigError);
    expect(() => loadConfig(["--host", "192.168.1.2"], {})).toThrow(/loopback/);
    expect(() => loadConfig([], { CLOUDREVE_DAV_HOST: "::" })).toThrow(ConfigError);
  });

  it("accepts loopback without users, and any host with users", () => {
    expect(loadConfig([], {}).config.host).toBe("127.0.0.1");
    expect(loadConfig(["--host", "::1"], {}).config.host).toBe("::1");
    const withUsers = loadConfig(["--host", "0.0.0.0", "--users", JSON.stringify(users)], {});
    expect(withUsers.config.users).toEqual(users);
  });
});

describe("the request log", () => {
  let emu: RunningEmulator;
  let gw: Gateway;
  let url: string;
  const lines: Record<string, unknown>[] = [];
  const rawText: string[] = [];

  beforeAll(async () => {
    emu = await startEmulator({ email: EMAIL, password: PASSWORD });
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        const text = chunk.toString();
        rawText.push(text);
        for (const line of text.split("\n").filter(Boolean))
          lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const config: GatewayConfig = {
      ...defaults(),
      upstream: emu.url,
      email: EMAIL,
      password: PASSWORD,
      stateDir: await mkdtemp(join(tmpdir(), "cloudreve-dav-test-")),
      port: 0,
      users,
    };
    gw = await startGateway(config, createLogger("debug", sink));
    url = gw.url.replace(/\/$/, "");
  });
  afterAll(async () => {
    await gw?.close();
    await emu?.close();
  });

  const requestLines = () => lines.filter((l) => l.msg === "request");
  async function lineFor(method: string, path: string) {
    return vi.waitFor(() => {
      const found = requestLines().filter((l) => l.method === method && l.path === path);
      expect(found).toHaveLength(1);
      return found[0]!;
    });
  }

  it("one info line per request: method, path, status, bytes, ms, and upstream calls at debug level", async () => {
    const auth = { user: USER, password: SECRET };
    const r = await raw(url, "PUT", "/logged.txt", { body: "hello", auth });
    expect(r.status).toBe(201);
    const put = await lineFor("PUT", "/logged.txt");
    expect(put.level).toBe(30);
    expect(put.status).toBe(201);
    expect(typeof put.ms).toBe("number");
    expect(put.bytes).toBeGreaterThan(0);
    expect(put.upstream).toBeGreaterThan(0);

    const get = await raw(url, "GET", "/logged.txt", { auth });
    expect(get.text).toBe("hello");
    const getLine = await lineFor("GET", "/logged.txt");
    expect(getLine.status).toBe(200);
    expect(getLine.bytes).toBeGreaterThanOrEqual(5);

    await raw(url, "OPTIONS", "/opt");
    const options = await lineFor("OPTIONS", "/opt");
    expect(options.status).toBe(200);
    expect(options.upstream).toBe(0);

    await raw(url, "PROPFIND", "/nope", { headers: { depth: "0" }, auth });
    expect((await lineFor("PROPFIND", "/nope")).status).toBe(404);
  });

  it("the path is decoded, without the query; the time is ISO-8601", async () => {
    const auth = { user: USER, password: SECRET };
    await raw(url, "PUT", "/caf%C3%A9%20menu.txt?x=1", { body: "x", auth });
    const line = await lineFor("PUT", "/café menu.txt");
    expect(line.status).toBe(201);
    expect(typeof line.time).toBe("string");
    expect(new Date(line.time as string).toISOString()).toBe(line.time);
    // A control character stays encoded, so that a name cannot start a forged line.
    await raw(url, "PROPFIND", "/a%0Ab", { headers: { depth: "0" }, auth });
    expect((await lineFor("PROPFIND", "/a%0Ab")).status).toBe(404);
  });

  it("rejected and malformed requests are logged too", async () => {
    await raw(url, "GET", "/denied", { auth: { user: USER, password: "wrong-pass-123" } });
    expect((await lineFor("GET", "/denied")).status).toBe(401);
    await raw(url, "GET", "/bad%zz", { auth: { user: USER, password: SECRET } });
    expect((await lineFor("GET", "/bad%zz")).status).toBe(400);
    // A body too large for XML: the answer goes out before the body is read, and the line
    // is still written (the socket may be gone by then).
    const big = `<?xml version="1.0"?><D:propfind xmlns:D="DAV:">${" ".repeat(1_200_000)}</D:propfind>`;
    const r = await raw(url, "PROPFIND", "/big", {
      headers: { depth: "0" },
      body: big,
      auth: { user: USER, password: SECRET },
    }).catch(() => undefined);
    if (r) expect(r.status).toBe(413);
    expect((await lineFor("PROPFIND", "/big")).status).toBe(413);
  });

  it("never logs the password, the Authorization header or the upstream password", async () => {
    const all = rawText.join("");
    expect(requestLines().length).toBeGreaterThanOrEqual(6);
    for (const secret of [
      SECRET,
      "wrong-pass-123",
      Buffer.from(`${USER}:${SECRET}`).toString("base64"),
      Buffer.from(`${USER}:wrong-pass-123`).toString("base64"),
      PASSWORD,
    ]) {
      expect(all).not.toContain(secret);
    }
    expect(all.toLowerCase()).not.toContain("basic ");
  });
});
