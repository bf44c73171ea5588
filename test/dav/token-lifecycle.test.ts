/**
 * A refused refresh token, seen from WebDAV: with a password the gateway logs in again and the
 * client never notices; without one every request answers 503 naming the fix, the upstream is
 * asked once, and the log says so once. No credential or token ever reaches the log.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaults } from "../../src/config.js";
import { startEmulator } from "../../src/emulator/index.js";
import type { RunningEmulator } from "../../src/emulator/options.js";
import { createLogger } from "../../src/log.js";
import { startGateway, type Gateway } from "../../src/server.js";
import { advanceClock, R, resetStats, stats, totalCalls } from "../helpers/control.js";
import { Api, EMAIL } from "../helpers/emulator.js";
import { raw } from "../helpers/http-raw.js";

const ACCESS_TTL = 600;
/** Unlike the suite's usual password ("cloudreve-dav"), not a word the gateway's messages hold. */
const PASSWORD = "token-lifecycle-secret";
const REFUSED_LINE = "Cloudreve refused the gateway's credentials";

/**
 * An emulator and a gateway configured with a refresh token from a login of its own (and the
 * password or not), logging into `lines`.
 */
function useTokenGateway(withPassword: boolean) {
  const fx = {
    lines: [] as Record<string, unknown>[],
    text: [] as string[],
  } as {
    emu: RunningEmulator;
    gw: Gateway;
    url: string;
    refreshToken: string;
    lines: Record<string, unknown>[];
    text: string[];
  };
  beforeAll(async () => {
    fx.emu = await startEmulator({ email: EMAIL, password: PASSWORD, accessTtl: ACCESS_TTL });
    const browser = new Api(fx.emu.url);
    await browser.login(EMAIL, PASSWORD);
    fx.refreshToken = browser.refreshToken!;
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        const text = chunk.toString();
        fx.text.push(text);
        for (const line of text.split("\n").filter(Boolean)) {
          fx.lines.push(JSON.parse(line) as Record<string, unknown>);
        }
        done();
      },
    });
    fx.gw = await startGateway(
      {
        ...defaults(),
        upstream: fx.emu.url,
        email: withPassword ? EMAIL : undefined,
        password: withPassword ? PASSWORD : undefined,
        refreshToken: fx.refreshToken,
        stateDir: await mkdtemp(join(tmpdir(), "cloudreve-dav-test-")),
        port: 0,
        cacheTtlSeconds: 0,
      },
      createLogger("debug", sink),
    );
    fx.url = fx.gw.url.replace(/\/$/, "");
  });
  afterAll(async () => {
    await fx.gw?.close();
    await fx.emu?.close();
  });
  return fx;
}

/** Ends the refresh token's login upstream, and lets the access token run out. */
async function signOutAndExpire(base: string, refreshToken: string): Promise<void> {
  const res = await fetch(`${base}/api/v4/session/token`, {
    method: "DELETE",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  expect(((await res.json()) as { code: number }).code).toBe(0);
  await advanceClock(base, ACCESS_TTL + 60);
}

const propfind = (url: string, path: string) =>
  raw(url, "PROPFIND", path, { headers: { depth: "0" } });

describe("a signed-out refresh token, no password configured", () => {
  const fx = useTokenGateway(false);

  it("serves with the refresh token alone", async () => {
    expect((await propfind(fx.url, "/")).status).toBe(207);
    const s = await stats(fx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBe(1); // the test's own, for the token
  });

  it("every request answers 503 naming the fix; the upstream is asked once", async () => {
    await signOutAndExpire(fx.emu.url, fx.refreshToken);
    await resetStats(fx.emu.url);
    const replies = [];
    for (let i = 0; i < 5; i++) {
      replies.push(await propfind(fx.url, `/missing-${i}`));
      replies.push(await raw(fx.url, "GET", `/file-${i}`));
      replies.push(await raw(fx.url, "MKCOL", `/folder-${i}`));
    }
    for (const r of replies) {
      expect(r.status).toBe(503);
      expect(r.text).toMatch(/refresh token was refused \(revoked or expired\)/);
      expect(r.text).toMatch(/sign in to Cloudreve again/);
      expect(r.text).toMatch(/configure the password/);
    }
    const s = await stats(fx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.login]).toBeUndefined();
    // The first request's call, answered as anonymous (401), and that one refresh: no more.
    expect(await totalCalls(fx.emu.url)).toBeLessThanOrEqual(2);

    const refused = fx.lines.filter((l) => l.msg?.toString().startsWith(REFUSED_LINE));
    expect(refused).toHaveLength(1);
    expect(refused[0]!.level).toBe(50);
    expect(refused[0]!.problem).toMatch(
      /configure the new refresh token, or configure the password/,
    );
    // That is the only error line: each refused request notes its 503 at warn.
    expect(fx.lines.filter((l) => Number(l.level) >= 50)).toHaveLength(1);
    expect(fx.lines.filter((l) => l.msg === "request" && l.status === 503)).toHaveLength(15);
  });

  it("no credential or token reaches the log", async () => {
    await fx.gw.close(); // every request line is out
    const log = fx.text.join("");
    expect(fx.lines.filter((l) => l.msg === "request").length).toBeGreaterThanOrEqual(16);
    expect(log).not.toContain(fx.refreshToken);
    expect(log).not.toContain(PASSWORD);
    expect(log).not.toMatch(/eyJ[\w-]+\.[\w-]+\./); // any JWT
  });
});

describe("a signed-out refresh token, password configured", () => {
  const fx = useTokenGateway(true);

  it("the next request logs in again and succeeds", async () => {
    expect((await propfind(fx.url, "/")).status).toBe(207);
    await signOutAndExpire(fx.emu.url, fx.refreshToken);
    await resetStats(fx.emu.url);
    expect((await propfind(fx.url, "/")).status).toBe(207);
    expect((await propfind(fx.url, "/")).status).toBe(207);
    const s = await stats(fx.emu.url);
    expect(s.requests[R.refresh]).toBe(1); // refused
    expect(s.requests[R.login]).toBe(1);
    expect(fx.lines.filter((l) => l.level === 50)).toEqual([]);
  });

  it("no credential or token reaches the log", async () => {
    await fx.gw.close();
    const log = fx.text.join("");
    expect(log).not.toContain(fx.refreshToken);
    expect(log).not.toContain(PASSWORD);
    expect(log).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
  });
});
