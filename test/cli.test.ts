/**
 * The CLI as a real process: what `npm start` runs (dist/cli.js, built here first).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { request, type ClientRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireTool } from "./clients/tools.js";
import { hashPassword, verifyPassword } from "../src/passwords.js";
import { startEmulator } from "../src/emulator/index.js";
import type { RunningEmulator } from "../src/emulator/options.js";
import { Api, EMAIL, PASSWORD } from "./helpers/emulator.js";
import { hrefs } from "./helpers/http-raw.js";
import { Cli as Spawned, cleanEnv, ROOT, WAIT_MS } from "./helpers/cli.js";

const CLI = join(ROOT, "dist", "cli.js");

let home: string;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "cloudreve-dav-cli-"));
  await promisify(execFile)("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: ROOT });
}, 120_000);

afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

/** The built CLI on a fresh machine. */
class Cli extends Spawned {
  constructor(args: string[], env: Record<string, string> = {}, input?: string) {
    super([CLI, ...args], cleanEnv(home, env), input);
  }
}

async function run(args: string[], input?: string, env: Record<string, string> = {}) {
  const cli = new Cli(args, env, input ?? "");
  const { code } = await cli.finished();
  return { code, stdout: cli.stdout, stderr: cli.stderr };
}

/** Polls (bounded) until `probe` answers something truthy. */
async function eventually<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  const until = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("cloudreve-dav hash-password", () => {
  it("reads a password from standard input and prints a scrypt hash that verifies", async () => {
    const { code, stdout, stderr } = await run(["hash-password"], "correct horse battery\n");
    expect(code).toBe(0);
    expect(stderr).toBe("");
    const hash = stdout.trim();
    expect(stdout).toBe(`${hash}\n`);
    expect(hash).toMatch(/^scrypt\$\d+\$\d+\$\d+\$[^$]+\$[^$]+$/);
    expect(await verifyPassword("correct horse battery", hash)).toBe(true);
    expect(await verifyPassword("correct horse", hash)).toBe(false);
  });

  it("takes the last line without a newline too", async () => {
    const { code, stdout } = await run(["hash-password"], "no-newline");
    expect(code).toBe(0);
    expect(await verifyPassword("no-newline", stdout.trim())).toBe(true);
  });

  it("refuses an empty password", async () => {
    const { code, stdout, stderr } = await run(["hash-password"], "");
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain("no password given");
  });

  it("works where the serving settings are still incomplete (a container before its first user)", async () => {
    const { code, stdout } = await run(["hash-password"], "pw\n", {
      CLOUDREVE_DAV_HOST: "0.0.0.0",
    });
    expect(code).toBe(0);
    expect(stdout).toMatch(/^scrypt\$/);
  });
});

describe("bad settings", () => {
  it("exit 2 with the key, the problem and an example", async () => {
    const { code, stdout, stderr } = await run(["--port", "eighty"]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toBe(
      'cloudreve-dav: port (--port): must be an integer from 0 to 65535, got "eighty". Example: --port 8080\n',
    );
  });

  it("an unknown flag exits 2 and points at --help", async () => {
    const { code, stderr } = await run(["--prot", "8080"]);
    expect(code).toBe(2);
    expect(stderr).toContain("--prot: unknown flag (did you mean --port?)");
  });

  it("a bad environment variable exits 2 naming it", async () => {
    const { code, stderr } = await run([], undefined, { CLOUDREVE_DAV_DOWNLOAD_MODE: "fast" });
    expect(code).toBe(2);
    expect(stderr).toContain("downloadMode (environment CLOUDREVE_DAV_DOWNLOAD_MODE)");
  });

  it("a non-loopback host without users is refused", async () => {
    const { code, stderr } = await run(["--host", "0.0.0.0", "--port", "0"]);
    expect(code).toBe(2);
    expect(stderr).toContain("host: 0.0.0.0 is not a loopback address");
  });

  it("an unknown command exits 2 with the usage", async () => {
    const { code, stderr } = await run(["serve-everything"]);
    expect(code).toBe(2);
    expect(stderr).toContain('unknown command "serve-everything"');
    expect(stderr).toContain("usage: cloudreve-dav");
  });

  it("--help prints every setting and exits 0", async () => {
    const { code, stdout } = await run(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("--upstream");
    expect(stdout).toContain("CLOUDREVE_DAV_SHUTDOWN_TIMEOUT_SECONDS");
  });
});

describe("--version and short flags", () => {
  it("--version and -v print package.json's version and exit 0, even with bad settings", async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
      version: string;
    };
    for (const flag of ["--version", "-v"]) {
      const { code, stdout, stderr } = await run([flag], "", { CLOUDREVE_DAV_PORT: "eighty" });
      expect([code, stdout, stderr]).toEqual([0, `${version}\n`, ""]);
    }
  });

  it("-h is --help", async () => {
    const short = await run(["-h"]);
    expect(short.code).toBe(0);
    expect(short.stdout).toBe((await run(["--help"])).stdout);
  });

  it("hints name the command as it was started: installed, or `npm start --` in a checkout", async () => {
    const installed = await run(["--help"], "", { npm_lifecycle_event: "test" });
    expect(installed.stdout).toContain("cloudreve-dav hash-password");
    expect(installed.stdout).not.toContain("npm start");
    const checkout = await run(["--help"], "", { npm_lifecycle_event: "start" });
    expect(checkout.stdout).toContain("usage: npm start -- [--config FILE]");
    expect(checkout.stdout).toContain("npm start -- hash-password");
  });
});

