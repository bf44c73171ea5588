/**
 * `cloudreve-dav login` as a person runs it (answers piped on standard input), and the gateway
 * that then starts with the email alone.
 */
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TOTP } from "otpauth";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inlineImage } from "../src/login.js";
import { Cli, cleanEnv, ROOT } from "./helpers/cli.js";
import { advanceClock, calls, newestCaptchaAnswer, R, resetStats } from "./helpers/control.js";
import { Api, EMAIL, useEmulator } from "./helpers/emulator.js";

/** Straight from the source: no build, so no race with the suites that build dist/. */
const CLI = ["--import", "tsx", join(ROOT, "src", "cli.ts")];
/** Unlike the suite's usual password, not a word the output has anyway. */
const PASSWORD = "horse-battery-staple";
const OTP_SECRET = "JBSWY3DPEHPK3PXP";
/** Past the emulator's access token lifetime (3600 s): the saved access token is dead. */
const ACCESS_EXPIRED_S = 3600 + 60;

let home: string;
let runs = 0;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "cloudreve-dav-login-"));
});

afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

/** A state directory of its own for each run. */
const freshStateDir = () => join(home, `state-${runs++}`);

/** `cloudreve-dav login` against `upstream`; `input` ends standard input when given. */
function login(upstream: string, stateDir: string, input?: string, email: string | null = EMAIL) {
  const account = email === null ? [] : ["--email", email];
  return new Cli(
    [...CLI, "login", "--upstream", upstream, ...account, "--state-dir", stateDir],
    cleanEnv(home),
    input,
  );
}

/** Where the gateway looks for the account's token pair: STATE_DIR/<site>-<email>.json. */
const stateFileOf = (upstream: string, stateDir: string) =>
  join(stateDir, `${new URL(upstream).host.replace(/[^A-Za-z0-9.-]/g, "_")}-${EMAIL}.json`);

interface Saved {
  email: string;
  token: { access_token: string; refresh_token: string };
}

/** The saved pair; the file is the owner's alone, and no secret reached the terminal. */
async function expectSaved(cli: Cli, upstream: string, stateDir: string): Promise<Saved> {
  const file = stateFileOf(upstream, stateDir);
  expect((await stat(file)).mode & 0o777).toBe(0o600);
  const saved = JSON.parse(await readFile(file, "utf8")) as Saved;
  expect(saved.email).toBe(EMAIL);
  expect(saved.token.access_token).toMatch(/^eyJ/);
  expect(saved.token.refresh_token).toMatch(/^eyJ/);
  expect(cli.stdout).toContain(`as ${EMAIL}`);
  expect(cli.stdout).toContain(file);
  expect(cli.stdout).toMatch(/Signing out of it in Cloudreve.*end it/);
  expect(cli.output).not.toContain(PASSWORD);
  expect(cli.output).not.toContain(saved.token.access_token);
  expect(cli.output).not.toContain(saved.token.refresh_token);
  expect(cli.output).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  return saved;
}

/** The gateway with the email alone (no password, no refresh token), once it serves. */
async function serve(upstream: string, stateDir: string): Promise<{ cli: Cli; url: string }> {
  const cli = new Cli(
    [...CLI, "--upstream", upstream, "--email", EMAIL, "--state-dir", stateDir, "--port", "0"],
    cleanEnv(home),
  );
  const [line] = await cli.waitFor(/\{[^\n]*"msg":"serving WebDAV"[^\n]*\}/);
  return { cli, url: (JSON.parse(line) as { url: string }).url };
}

async function stop(cli: Cli) {
  cli.child.kill("SIGTERM");
  expect(await cli.finished()).toEqual({ code: 0, signal: null });
}

/**
 * Hours after `login`: the saved access token has expired, the refresh token has not. The
 * gateway starts with the email alone, serves, and renews with the refresh token, never the password.
 */
async function expectServedWithSavedSession(emu: string, stateDir: string): Promise<void> {
  await advanceClock(emu, ACCESS_EXPIRED_S);
  await resetStats(emu);
  const { cli: gateway, url } = await serve(emu, stateDir);
  try {
    await gateway.waitFor(/"msg":"logged in upstream"/);
    const r = await fetch(url, { method: "PROPFIND", headers: { depth: "1" } });
    expect(r.status).toBe(207);
    expect(await calls(emu, R.refresh)).toBeGreaterThanOrEqual(1);
    expect(await calls(emu, R.login)).toBe(0);
    await stop(gateway);
  } finally {
    gateway.kill();
  }
}

