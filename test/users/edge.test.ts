/**
 * The gateway's user-facing edges, each through real files and real tools made at test time:
 * htpasswd files written by Apache's `htpasswd` (and reread by `reload()`), throttling and the
 * request log behind a trusted proxy (and in front of an untrusted one), MOVE/COPY with a
 * forwarded public host, `--base-url /dav` (hrefs, redirects, Destination, If tags, lockroot,
 * and litmus), HTTPS with a self-signed certificate (curl, node:tls, rclone, a certificate
 * swapped by `reload()`), and the plain-HTTP warning.
 */
import { randomBytes, X509Certificate } from "node:crypto";
import { appendFile, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ConfigError, defaults, type Config } from "../../src/config.js";
import { startEmulator } from "../../src/emulator/index.js";
import type { EmulatorOptions, RunningEmulator } from "../../src/emulator/options.js";
import { createLogger } from "../../src/log.js";
import { hashPassword } from "../../src/passwords.js";
import { startGateway, type Gateway, type GatewayConfig } from "../../src/server.js";
import { explain, ok, readTree, requireTool, run, type Run } from "../clients/tools.js";
import { expectLitmusPasses, LITMUS_TIMEOUT_MS } from "../clients/litmus.js";
import { stats } from "../helpers/control.js";
import { EMAIL, PASSWORD } from "../helpers/emulator.js";
import { hrefs, LOCK_EXCLUSIVE, raw, type RawOptions } from "../helpers/http-raw.js";
import { until } from "../helpers/wait.js";

const ALICE = { user: "alice", password: "alice's long passphrase" };
const BOB = { user: "bob", password: "bob's other passphrase" };
const USERS = [
  { name: ALICE.user, passwordHash: await hashPassword(ALICE.password) },
  { name: BOB.user, passwordHash: await hashPassword(BOB.password) },
];
const EVENTS = "GET /api/v4/file/events";
const PLAIN_HTTP_WARNING = /plain HTTP on a non-loopback address/;

type LogLine = Record<string, unknown>;

/** An emulator and a gateway in front of it whose log lines are kept (JSON, info and up). */
interface Pair {
  emu: RunningEmulator;
  gw: Gateway;
  /** The gateway's URL without the trailing slash (base URL included). */
  url: string;
  /** scheme://host:port of the gateway, without the base URL. */
  origin: string;
  port: number;
  lines: LogLine[];
  /** The `request` lines. */
  requests(): LogLine[];
  close(): Promise<void>;
}

async function startPair(
  config: Partial<Config>,
  emulatorOptions: EmulatorOptions = {},
): Promise<Pair> {
  const emu = await startEmulator({ email: EMAIL, password: PASSWORD, ...emulatorOptions });
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean))
        lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  let gw: Gateway;
  try {
    const gatewayConfig: GatewayConfig = {
      ...defaults(),
      upstream: emu.url,
      email: EMAIL,
      password: PASSWORD,
      stateDir: await mkdtemp(join(tmpdir(), "cloudreve-dav-edge-")),
      port: 0,
      ...config,
    };
    gw = await startGateway(gatewayConfig, createLogger("info", sink));
  } catch (err) {
    await emu.close();
    throw err;
  }
  // As useGateway does: the suite meets a gateway that has subscribed to change events.
  await until(
    "the gateway to subscribe to change events",
    async () => ((await stats(emu.url)).requests[EVENTS] ?? 0) > 0,
    10_000,
  );
  const url = gw.url.replace(/\/$/, "");
  const parsed = new URL(gw.url);
  return {
    emu,
    gw,
    url,
    origin: `${parsed.protocol}//${parsed.host}`,
    port: Number(parsed.port),
    lines,
    requests: () => lines.filter((l) => l.msg === "request"),
    async close() {
      await gw.close();
      await emu.close();
    },
  };
}

/** A pair for the enclosing describe block, started from settings known only in beforeAll. */
function usePair(
  config: () => Partial<Config> | Promise<Partial<Config>>,
  emulatorOptions: EmulatorOptions = {},
): Pair {
  const pair = {} as Pair;
  beforeAll(async () => {
    Object.assign(pair, await startPair(await config(), emulatorOptions));
  });
  afterAll(async () => {
    await pair.close?.();
  });
  return pair;
}

/** The settings startGateway needs besides the ones under test (for start-up failures). */
async function baseConfig(upstream: string): Promise<GatewayConfig> {
  return {
    ...defaults(),
    upstream,
    email: EMAIL,
    password: PASSWORD,
    stateDir: await mkdtemp(join(tmpdir(), "cloudreve-dav-edge-")),
    port: 0,
  };
}

const silent = () => createLogger("silent");

/** Runs a tool and asserts a clean exit. */
async function tool(file: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return ok(`${file} ${args.join(" ")}`, await run(file, args, { timeoutMs }));
}

const depth = (d: string) => ({ depth: d });
const propfind = (base: string, path: string, auth: RawOptions["auth"], d = "0") =>
  raw(base, "PROPFIND", path, { headers: depth(d), auth });

// ---------------------------------------------------------------------------------------------
// 1. htpasswd files written by Apache's htpasswd
// ---------------------------------------------------------------------------------------------