describe("demo mode (no upstream)", () => {
  it("serves WebDAV at the printed URL, names the demo account and stops on SIGTERM", async () => {
    const cli = new Cli(["--port", "0", "--log-level", "trace"]);
    try {
      const [, url] = await cli.waitFor(/Mount (http:\/\/\S+)/);
      const [, email, password, upstream] = await cli.waitFor(
        /Demo Cloudreve account: (\S+) \/ (\S+) at (http:\/\/\S+)/,
      );
      await cli.waitFor(/"msg":"serving WebDAV"/);
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect(new URL(url!).port).not.toBe("0");
      expect(email).toBe("demo@example.com");

      // The demo account is real: the emulator takes it.
      const api = new Api(upstream!);
      await api.login(email, password);

      const options = await fetch(url!, { method: "OPTIONS" });
      expect(options.status).toBe(200);
      expect(options.headers.get("dav")).toBe("1, 2");

      const propfind = await fetch(url!, { method: "PROPFIND", headers: { depth: "1" } });
      expect(propfind.status).toBe(207);
      expect(await propfind.text()).toContain("multistatus");

      cli.child.kill("SIGTERM");
      expect(await cli.finished()).toEqual({ code: 0, signal: null });

      // One log line per request.
      const requests = cli.logs.filter((l) => l.msg === "request");
      expect(requests.map((l) => [l.method, l.path, l.status])).toEqual([
        ["OPTIONS", "/", 200],
        ["PROPFIND", "/", 207],
      ]);
      // The banner shows the demo password once; the logs never do, nor any token.
      expect(cli.output.split(password!).length - 1).toBe(1);
      const logText = cli.output
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .join("\n");
      expect(logText).not.toContain(password);
      expect(logText).not.toMatch(/bearer/i);
      expect(logText).not.toContain(api.token);
      expect(logText).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/); // no JWT of any kind
    } finally {
      cli.kill();
    }
  });

  it("holds sample files to open and play, prints mount commands, and its upstream answers", async () => {
    const exec = promisify(execFile);
    const cli = new Cli(["--port", "0"]);
    try {
      const [, url] = await cli.waitFor(/Mount (http:\/\/\S+)/);
      const [, upstream] = await cli.waitFor(
        /Demo Cloudreve account: \S+ \/ \S+ at (http:\/\/\S+)/,
      );

      // Ready to paste: each names the gateway's URL.
      for (const command of [
        `Connect to Server (Cmd-K), then: ${url}`,
        `net use Z: ${url}`,
        `rclone lsd ':webdav,url="${url}":'`,
        `printf 'buf_size 64\\n' > davfs2.conf`,
        `mount -t davfs -o conf="$PWD/davfs2.conf" ${url} /mnt`,
      ]) {
        expect(cli.stdout).toContain(command);
      }
      // The rclone one works as printed.
      requireTool("rclone", "rclone");
      const rcloneLine = /rclone lsd .*:'/.exec(cli.stdout)![0];
      const { stdout: listed } = await exec("sh", ["-c", rcloneLine], {
        env: { ...process.env, RCLONE_CONFIG: "/dev/null" },
      });
      expect(
        listed
          .trim()
          .split("\n")
          .map((l) => l.split(/\s+/).at(-1)),
      ).toEqual(["Music", "Pictures", "Videos"]);

      // The printed upstream address says what it is, rather than a 404.
      const page = await fetch(upstream!);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("/api/v4");

      const listing = async (path: string) => {
        const r = await fetch(new URL(path, url), { method: "PROPFIND", headers: { depth: "1" } });
        expect(r.status).toBe(207);
        return hrefs(await r.text());
      };
      expect(await listing("/")).toEqual(
        expect.arrayContaining(["/README.txt", "/Music/", "/Pictures/", "/Videos/"]),
      );
      const video = "/Videos/Test%20pattern.mp4";
      const tone = "/Music/A440%20tone.wav";
      const picture = "/Pictures/Colour%20bars.png";
      expect(await listing("/Videos/")).toContain(video);
      expect(await listing("/Music/")).toContain(tone);
      expect(await listing("/Pictures/")).toContain(picture);

      const readme = await fetch(new URL("/README.txt", url));
      expect(readme.status).toBe(200);
      expect(await readme.text()).toContain("demo mode");
      const png = Buffer.from(await (await fetch(new URL(picture, url))).arrayBuffer());
      expect(png.subarray(0, 8).toString("hex")).toBe("89504e470d0a1a0a");

      // Players open the media over HTTP, as from the mounted drive.
      const ffprobe = requireTool("ffprobe", "ffmpeg");
      const streams = async (path: string) => {
        const { stdout } = await exec(ffprobe, [
          ...["-v", "error", "-show_entries", "stream=codec_type,codec_name", "-of", "json"],
          new URL(path, url).href,
        ]);
        const { streams } = JSON.parse(stdout) as { streams: { codec_type: string }[] };
        return streams.map((s) => s.codec_type).sort();
      };
      expect(await streams(video)).toEqual(["audio", "video"]);
      expect(await streams(tone)).toEqual(["audio"]);
    } finally {
      cli.kill();
    }
  });
});