describe("an account with a password only", () => {
  const ctx = useEmulator({ password: PASSWORD });

  it("saves the session; the gateway then starts with the email alone and renews it", async () => {
    const stateDir = freshStateDir();
    const cli = login(ctx.emu.url, stateDir, `${PASSWORD}\n`);
    expect(await cli.finished()).toEqual({ code: 0, signal: null });
    await expectSaved(cli, ctx.emu.url, stateDir);

    await expectServedWithSavedSession(ctx.emu.url, stateDir);
  });

  it("asks for the email when none is configured", async () => {
    const stateDir = freshStateDir();
    const cli = login(ctx.emu.url, stateDir, `${EMAIL}\n${PASSWORD}\n`, null);
    expect(await cli.finished()).toEqual({ code: 0, signal: null });
    await expectSaved(cli, ctx.emu.url, stateDir);
  });

  it("a wrong password: exit 1 with a clear message, nothing saved", async () => {
    const stateDir = freshStateDir();
    const cli = login(ctx.emu.url, stateDir, "not-the-password\n");
    expect((await cli.finished()).code).toBe(1);
    expect(cli.stderr).toContain("Cloudreve refused the sign-in: wrong email or password");
    expect(cli.output).not.toContain("not-the-password");
    await expect(stat(stateFileOf(ctx.emu.url, stateDir))).rejects.toThrow(/ENOENT/);
  });

  it("standard input that ends with nothing: exit 2 naming what is missing, no hang", async () => {
    const cli = login(ctx.emu.url, freshStateDir(), "");
    expect((await cli.finished()).code).toBe(2);
    expect(cli.stderr).toMatch(/no password given: type it when asked, or give one line/);
  });

  it("no upstream: exit 2 with an example", async () => {
    const cli = new Cli([...CLI, "login", "--email", EMAIL], cleanEnv(home), "");
    expect((await cli.finished()).code).toBe(2);
    expect(cli.stderr).toMatch(/upstream is not set.*Example: .*login --upstream https:\/\//);
  });

  it("the gateway with an email but no saved session says to run login", async () => {
    const { cli, url } = await serve(ctx.emu.url, freshStateDir());
    try {
      await cli.waitFor(/"msg":"cannot log in upstream yet/);
      const r = await fetch(url, { method: "PROPFIND", headers: { depth: "0" } });
      expect(r.status).toBe(503);
      expect(await r.text()).toMatch(/no saved Cloudreve session for .* run `cloudreve-dav login`/);
      await stop(cli);
    } finally {
      cli.kill();
    }
  });

  it("a session signed out in Cloudreve: the gateway says to run login again", async () => {
    const stateDir = freshStateDir();
    const cli = login(ctx.emu.url, stateDir, `${PASSWORD}\n`);
    expect((await cli.finished()).code).toBe(0);
    const saved = await expectSaved(cli, ctx.emu.url, stateDir);
    const api = new Api(ctx.emu.url);
    const signOut = { json: { refresh_token: saved.token.refresh_token }, auth: false };
    expect((await api.call("DELETE", "/session/token", signOut)).json.code).toBe(0);
    await advanceClock(ctx.emu.url, ACCESS_EXPIRED_S);

    const { cli: gateway } = await serve(ctx.emu.url, stateDir);
    try {
      const [line] = await gateway.waitFor(/\{[^\n]*"msg":"cannot log in upstream yet[^\n]*\}/);
      const { problem } = JSON.parse(line) as { problem: string };
      expect(problem).toMatch(/refresh token was refused .*run `cloudreve-dav login` again/);
      await stop(gateway);
    } finally {
      gateway.kill();
    }
  });
});

describe("an account behind a login captcha", () => {
  const ctx = useEmulator({ password: PASSWORD, captcha: true });

  /** Login with the password piped; the captcha answered once its image is shown. */
  async function withCaptcha(stateDir: string, answer: (right: string) => string) {
    const cli = login(ctx.emu.url, stateDir);
    cli.child.stdin!.write(`${PASSWORD}\n`);
    const [, image] = await cli.waitFor(/captcha image: (\S+)\n/);
    expect((await stat(image!)).isFile()).toBe(true);
    cli.child.stdin!.end(`${answer(await newestCaptchaAnswer(ctx.emu.url))}\n`);
    const finished = await cli.finished();
    // The image was only needed for the answer.
    await expect(stat(image!)).rejects.toThrow(/ENOENT/);
    return { cli, finished };
  }

  it("shows the image's path, takes the answer and saves the session", async () => {
    const stateDir = freshStateDir();
    const { cli, finished } = await withCaptcha(stateDir, (right) => right);
    expect(finished).toEqual({ code: 0, signal: null });
    await expectSaved(cli, ctx.emu.url, stateDir);
  });

  it("a wrong answer: exit 1 saying so", async () => {
    const stateDir = freshStateDir();
    const { cli, finished } = await withCaptcha(stateDir, (right) => `${right}x`);
    expect(finished.code).toBe(1);
    expect(cli.stderr).toContain("the captcha answer was wrong");
    await expect(stat(stateFileOf(ctx.emu.url, stateDir))).rejects.toThrow(/ENOENT/);
  });
});

describe("an account with two-factor authentication", () => {
  const ctx = useEmulator({ password: PASSWORD, otpSecret: OTP_SECRET });
  const totp = new TOTP({ secret: OTP_SECRET });

  it("a wrong code: exit 1 saying so", async () => {
    // A code valid in no window the server accepts.
    let wrong = 0;
    while (totp.validate({ token: String(wrong).padStart(6, "0"), window: 2 }) !== null) wrong++;
    const stateDir = freshStateDir();
    const cli = login(ctx.emu.url, stateDir, `${PASSWORD}\n${String(wrong).padStart(6, "0")}\n`);
    expect((await cli.finished()).code).toBe(1);
    expect(cli.stderr).toContain("Cloudreve refused the sign-in: the two-factor code was refused");
    await expect(stat(stateFileOf(ctx.emu.url, stateDir))).rejects.toThrow(/ENOENT/);
  });

  it("takes the code after the password; the gateway then needs neither", async () => {
    const stateDir = freshStateDir();
    await resetStats(ctx.emu.url);
    const cli = login(ctx.emu.url, stateDir, `${PASSWORD}\n${totp.generate()}\n`);
    expect(await cli.finished()).toEqual({ code: 0, signal: null });
    await expectSaved(cli, ctx.emu.url, stateDir);
    expect(await calls(ctx.emu.url, "POST /api/v4/session/token/2fa")).toBe(1);

    await expectServedWithSavedSession(ctx.emu.url, stateDir);
  });
});

describe("the captcha image inline", () => {
  /** 9,336 characters in base64: three chunks for kitty. */
  const png = Buffer.alloc(7000, 1);

  it("iTerm2: one OSC 1337 inline file", () => {
    const shown = inlineImage("image/png", png, { TERM_PROGRAM: "iTerm.app" });
    expect(shown).toBe(`\x1b]1337;File=inline=1;size=7000:${png.toString("base64")}\x07\n`);
  });

  it("kitty: the graphics protocol in chunks of at most 4096 characters", () => {
    const shown = inlineImage("image/png", png, { TERM: "xterm-kitty" })!;
    const [last, ...rest] = shown.split("\x1b\\").reverse();
    expect(last).toBe("\n");
    const escapes = rest.reverse().map((escape) => {
      expect(escape.startsWith("\x1b_G")).toBe(true);
      const [keys, payload] = escape.slice(3).split(";");
      return { keys, payload: payload! };
    });
    expect(escapes.map((e) => e.keys)).toEqual(["a=T,f=100,m=1", "m=1", "m=0"]);
    expect(escapes.every((e) => e.payload.length <= 4096)).toBe(true);
    expect(escapes.map((e) => e.payload).join("")).toBe(png.toString("base64"));
  });

  it("elsewhere, and kitty with anything but PNG: nothing (the path is printed)", () => {
    expect(inlineImage("image/png", png, { TERM: "xterm-256color" })).toBeUndefined();
    expect(inlineImage("image/jpeg", png, { TERM: "xterm-kitty" })).toBeUndefined();
  });
});