describe("htpasswd files made by Apache's htpasswd", () => {
  let dir: string;
  let file: string;
  let htpasswd: string;
  const ann = { user: "ann", password: "pw1" }; // bcrypt
  const ben = { user: "ben", password: "pw2" }; // apr1 MD5
  const sue = { user: "sue", password: "pw4" }; // SHA-1, and a users entry (readOnly)
  const cat = { user: "cat", password: "pw3" };
  const dan = { user: "dan", password: "pw5" };

  const pair = usePair(async () => {
    htpasswd = requireTool("htpasswd", "apache2-utils");
    dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-htpasswd-"));
    file = join(dir, "users.htpasswd");
    await tool(htpasswd, ["-B", "-b", "-c", file, ann.user, ann.password]);
    await tool(htpasswd, ["-m", "-b", file, ben.user, ben.password]);
    await tool(htpasswd, ["-s", "-b", file, sue.user, sue.password]);
    return {
      htpasswd: file,
      // alice has her own scrypt hash; sue's password is in the file, her settings here.
      users: [USERS[0]!, { name: sue.user, readOnly: true }],
    };
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the file holds one entry of each scheme, as htpasswd wrote them", async () => {
    const text = await readFile(file, "utf8");
    expect(text).toMatch(/^ann:\$2y\$\d\d\$/m);
    expect(text).toMatch(/^ben:\$apr1\$/m);
    expect(text).toMatch(/^sue:\{SHA\}/m);
  });

  it("bcrypt, apr1 and SHA-1 entries sign in (207); a wrong password → 401", async () => {
    for (const who of [ann, ben, sue]) {
      const good = await propfind(pair.url, "/", who);
      expect(good.status, `${who.user} with the right password`).toBe(207);
      const bad = await propfind(pair.url, "/", { user: who.user, password: `${who.password}x` });
      expect(bad.status, `${who.user} with a wrong password`).toBe(401);
      expect(String(bad.headers["www-authenticate"])).toMatch(/^Basic /);
      // The password of another entry is not this one's.
      const other = who === ann ? ben : ann;
      const crossed = await propfind(pair.url, "/", { user: who.user, password: other.password });
      expect(crossed.status).toBe(401);
    }
  });

  it("the settings' own scrypt users still sign in next to the file", async () => {
    expect((await propfind(pair.url, "/", ALICE)).status).toBe(207);
    expect((await propfind(pair.url, "/", { user: ALICE.user, password: "nope" })).status).toBe(
      401,
    );
  });

  it("a users entry without passwordHash takes the file's password and keeps its settings", async () => {
    expect((await raw(pair.url, "PUT", "/by-sue.txt", { body: "x", auth: sue })).status).toBe(403);
    expect((await raw(pair.url, "PUT", "/by-ben.txt", { body: "ben", auth: ben })).status).toBe(
      201,
    );
    const read = await raw(pair.url, "GET", "/by-ben.txt", { auth: sue });
    expect(read.status).toBe(200);
    expect(read.text).toBe("ben");
  });

  it("a plain-text entry (htpasswd -p) makes startGateway throw a ConfigError naming the line", async () => {
    const bad = join(dir, "plain.htpasswd");
    await tool(htpasswd, ["-B", "-b", "-c", bad, ann.user, ann.password]);
    await tool(htpasswd, ["-p", "-b", bad, "pat", "plain"]);
    expect(await readFile(bad, "utf8")).toMatch(/^pat:plain$/m);
    const err = await startGateway({ ...(await baseConfig(pair.emu.url)), htpasswd: bad }, silent())
      .then((gw) => gw.close().then(() => undefined))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).toContain(bad);
    expect(message).toMatch(/line 2\b/);
    expect(message).toContain('"pat"');
  });

  it("a crypt(3) entry (htpasswd -d) makes startGateway throw a ConfigError naming the line", async () => {
    const bad = join(dir, "crypt.htpasswd");
    await tool(htpasswd, ["-B", "-b", "-c", bad, ann.user, ann.password]);
    await tool(htpasswd, ["-m", "-b", bad, ben.user, ben.password]);
    await tool(htpasswd, ["-d", "-b", bad, "dee", "crypted"]);
    const err = await startGateway({ ...(await baseConfig(pair.emu.url)), htpasswd: bad }, silent())
      .then((gw) => gw.close().then(() => undefined))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(bad);
    expect((err as Error).message).toMatch(/line 3\b/);
    expect((err as Error).message).toContain('"dee"');
  });

  it("a missing htpasswd file makes startGateway throw a ConfigError naming it", async () => {
    const missing = join(dir, "no-such.htpasswd");
    const err = await startGateway(
      { ...(await baseConfig(pair.emu.url)), htpasswd: missing },
      silent(),
    )
      .then((gw) => gw.close().then(() => undefined))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(missing);
  });

  it("reload() after htpasswd -B adds a user lets them in", async () => {
    expect((await propfind(pair.url, "/", cat)).status).toBe(401);
    await tool(htpasswd, ["-B", "-b", file, cat.user, cat.password]);
    await pair.gw.reload();
    expect((await propfind(pair.url, "/", cat)).status).toBe(207);
    expect(pair.lines.some((l) => l.msg === "reloaded the htpasswd file")).toBe(true);
  });

  it("a reload with a broken file logs an error and keeps the old entries in force", async () => {
    // dan is added and read, but never signs in before the file breaks: his first sign-in
    // after the failed reload can only pass through the entries kept from the good read.
    await tool(htpasswd, ["-B", "-b", file, dan.user, dan.password]);
    await pair.gw.reload();
    const good = await readFile(file, "utf8");
    await appendFile(file, "eve:plain-text-password\n");
    await pair.gw.reload();
    const failed = pair.lines.filter((l) => l.msg === "htpasswd reload failed: keeping its users");
    expect(failed).toHaveLength(1);
    expect(failed[0]!.level).toBe(50);
    expect(String(failed[0]!.problem)).toContain('"eve"');
    expect((await propfind(pair.url, "/", dan)).status).toBe(207);
    expect((await propfind(pair.url, "/", ann)).status).toBe(207);
    expect((await propfind(pair.url, "/", cat)).status).toBe(207);
    expect(
      (await propfind(pair.url, "/", { user: "eve", password: "plain-text-password" })).status,
    ).toBe(401);
    await writeFile(file, good);
  });

  it("reload() takes a changed password and a removed user away, even from a header already checked", async () => {
    // ann and ben signed in above: their headers were checked before the file changes.
    expect((await propfind(pair.url, "/", ann)).status).toBe(207);
    expect((await propfind(pair.url, "/", ben)).status).toBe(207);
    await tool(htpasswd, ["-B", "-b", file, ann.user, "pw1-new"]);
    await tool(htpasswd, ["-D", file, ben.user]);
    await pair.gw.reload();
    expect((await propfind(pair.url, "/", { user: ann.user, password: "pw1-new" })).status).toBe(
      207,
    );
    expect((await propfind(pair.url, "/", ann)).status, "ann's old password").toBe(401);
    expect((await propfind(pair.url, "/", ben)).status, "ben, removed from the file").toBe(401);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Trusted proxy and throttling
// ---------------------------------------------------------------------------------------------

const xff = (address: string) => ({ "x-forwarded-for": address });

/** A request as a client at `address` sends it through the proxy at 127.0.0.1. */
function via(address: string, base: string, method: string, path: string, options: RawOptions) {
  return raw(base, method, path, { ...options, headers: { ...xff(address), ...options.headers } });
}

describe("behind a trusted proxy (127.0.0.1): throttling and the log by forwarded address", () => {
  const pair = usePair(() => ({ users: USERS, trustedProxy: ["127.0.0.1"] }));

  it("10 wrong passwords for alice at 203.0.113.5 → 429 with Retry-After there, only for that pair", async () => {
    for (let i = 0; i < 10; i++) {
      const r = await via("203.0.113.5", pair.url, "PROPFIND", "/", {
        headers: depth("0"),
        auth: { user: ALICE.user, password: `wrong ${i}` },
      });
      expect(r.status, `failure ${i + 1}`).toBe(401);
    }
    for (const password of ["wrong again", ALICE.password]) {
      const r = await via("203.0.113.5", pair.url, "PROPFIND", "/", {
        headers: depth("0"),
        auth: { user: ALICE.user, password },
      });
      expect(r.status, `alice at 203.0.113.5 with ${password}`).toBe(429);
      const retryAfter = String(r.headers["retry-after"]);
      expect(retryAfter).toMatch(/^\d+$/);
      expect(Number(retryAfter)).toBeGreaterThan(0);
      expect(Number(retryAfter)).toBeLessThanOrEqual(60);
    }
    // The same user from another address, and another user from the same address, go on.
    const elsewhere = await via("203.0.113.6", pair.url, "PROPFIND", "/", {
      headers: depth("0"),
      auth: ALICE,
    });
    expect(elsewhere.status).toBe(207);
    const bob = await via("203.0.113.5", pair.url, "PROPFIND", "/", {
      headers: depth("0"),
      auth: BOB,
    });
    expect(bob.status).toBe(207);
    // The socket's own address (no X-Forwarded-For) is yet another client.
    expect((await propfind(pair.url, "/", ALICE)).status).toBe(207);
  });

  it("the request lines carry the forwarded client address and the user", async () => {
    await via("203.0.113.6", pair.url, "PUT", "/logged.txt", { body: "log me", auth: ALICE });
    const lines = await vi.waitFor(() => {
      const found = pair.requests().filter((l) => l.path === "/logged.txt");
      expect(found).toHaveLength(1);
      return found;
    });
    expect(lines[0]).toMatchObject({
      method: "PUT",
      status: 201,
      client: "203.0.113.6",
      user: ALICE.user,
    });
    const refused = pair.requests().filter((l) => l.status === 429);
    expect(refused.length).toBeGreaterThanOrEqual(2);
    for (const l of refused) expect(l.client).toBe("203.0.113.5");
    const failed = pair.requests().filter((l) => l.status === 401);
    expect(failed).toHaveLength(10);
    for (const l of failed) expect(l.client).toBe("203.0.113.5");
    const bob = pair.requests().find((l) => l.user === BOB.user);
    expect(bob).toMatchObject({ client: "203.0.113.5", status: 207 });
    // A request straight from the proxy's address is logged under it.
    const direct = pair.requests().filter((l) => l.client === "127.0.0.1");
    expect(direct.map((l) => [l.status, l.user])).toEqual([[207, ALICE.user]]);
  });

  it("a chain of X-Forwarded-For: the nearest address the proxy does not vouch for is the client", async () => {
    const r = await via("198.51.100.1, 203.0.113.9, 127.0.0.1", pair.url, "PUT", "/chain.txt", {
      body: "chain",
      auth: BOB,
    });
    expect(r.status).toBe(201);
    const line = await vi.waitFor(() => {
      const found = pair.requests().find((l) => l.path === "/chain.txt");
      expect(found).toBeDefined();
      return found!;
    });
    expect(line).toMatchObject({ client: "203.0.113.9", user: BOB.user });
  });

  it("100 failures over many names from one address throttle every name there, not elsewhere", async () => {
    for (let batch = 0; batch < 10; batch++) {
      const replies = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          via("203.0.113.7", pair.url, "GET", "/", {
            auth: { user: `guess${batch * 10 + i}`, password: "x" },
          }),
        ),
      );
      expect(replies.map((r) => r.status)).toEqual(Array(10).fill(401));
    }
    const bob = await via("203.0.113.7", pair.url, "PROPFIND", "/", {
      headers: depth("0"),
      auth: BOB,
    });
    expect(bob.status).toBe(429);
    expect(Number(bob.headers["retry-after"])).toBeGreaterThan(0);
    const bobElsewhere = await via("203.0.113.8", pair.url, "PROPFIND", "/", {
      headers: depth("0"),
      auth: BOB,
    });
    expect(bobElsewhere.status).toBe(207);
  });
});

describe("without a trusted proxy, X-Forwarded-For is ignored", () => {
  const pair = usePair(() => ({ users: USERS }));

  it("10 failures claiming 10 addresses throttle alice at the socket's address", async () => {
    for (let i = 0; i < 10; i++) {
      const r = await via(`203.0.113.${20 + i}`, pair.url, "PROPFIND", "/", {
        headers: depth("0"),
        auth: { user: ALICE.user, password: `wrong ${i}` },
      });
      expect(r.status, `failure ${i + 1}`).toBe(401);
    }
    const fresh = await via("203.0.113.99", pair.url, "PROPFIND", "/", {
      headers: depth("0"),
      auth: ALICE,
    });
    expect(fresh.status).toBe(429);
    expect(Number(fresh.headers["retry-after"])).toBeGreaterThan(0);
    expect((await propfind(pair.url, "/", ALICE)).status).toBe(429);
    // bob at the same socket address is not throttled.
    expect((await via("203.0.113.99", pair.url, "GET", "/", { auth: BOB })).status).toBe(200);
  });

  it("the request lines name the socket's address, never a forwarded one", async () => {
    await vi.waitFor(() => expect(pair.requests().length).toBeGreaterThanOrEqual(13));
    for (const l of pair.requests()) expect(l.client).toBe("127.0.0.1");
    expect(pair.requests().find((l) => l.user === BOB.user)).toMatchObject({
      client: "127.0.0.1",
      status: 200,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// 3. MOVE and COPY with a forwarded public host
// ---------------------------------------------------------------------------------------------

const PUBLIC = {
  "x-forwarded-host": "dav.example.com",
  "x-forwarded-proto": "https",
  "x-forwarded-for": "203.0.113.40",
};

describe("MOVE and COPY behind a trusted proxy (loopback) with a public host", () => {
  const pair = usePair(() => ({ users: USERS, trustedProxy: ["loopback"] }));
  const auth = ALICE;

  it("Destination on the forwarded host → 201 and the bytes are at the destination", async () => {
    const bytes = randomBytes(777);
    expect((await raw(pair.url, "PUT", "/a.bin", { body: bytes, auth })).status).toBe(201);
    const moved = await raw(pair.url, "MOVE", "/a.bin", {
      headers: {
        host: `127.0.0.1:${pair.port}`,
        ...PUBLIC,
        destination: "https://dav.example.com/b.bin",
      },
      auth,
    });
    expect(moved.status, moved.text).toBe(201);
    const got = await raw(pair.url, "GET", "/b.bin", { auth });
    expect(got.status).toBe(200);
    expect(got.body.equals(bytes)).toBe(true);
    expect((await raw(pair.url, "GET", "/a.bin", { auth })).status).toBe(404);
  });

  it("the default port written on either side still names the same host", async () => {
    const copied = await raw(pair.url, "COPY", "/b.bin", {
      headers: {
        ...PUBLIC,
        "x-forwarded-host": "dav.example.com:443",
        destination: "https://dav.example.com/c.bin",
      },
      auth,
    });
    expect(copied.status, copied.text).toBe(201);
    const moved = await raw(pair.url, "MOVE", "/c.bin", {
      headers: { ...PUBLIC, destination: "https://dav.example.com:443/d.bin" },
      auth,
    });
    expect(moved.status, moved.text).toBe(201);
    const a = await raw(pair.url, "GET", "/b.bin", { auth });
    const d = await raw(pair.url, "GET", "/d.bin", { auth });
    expect(d.body.equals(a.body)).toBe(true);
  });

  it("Destination on another host → 502 and nothing moves", async () => {
    for (const destination of [
      "https://evil.example.net/x.bin",
      `http://127.0.0.1:${pair.port}/x.bin`,
    ]) {
      const r = await raw(pair.url, "MOVE", "/b.bin", {
        headers: { ...PUBLIC, destination },
        auth,
      });
      expect(r.status, destination).toBe(502);
    }
    expect((await raw(pair.url, "GET", "/b.bin", { auth })).status).toBe(200);
    expect((await raw(pair.url, "GET", "/x.bin", { auth })).status).toBe(404);
  });

  it("without the forwarded host, Host is the authority: Destination on it works", async () => {
    const r = await raw(pair.url, "MOVE", "/d.bin", {
      headers: { destination: `http://127.0.0.1:${pair.port}/e.bin` },
      auth,
    });
    expect(r.status, r.text).toBe(201);
  });
});

describe("MOVE with a forwarded host from an untrusted peer", () => {
  const pair = usePair(() => ({ users: USERS }));

  it("X-Forwarded-Host is not believed: a Destination on it → 502", async () => {
    const auth = ALICE;
    expect((await raw(pair.url, "PUT", "/a.txt", { body: "stay", auth })).status).toBe(201);
    const r = await raw(pair.url, "MOVE", "/a.txt", {
      headers: {
        host: `127.0.0.1:${pair.port}`,
        ...PUBLIC,
        destination: "https://dav.example.com/b.txt",
      },
      auth,
    });
    expect(r.status).toBe(502);
    expect((await raw(pair.url, "GET", "/a.txt", { auth })).text).toBe("stay");
    expect((await raw(pair.url, "GET", "/b.txt", { auth })).status).toBe(404);
  });
});

// ---------------------------------------------------------------------------------------------
// 4. --base-url /dav
// ---------------------------------------------------------------------------------------------

describe("--base-url /dav", () => {
  const pair = usePair(() => ({ users: USERS, baseUrl: "/dav" }));
  const auth = ALICE;

  it("the gateway's URL carries the base", () => {
    expect(pair.gw.url).toBe(`${pair.origin}/dav/`);
  });

  it("PROPFIND Depth 1: every href starts with /dav/", async () => {
    expect((await raw(pair.origin, "PUT", "/dav/f.txt", { body: "f", auth })).status).toBe(201);
    expect((await raw(pair.origin, "MKCOL", "/dav/sub", { auth })).status).toBe(201);
    const r = await propfind(pair.origin, "/dav/", auth, "1");
    expect(r.status).toBe(207);
    const listed = hrefs(r.text);
    expect(listed).toContain("/dav/");
    expect(listed).toContain("/dav/f.txt");
    expect(listed).toContain("/dav/sub/");
    for (const href of listed) expect(href.startsWith("/dav/"), href).toBe(true);
    // The base without its slash is the root folder too.
    const bare = await propfind(pair.origin, "/dav", auth, "0");
    expect(bare.status).toBe(207);
    expect(hrefs(bare.text)).toEqual(["/dav/"]);
  });

  it("outside the base → 404, and a write there creates nothing", async () => {
    for (const path of ["/other", "/", "/f.txt", "/davx/", "/dav.txt"]) {
      expect((await raw(pair.origin, "GET", path, { auth })).status, path).toBe(404);
    }
    expect((await raw(pair.origin, "PUT", "/other.txt", { body: "x", auth })).status).toBe(404);
    const r = await propfind(pair.origin, "/dav/", auth, "1");
    expect(hrefs(r.text)).not.toContain("/dav/other.txt");
  });

  it("GET /dav (no slash) on the root folder → 301 to /dav/; a subfolder likewise", async () => {
    const root = await raw(pair.origin, "GET", "/dav", { auth, headers: { accept: "text/html" } });
    expect(root.status).toBe(301);
    expect(root.headers.location).toBe("/dav/");
    const sub = await raw(pair.origin, "GET", "/dav/sub", { auth });
    expect(sub.status).toBe(301);
    expect(sub.headers.location).toBe("/dav/sub/");
    const index = await raw(pair.origin, "GET", "/dav/", { auth });
    expect(index.status).toBe(200);
    expect(index.text).toContain('href="/dav/f.txt"');
  });

  it("MOVE: Destination under /dav works (path or URL); outside it → 502", async () => {
    const moved = await raw(pair.origin, "MOVE", "/dav/f.txt", {
      headers: { destination: "/dav/x.txt" },
      auth,
    });
    expect(moved.status, moved.text).toBe(201);
    expect((await raw(pair.origin, "GET", "/dav/x.txt", { auth })).text).toBe("f");
    const byUrl = await raw(pair.origin, "MOVE", "/dav/x.txt", {
      headers: { destination: `${pair.origin}/dav/sub/y.txt` },
      auth,
    });
    expect(byUrl.status, byUrl.text).toBe(201);
    for (const destination of ["/x.txt", `${pair.origin}/z.txt`, "/davx/z.txt"]) {
      const r = await raw(pair.origin, "MOVE", "/dav/sub/y.txt", {
        headers: { destination },
        auth,
      });
      expect(r.status, destination).toBe(502);
    }
    expect((await raw(pair.origin, "GET", "/dav/sub/y.txt", { auth })).text).toBe("f");
  });

  it("LOCK: lockroot carries /dav; If tags under /dav are honoured", async () => {
    const lock = await raw(pair.origin, "LOCK", "/dav/locked.txt", {
      headers: { timeout: "Second-600" },
      body: LOCK_EXCLUSIVE,
      auth,
    });
    expect(lock.status).toBe(201);
    expect(lock.text).toContain("<D:lockroot><D:href>/dav/locked.txt</D:href></D:lockroot>");
    const token = String(lock.headers["lock-token"]).replace(/^<|>$/g, "");
    expect(token).not.toBe("");

    const shown = await raw(pair.origin, "PROPFIND", "/dav/locked.txt", {
      headers: depth("0"),
      body: `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>`,
      auth,
    });
    expect(shown.status).toBe(207);
    expect(shown.text).toContain("<D:lockroot><D:href>/dav/locked.txt</D:href></D:lockroot>");

    const blocked = await raw(pair.origin, "PUT", "/dav/locked.txt", { body: "no", auth });
    expect(blocked.status).toBe(423);
    for (const tag of [`${pair.origin}/dav/locked.txt`, "/dav/locked.txt"]) {
      const put = await raw(pair.origin, "PUT", "/dav/locked.txt", {
        headers: { if: `<${tag}> (<${token}>)` },
        body: `via ${tag}`,
        auth,
      });
      expect(put.status, tag).toBe(204);
    }
    // A tag outside the base names no resource of this server: the lock stays in the way.
    const outside = await raw(pair.origin, "PUT", "/dav/locked.txt", {
      headers: { if: `</locked.txt> (<${token}>)` },
      body: "outside",
      auth,
    });
    expect([412, 423]).toContain(outside.status);
    expect((await raw(pair.origin, "GET", "/dav/locked.txt", { auth })).text).toBe(
      "via /dav/locked.txt",
    );
    const unlock = await raw(pair.origin, "UNLOCK", "/dav/locked.txt", {
      headers: { "lock-token": `<${token}>` },
      auth,
    });
    expect(unlock.status).toBe(204);
  });

  it(
    "litmus against the base URL passes every test of basic, copymove, props, locks and http",
    async () => {
      await expectLitmusPasses(`${pair.url}/`, ALICE);
      // litmus worked under /dav/ only, and was never answered 404 for being outside it.
      const byLitmus = pair.requests().filter((l) => /litmus/i.test(String(l.ua)));
      expect(byLitmus.length).toBeGreaterThan(0);
      for (const l of byLitmus)
        expect(String(l.path).startsWith("/dav/"), String(l.path)).toBe(true);
    },
    LITMUS_TIMEOUT_MS + 30_000,
  );
});

// ---------------------------------------------------------------------------------------------
// 5. TLS
// ---------------------------------------------------------------------------------------------

/** A self-signed certificate for 127.0.0.1 and localhost, made by openssl; returns its PEM. */
async function makeCertificate(openssl: string, cert: string, key: string): Promise<Buffer> {
  await tool(openssl, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-days",
    "1",
    "-keyout",
    key,
    "-out",
    cert,
  ]);
  return readFile(cert);
}

interface TlsReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/** One HTTPS request on a connection of its own, trusting `ca`. */
function tlsRaw(
  base: string,
  method: string,
  path: string,
  options: RawOptions & { ca: Buffer },
): Promise<TlsReply> {
  const url = new URL(base);
  const headers: Record<string, string | number> = { ...options.headers };
  if (options.auth) {
    headers.authorization = `Basic ${Buffer.from(`${options.auth.user}:${options.auth.password}`).toString("base64")}`;
  }
  const body = typeof options.body === "string" ? Buffer.from(options.body) : options.body;
  if (Buffer.isBuffer(body)) headers["content-length"] = body.length;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers,
        ca: options.ca,
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const all = Buffer.concat(parts);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: all,
            text: all.toString("utf8"),
          });
        });
      },
    );
    req.on("error", reject);
    req.end(Buffer.isBuffer(body) ? body : undefined);
  });
}

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` presents. */
function presentedFingerprint(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, ca }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.on("error", reject);
  });
}

const fingerprintOf = (pem: Buffer) => new X509Certificate(pem).fingerprint256;

/** curl's PROPFIND Depth 1 with Basic credentials: HTTP status (000 when none) and exit code. */
async function curlPropfind(curl: string, url: string, ca: string): Promise<Run> {
  return run(
    curl,
    [
      "-sS",
      "--cacert",
      ca,
      "-u",
      `${ALICE.user}:${ALICE.password}`,
      "-X",
      "PROPFIND",
      "-H",
      "Depth: 1",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      url,
    ],
    { timeoutMs: 30_000 },
  );
}

describe("HTTPS with --tls-cert and --tls-key", () => {
  let dir: string;
  let certFile: string;
  let keyFile: string;
  let firstPem: Buffer;
  let openssl: string;
  let curl: string;

  const pair = usePair(async () => {
    openssl = requireTool("openssl", "openssl");
    curl = requireTool("curl", "curl");
    dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-tls-"));
    certFile = join(dir, "cert.pem");
    keyFile = join(dir, "key.pem");
    firstPem = await makeCertificate(openssl, certFile, keyFile);
    // The CA curl trusts stays the first certificate even once the files are replaced.
    await copyFile(certFile, join(dir, "first-ca.pem"));
    return { users: USERS, tlsCert: certFile, tlsKey: keyFile };
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the gateway's URL is https://", () => {
    expect(pair.gw.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
  });

  it("curl --cacert PROPFIND Depth 1 → 207; without the CA curl refuses the certificate", async () => {
    const r = await curlPropfind(curl, `${pair.url}/`, join(dir, "first-ca.pem"));
    expect(r.code, explain("curl", r)).toBe(0);
    expect(r.stdout).toBe("207");
    const untrusted = await run(curl, ["-sS", "-o", "/dev/null", `${pair.url}/`], {
      timeoutMs: 30_000,
    });
    expect(untrusted.code, explain("curl without the CA", untrusted)).toBe(60);
  });

  it("a request over TLS works end to end; the log line names the client", async () => {
    const put = await tlsRaw(pair.url, "PUT", "/tls.txt", {
      body: "over tls",
      auth: ALICE,
      ca: firstPem,
    });
    expect(put.status).toBe(201);
    const get = await tlsRaw(pair.url, "GET", "/tls.txt", { auth: ALICE, ca: firstPem });
    expect(get.text).toBe("over tls");
    const line = await vi.waitFor(() => {
      const found = pair.requests().find((l) => l.method === "PUT" && l.path === "/tls.txt");
      expect(found).toBeDefined();
      return found!;
    });
    expect(line).toMatchObject({ status: 201, client: "127.0.0.1", user: ALICE.user });
  });

  it("plain HTTP to the TLS port gets no HTTP answer", async () => {
    await expect(
      raw(`http://127.0.0.1:${pair.port}`, "GET", "/", { auth: ALICE }),
    ).rejects.toThrow();
  });

  it("rclone over HTTPS (--ca-cert) copies a small tree up and back, bytes unchanged", async () => {
    const rclone = requireTool("rclone", "rclone");
    const obscured = (await tool(rclone, ["obscure", ALICE.password])).trim();
    const remote = `:webdav,url='${pair.url}/',vendor=other,user=${ALICE.user},pass=${obscured}:`;
    const up = join(dir, "up");
    const tree = new Map<string, Buffer>([
      ["a.txt", Buffer.from("alpha\n")],
      ["sub/b.bin", randomBytes(100_003)],
      ["sub/deeper/c d.txt", Buffer.from("spaced ✓\n")],
      ["empty.txt", Buffer.alloc(0)],
    ]);
    for (const [rel, data] of tree) {
      await mkdir(join(up, rel, ".."), { recursive: true });
      await writeFile(join(up, rel), data);
    }
    const rc = (args: string[]) =>
      run(rclone, ["--config", "/dev/null", "--ca-cert", certFile, ...args], {
        timeoutMs: 120_000,
      });
    ok("rclone copy up", await rc(["copy", up, `${remote}tree`]));
    const down = join(dir, "down");
    ok("rclone copy down", await rc(["copy", `${remote}tree`, down]));
    const got = await readTree(down);
    expect([...got.keys()].sort()).toEqual([...tree.keys()].sort());
    for (const [rel, data] of tree) expect(got.get(rel)?.equals(data), rel).toBe(true);
    // Over the gateway's own HTTPS too, the way another client would read it.
    const b = await tlsRaw(pair.url, "GET", "/tree/sub/b.bin", { auth: ALICE, ca: firstPem });
    expect(b.body.equals(tree.get("sub/b.bin")!)).toBe(true);
    // Without the CA, rclone refuses the certificate.
    const refused = await run(rclone, ["--config", "/dev/null", "lsf", `${remote}tree`], {
      timeoutMs: 60_000,
    });
    expect(refused.code, explain("rclone without --ca-cert", refused)).not.toBe(0);
  }, 180_000);

  it("reload() after a new certificate is written: new connections get it, curl trusts the new CA", async () => {
    expect(await presentedFingerprint(pair.port, firstPem)).toBe(fingerprintOf(firstPem));
    const next = join(dir, "next");
    await mkdir(next);
    const secondPem = await makeCertificate(openssl, join(next, "cert.pem"), join(next, "key.pem"));
    expect(fingerprintOf(secondPem)).not.toBe(fingerprintOf(firstPem));
    // Before the reload the old certificate is still served.
    await copyFile(join(next, "cert.pem"), certFile);
    await copyFile(join(next, "key.pem"), keyFile);
    expect(await presentedFingerprint(pair.port, firstPem)).toBe(fingerprintOf(firstPem));

    await pair.gw.reload();
    expect(await presentedFingerprint(pair.port, secondPem)).toBe(fingerprintOf(secondPem));
    const r = await curlPropfind(curl, `${pair.url}/`, join(next, "cert.pem"));
    expect(r.code, explain("curl with the new CA", r)).toBe(0);
    expect(r.stdout).toBe("207");
    const old = await curlPropfind(curl, `${pair.url}/`, join(dir, "first-ca.pem"));
    expect(old.code, explain("curl with the old CA", old)).toBe(60);
  });

  it("a reload with a broken certificate logs an error and keeps serving the current one", async () => {
    const current = await readFile(certFile);
    await writeFile(
      certFile,
      "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
    );
    const tlsFailed = () =>
      pair.lines.filter((l) => l.msg === "TLS reload failed: keeping the certificate");
    const before = tlsFailed();
    await pair.gw.reload();
    const after = tlsFailed();
    expect(after.length).toBe(before.length + 1);
    expect(await presentedFingerprint(pair.port, current)).toBe(fingerprintOf(current));
    const r = await tlsRaw(pair.url, "PROPFIND", "/", {
      headers: depth("0"),
      auth: ALICE,
      ca: current,
    });
    expect(r.status).toBe(207);
    await writeFile(certFile, current);
  });

  it("an unreadable certificate or key makes startGateway throw a ConfigError naming it", async () => {
    for (const [cert, key, named] of [
      [join(dir, "missing-cert.pem"), keyFile, "tlsCert"],
      [certFile, join(dir, "missing-key.pem"), "tlsKey"],
    ] as const) {
      const err = await startGateway(
        { ...(await baseConfig(pair.emu.url)), users: USERS, tlsCert: cert, tlsKey: key },
        silent(),
      )
        .then((gw) => gw.close().then(() => undefined))
        .catch((e: unknown) => e);
      expect(err, named).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain(named);
    }
  });

  it("a certificate file that is not PEM makes startGateway throw a ConfigError naming it", async () => {
    const garbage = join(dir, "garbage.pem");
    await writeFile(garbage, "this is not a certificate\n");
    const err = await startGateway(
      { ...(await baseConfig(pair.emu.url)), users: USERS, tlsCert: garbage, tlsKey: keyFile },
      silent(),
    )
      .then((gw) => gw.close().then(() => undefined))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain("tlsCert");
  });
});