describe("against a separate upstream", () => {
  let emu: RunningEmulator;
  let api: Api;
  let stateDir: string;
  const USER = "alice";
  const USER_PASSWORD = "alice-gateway-secret";
  let usersJson: string;
  const auth = `Basic ${Buffer.from(`${USER}:${USER_PASSWORD}`).toString("base64")}`;

  beforeAll(async () => {
    // Small chunks, so that an upload is several chunk calls while it is being fed.
    emu = await startEmulator({ email: EMAIL, password: PASSWORD, chunkSize: 64 * 1024 });
    api = new Api(emu.url);
    await api.login();
    stateDir = await mkdtemp(join(tmpdir(), "cloudreve-dav-cli-state-"));
    usersJson = JSON.stringify([{ name: USER, passwordHash: await hashPassword(USER_PASSWORD) }]);
  });
  afterAll(async () => {
    await emu?.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  interface Listed {
    name: string;
    size: number;
    metadata: Record<string, string> | null;
  }
  async function listRoot(): Promise<Listed[]> {
    const r = await api.call<{ files: Listed[] }>("GET", "/file", {
      query: { uri: "cloudreve://my/", page_size: 100 },
    });
    expect(r.json.code).toBe(0);
    return r.json.data!.files;
  }
  const placeholders = async () =>
    (await listRoot()).filter((f) => f.metadata?.["sys:upload_session_id"] !== undefined);

  /** The CLI in front of the emulator, with a gateway user; resolves once it serves. */
  async function startCli(shutdownTimeoutSeconds: number): Promise<{ cli: Cli; url: string }> {
    const cli = new Cli(
      [
        "--upstream",
        emu.url,
        "--email",
        EMAIL,
        "--password",
        PASSWORD,
        "--state-dir",
        stateDir,
        "--port",
        "0",
        "--shutdown-timeout-seconds",
        String(shutdownTimeoutSeconds),
        // Every upload by session: these tests watch the session upstream.
        "--direct-upload-max-bytes",
        "0",
        "--log-level",
        "debug",
      ],
      { CLOUDREVE_DAV_USERS: usersJson },
    );
    const [line] = await cli.waitFor(/\{[^\n]*"msg":"serving WebDAV"[^\n]*\}/);
    const url = (JSON.parse(line) as { url: string }).url;
    await cli.waitFor(/"msg":"logged in upstream"/);
    return { cli, url };
  }

  /** A PUT whose body the test feeds by hand. */
  function slowPut(url: string, headers: Record<string, string>) {
    const req: ClientRequest = request(url, {
      method: "PUT",
      headers: { authorization: auth, "x-oc-mtime": "1700000000", ...headers },
    });
    const reply = new Promise<number>((resolve, reject) => {
      req.once("response", (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode ?? 0));
      });
      req.once("error", reject);
    });
    reply.catch(() => undefined);
    return { req, reply };
  }

  /** Writes and waits until the bytes are handed to the socket. */
  const feed = (req: ClientRequest, bytes: number) =>
    new Promise<void>((resolve, reject) =>
      req.write(Buffer.alloc(bytes, 7), (err) => (err ? reject(err) : resolve())),
    );

  /** Sends SIGTERM and waits until the CLI says it is stopping. */
  async function terminate(cli: Cli): Promise<void> {
    cli.child.kill("SIGTERM");
    await cli.waitFor(/"msg":"stopping: finishing in-flight requests/);
  }

  function expectNoSecrets(cli: Cli) {
    expect(cli.output).not.toContain(PASSWORD);
    expect(cli.output).not.toContain(USER_PASSWORD);
    expect(cli.output).not.toContain(auth.slice(6));
    expect(cli.output).not.toMatch(/bearer/i);
    expect(cli.output).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  }

  it("asks for the gateway login and logs nothing secret", async () => {
    const { cli, url } = await startCli(10);
    try {
      expect((await fetch(url, { method: "PROPFIND", headers: { depth: "0" } })).status).toBe(401);
      const wrong = `Basic ${Buffer.from(`${USER}:nope`).toString("base64")}`;
      const denied = await fetch(url, {
        method: "PROPFIND",
        headers: { depth: "0", authorization: wrong },
      });
      expect(denied.status).toBe(401);
      const ok = await fetch(url, {
        method: "PROPFIND",
        headers: { depth: "1", authorization: auth },
      });
      expect(ok.status).toBe(207);
      cli.child.kill("SIGTERM");
      expect(await cli.finished()).toEqual({ code: 0, signal: null });
      expect(cli.logs.filter((l) => l.msg === "request")).toHaveLength(3);
      expectNoSecrets(cli);
      expect(cli.output).not.toContain("nope");
    } finally {
      cli.kill();
    }
  });

  it("rereads the htpasswd file on SIGHUP", async () => {
    const htpasswd = requireTool("htpasswd", "apache2-utils");
    const file = join(stateDir, "users.htpasswd");
    await promisify(execFile)(htpasswd, ["-c", "-B", "-b", file, "ann", "ann-secret"]);
    const cli = new Cli([
      ...["--upstream", emu.url, "--email", EMAIL, "--password", PASSWORD],
      ...["--state-dir", stateDir, "--port", "0", "--htpasswd", file],
    ]);
    try {
      const [line] = await cli.waitFor(/\{[^\n]*"msg":"serving WebDAV"[^\n]*\}/);
      const url = (JSON.parse(line) as { url: string }).url;
      const as = (user: string, password: string) =>
        fetch(url, {
          method: "PROPFIND",
          headers: {
            depth: "0",
            authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
          },
        }).then((r) => r.status);
      expect(await as("ann", "ann-secret")).toBe(207);
      expect(await as("ben", "ben-secret")).toBe(401);
      await promisify(execFile)(htpasswd, ["-b", "-B", file, "ben", "ben-secret"]);
      await promisify(execFile)(htpasswd, ["-D", file, "ann"]);
      cli.child.kill("SIGHUP");
      await cli.waitFor(/"msg":"reloaded the htpasswd file"/);
      expect(await as("ben", "ben-secret")).toBe(207);
      // Removed from the file: a sign-in remembered from before does not outlive it.
      expect(await as("ann", "ann-secret")).toBe(401);
      cli.child.kill("SIGTERM");
      expect(await cli.finished()).toEqual({ code: 0, signal: null });
      expect(cli.output).not.toContain("secret");
    } finally {
      cli.kill();
    }
  });

  it("--auth cloudreve starts without an account of its own; each user signs in with theirs", async () => {
    const cli = new Cli([
      ...["--upstream", emu.url, "--auth", "cloudreve", "--host", "0.0.0.0"],
      ...["--state-dir", stateDir, "--port", "0"],
    ]);
    try {
      const [line] = await cli.waitFor(/\{[^\n]*"msg":"serving WebDAV"[^\n]*\}/);
      const { url, auth: mode } = JSON.parse(line) as { url: string; auth: string };
      expect(mode).toBe("cloudreve");
      await cli.waitFor(/"msg":"upstream answers"/);
      // Listening beyond loopback without TLS: the operator is told passwords travel in clear.
      expect(cli.logs.some((l) => /Basic passwords travel in clear/.test(String(l.msg)))).toBe(
        true,
      );
      const local = url.replace("0.0.0.0", "127.0.0.1");
      const basic = (password: string) =>
        `Basic ${Buffer.from(`${EMAIL}:${password}`).toString("base64")}`;
      const propfind = (password: string) =>
        fetch(local, {
          method: "PROPFIND",
          headers: { depth: "0", authorization: basic(password) },
        }).then((r) => r.status);
      expect(await propfind("not-the-password")).toBe(401);
      expect(await propfind(PASSWORD)).toBe(207);
      cli.child.kill("SIGTERM");
      expect(await cli.finished()).toEqual({ code: 0, signal: null });
      expect(cli.output).not.toContain(PASSWORD);
      expect(cli.output).not.toContain("not-the-password");
    } finally {
      cli.kill();
    }
  });

  it("lets an in-flight upload finish after SIGTERM, refusing new connections meanwhile", async () => {
    const { cli, url } = await startCli(60);
    try {
      const size = 512 * 1024;
      // A chunked body with its size announced the way Finder does it.
      const { req, reply } = slowPut(`${url}finished.bin`, {
        "x-expected-entity-length": String(size),
      });
      await feed(req, 100 * 1024);
      await eventually(async () => (await placeholders()).length > 0, "the upload session");

      await terminate(cli);
      await expect(fetch(url, { method: "OPTIONS" })).rejects.toThrow();

      for (let sent = 100 * 1024; sent < size; sent += 100 * 1024) {
        await feed(req, Math.min(100 * 1024, size - sent));
      }
      req.end();
      expect(await reply).toBe(201);
      expect(await cli.finished()).toEqual({ code: 0, signal: null });

      const file = (await listRoot()).find((f) => f.name === "finished.bin");
      expect(file?.size).toBe(size);
      expect(await placeholders()).toEqual([]);
      expectNoSecrets(cli);
    } finally {
      cli.kill();
    }
  });

  it("cancels the upload session of a body the client aborts after SIGTERM", async () => {
    const { cli, url } = await startCli(60);
    try {
      const { req, reply } = slowPut(`${url}aborted.bin`, { "content-length": String(1 << 20) });
      await feed(req, 200 * 1024);
      await eventually(async () => (await placeholders()).length > 0, "the upload session");

      await terminate(cli);
      req.destroy();
      await expect(reply).rejects.toThrow();
      expect(await cli.finished()).toEqual({ code: 0, signal: null });

      expect(await placeholders()).toEqual([]);
      expect((await listRoot()).map((f) => f.name)).not.toContain("aborted.bin");
    } finally {
      cli.kill();
    }
  });

  it("cuts an upload still running at the end of the drain and cancels its session", async () => {
    const { cli, url } = await startCli(1);
    try {
      const { req, reply } = slowPut(`${url}stalled.bin`, {
        "x-expected-entity-length": String(1 << 20),
      });
      await feed(req, 200 * 1024);
      await eventually(async () => (await placeholders()).length > 0, "the upload session");

      await terminate(cli);
      // The body never completes: the gateway gives up after the drain, not the client.
      await expect(reply).rejects.toThrow();
      expect(await cli.finished()).toEqual({ code: 0, signal: null });
      expect(cli.output).toContain("in-flight requests did not finish in time");

      expect(await placeholders()).toEqual([]);
      expect((await listRoot()).map((f) => f.name)).not.toContain("stalled.bin");
      expectNoSecrets(cli);
    } finally {
      cli.kill();
    }
  });
});