describe("reload() with a certificate and an htpasswd file: each file on its own", () => {
  let dir: string;
  let certFile: string;
  let keyFile: string;
  let file: string;
  let htpasswd: string;
  let openssl: string;
  let firstPem: Buffer;
  const ann = { user: "ann", password: "pw1" };
  const cat = { user: "cat", password: "pw3" };
  const dan = { user: "dan", password: "pw5" };

  const pair = usePair(async () => {
    openssl = requireTool("openssl", "openssl");
    htpasswd = requireTool("htpasswd", "apache2-utils");
    dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-reload-"));
    certFile = join(dir, "cert.pem");
    keyFile = join(dir, "key.pem");
    file = join(dir, "users.htpasswd");
    firstPem = await makeCertificate(openssl, certFile, keyFile);
    await tool(htpasswd, ["-B", "-b", "-c", file, ann.user, ann.password]);
    return { htpasswd: file, tlsCert: certFile, tlsKey: keyFile };
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const status = async (who: { user: string; password: string }, ca: Buffer) =>
    (await tlsRaw(pair.url, "PROPFIND", "/", { headers: depth("0"), auth: who, ca })).status;

  it("a broken certificate keeps the old one, and the good htpasswd file is still reread", async () => {
    expect(await status(ann, firstPem)).toBe(207);
    expect(await status(cat, firstPem)).toBe(401);
    await writeFile(certFile, "not a certificate\n");
    await tool(htpasswd, ["-B", "-b", file, cat.user, cat.password]);
    await pair.gw.reload();
    expect(await presentedFingerprint(pair.port, firstPem)).toBe(fingerprintOf(firstPem));
    expect(await status(ann, firstPem)).toBe(207);
    expect(await status(cat, firstPem), "cat, added to the good htpasswd file").toBe(207);
  });

  it("a broken htpasswd file keeps the old users, and the good new certificate is taken", async () => {
    const next = join(dir, "next");
    await mkdir(next);
    const secondPem = await makeCertificate(openssl, join(next, "cert.pem"), join(next, "key.pem"));
    await copyFile(join(next, "cert.pem"), certFile);
    await copyFile(join(next, "key.pem"), keyFile);
    await tool(htpasswd, ["-B", "-b", file, dan.user, dan.password]);
    await appendFile(file, "eve:plain\n");
    await pair.gw.reload();
    expect(await presentedFingerprint(pair.port, secondPem)).toBe(fingerprintOf(secondPem));
    expect(await status(ann, secondPem)).toBe(207);
    expect(await status(dan, secondPem), "dan, in the broken file only").toBe(401);
  });
});

// ---------------------------------------------------------------------------------------------
// 6. The plain-HTTP warning
// ---------------------------------------------------------------------------------------------

describe("the plain-HTTP warning", () => {
  let dir: string;
  let cert: string;
  let key: string;

  beforeAll(async () => {
    const openssl = requireTool("openssl", "openssl");
    dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-warn-"));
    cert = join(dir, "cert.pem");
    key = join(dir, "key.pem");
    await makeCertificate(openssl, cert, key);
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const warnings = (p: Pair) => p.lines.filter((l) => PLAIN_HTTP_WARNING.test(String(l.msg)));

  it("0.0.0.0 with users and no TLS: one warning line naming the host", async () => {
    const p = await startPair({ users: USERS, host: "0.0.0.0" });
    try {
      expect(p.gw.url).toMatch(/^http:\/\//);
      const found = warnings(p);
      expect(found).toHaveLength(1);
      expect(found[0]).toMatchObject({ level: 40, host: "0.0.0.0" });
      // It serves all the same.
      const r = await propfind(`http://127.0.0.1:${p.port}`, "/", ALICE);
      expect(r.status).toBe(207);
    } finally {
      await p.close();
    }
  });

  it("0.0.0.0 with TLS: no warning", async () => {
    const p = await startPair({ users: USERS, host: "0.0.0.0", tlsCert: cert, tlsKey: key });
    try {
      expect(p.gw.url).toMatch(/^https:\/\//);
      expect(warnings(p)).toEqual([]);
    } finally {
      await p.close();
    }
  });

  it("loopback without TLS: no warning", async () => {
    const p = await startPair({ users: USERS });
    try {
      expect(warnings(p)).toEqual([]);
    } finally {
      await p.close();
    }
  });
});
