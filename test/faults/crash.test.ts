/**
 * What an interrupted upload leaves behind. A gateway killed (SIGKILL) during an overwrite
 * left Cloudreve holding the path locked for the session's 24 hours; restarted with the same
 * state dir, it cancels that session and the path takes writes and deletes again at once. A
 * client that goes away mid-PUT gets its session cancelled. The old content survives both.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { defaults } from "../../src/config.js";
import { startEmulator } from "../../src/emulator/index.js";
import { createLogger } from "../../src/log.js";
import { startGateway } from "../../src/server.js";
import type { RunningEmulator } from "../../src/emulator/options.js";
import { R, stats } from "../helpers/control.js";
import { Api, EMAIL, expectStored, PASSWORD } from "../helpers/emulator.js";
import { content, dav, expectNothingLeft, leftovers } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";
import { until } from "../helpers/wait.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHUNK = 1024 * 1024;
const SIZE = 24 * CHUNK;
/** Generous bounds on waiting for a process or a condition; never asserted as durations. */
const WAIT_MS = 20_000;

/** A body that sends `size` bytes slowly and never ends on its own: the client of a crash. */
function endless(body: Buffer): Readable {
  return Readable.from(
    (async function* () {
      for (let at = 0; at < body.length; at += 256 * 1024) {
        await sleep(10);
        yield body.subarray(at, at + 256 * 1024);
      }
    })(),
  );
}

/** The gateway as its own process (run from source), so that it can be killed outright. */
class GatewayProcess {
  readonly child: ChildProcess;
  readonly url: Promise<string>;

  constructor(upstream: string, stateDir: string) {
    this.child = spawn(
      process.execPath,
      ["--import", "tsx", "src/cli.ts", "--upstream", upstream, "--port", "0"],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          CLOUDREVE_DAV_EMAIL: EMAIL,
          CLOUDREVE_DAV_PASSWORD: PASSWORD,
          CLOUDREVE_DAV_STATE_DIR: stateDir,
          CLOUDREVE_DAV_LOG_LEVEL: "info",
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    this.url = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start line in:\n${output}`)), WAIT_MS);
      this.child.stdout!.setEncoding("utf8").on("data", (text: string) => {
        output += text;
        const m = /"url":"(http:[^"]+)"/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!.replace(/\/$/, ""));
        }
      });
      this.child.stderr!.setEncoding("utf8").on("data", (text: string) => (output += text));
    });
  }

  kill(): Promise<void> {
    return new Promise((resolve) => {
      this.child.once("exit", () => resolve());
      this.child.kill("SIGKILL");
    });
  }
}

describe("a gateway killed mid-upload", () => {
  let emu: RunningEmulator;
  let api: Api;
  let stateDir: string;
  const running: GatewayProcess[] = [];
  beforeAll(async () => {
    emu = await startEmulator({ email: EMAIL, password: PASSWORD, chunkSize: CHUNK });
    api = new Api(emu.url);
    await api.login();
    stateDir = await mkdtemp(join(tmpdir(), "cloudreve-dav-crash-"));
  });
  afterEach(async () => {
    for (const gw of running.splice(0)) {
      if (gw.child.exitCode === null && gw.child.signalCode === null) await gw.kill();
    }
  });
  afterAll(() => emu?.close());

  const MTIME = { "x-oc-mtime": "1700000000" };

  /** A gateway that stores `old` at `name`, then dies with an overwrite of it under way. */
  async function killedMidOverwrite(name: string, old: Buffer): Promise<void> {
    const first = new GatewayProcess(emu.url, stateDir);
    running.push(first);
    const url = await first.url;
    expect((await dav(`${url}/${name}`, "PUT", { body: old, headers: MTIME })).status).toBe(201);
    const before = (await stats(emu.url)).requests[R.chunk] ?? 0;
    const put = request(`${url}/${name}`, {
      method: "PUT",
      headers: { "content-length": String(SIZE), ...MTIME },
      body: endless(content(SIZE, 99)),
    }).catch(() => undefined);
    await until(
      "chunks upstream",
      async () => {
        return ((await stats(emu.url)).requests[R.chunk] ?? 0) >= before + 3;
      },
      WAIT_MS,
    );
    await first.kill();
    await put;
    // What a crash leaves: the path locked by an upload session, the old content current.
    const left = await leftovers(emu.url);
    expect(left.locks.map((l) => l.application)).toEqual(["upload"]);
    await expectStored(api, name, old);
    const journal = await readdir(join(stateDir, "uploads"), { recursive: true });
    expect(journal.some((f) => f.endsWith(".json"))).toBe(true);
  }

  async function restarted(): Promise<string> {
    const gateway = new GatewayProcess(emu.url, stateDir);
    running.push(gateway);
    return gateway.url;
  }

  it("restarted with the same state dir, frees the path at once and keeps the old content", async () => {
    await killedMidOverwrite("movie.bin", content(SIZE, 1));
    const url = await restarted();
    const next = content(SIZE, 3);
    const overwrite = await dav(`${url}/movie.bin`, "PUT", { body: next, headers: MTIME });
    expect(overwrite.status).toBe(204);
    await expectStored(api, "movie.bin", next);
    expect((await dav(`${url}/movie.bin`, "DELETE")).status).toBe(204);
    await expectNothingLeft(emu.url);
  });

  it("a leftover journaled session is cancelled at start, before anything touches its path", async () => {
    const old = content(SIZE, 4);
    await killedMidOverwrite("other.bin", old);
    await restarted();
    await until(
      "the leftover session cancelled",
      async () => {
        return (await leftovers(emu.url)).locks.length === 0;
      },
      WAIT_MS,
    );
    await expectNothingLeft(emu.url);
    await expectStored(api, "other.bin", old);
    await until(
      "the journal emptied",
      async () => {
        const journal = await readdir(join(stateDir, "uploads"), { recursive: true });
        return journal.every((f) => !f.endsWith(".json"));
      },
      WAIT_MS,
    );
  });
});

describe("a client that goes away mid-PUT", () => {
  const fx = useGateway({ chunkSize: CHUNK }, {});
  let api: Api;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });

  for (const overwrite of [true, false]) {
    it(`${overwrite ? "an overwrite" : "a new file"}: the session is cancelled, the old state kept`, async () => {
      const name = overwrite ? "kept.bin" : "never.bin";
      const old = content(3 * CHUNK, 7);
      const mtime = { "x-oc-mtime": "1700000000" };
      if (overwrite) {
        expect((await dav(`${fx.url}/${name}`, "PUT", { body: old, headers: mtime })).status).toBe(
          201,
        );
      }
      const before = (await stats(fx.emu.url)).requests[R.chunk] ?? 0;
      const abort = new AbortController();
      const put = request(`${fx.url}/${name}`, {
        method: "PUT",
        headers: { "content-length": String(SIZE), ...mtime },
        body: endless(content(SIZE, 8)),
        signal: abort.signal,
      }).catch(() => undefined);
      await until(
        "chunks upstream",
        async () => {
          return ((await stats(fx.emu.url)).requests[R.chunk] ?? 0) >= before + 2;
        },
        WAIT_MS,
      );
      abort.abort();
      await put;
      await until(
        "the session cancelled",
        async () => {
          return (await leftovers(fx.emu.url)).locks.length === 0;
        },
        WAIT_MS,
      );
      await expectNothingLeft(fx.emu.url);
      if (overwrite) await expectStored(api, name, old);
      else {
        const r = await api.call("GET", "/file/info", { query: { uri: `cloudreve://my/${name}` } });
        expect(r.json.code).toBe(40016);
      }
    });
  }
});

describe("the journal of a state dir shared with another running gateway", () => {
  it("leaves the other gateway's sessions alone and cancels only those of dead processes", async () => {
    const emu = await startEmulator({ email: EMAIL, password: PASSWORD, chunkSize: CHUNK });
    const api = new Api(emu.url);
    await api.login();
    const stateDir = await mkdtemp(join(tmpdir(), "cloudreve-dav-shared-"));
    // The journal folder of this account (server.ts: site and email, made file-name safe).
    const account = `${new URL(emu.url).host.replace(/[^A-Za-z0-9.-]/g, "_")}-${EMAIL}`;
    const journal = join(stateDir, "uploads", account);
    await mkdir(journal, { recursive: true });
    const sessions: Record<string, string> = {};
    for (const name of ["running.bin", "abandoned.bin"]) {
      const r = await api.call<{ session_id: string }>("PUT", "/file/upload", {
        json: { uri: `cloudreve://my/${name}`, size: 10 },
      });
      expect(r.json.code, r.text).toBe(0);
      sessions[name] = r.json.data!.session_id;
    }
    // A live process (this test's parent) runs the first; a finished one left the second.
    const dead = spawn(process.execPath, ["-e", ""]);
    await new Promise((resolve) => dead.once("exit", resolve));
    const records = [
      { name: "running.bin", pid: process.ppid },
      { name: "abandoned.bin", pid: dead.pid },
    ];
    for (const { name, pid } of records) {
      const record = { uri: `cloudreve://my/${name}`, sessionId: sessions[name], pid, openedAt: 0 };
      await writeFile(join(journal, `${name}.json`), JSON.stringify(record));
    }

    const gw = await startGateway(
      { ...defaults(), upstream: emu.url, email: EMAIL, password: PASSWORD, stateDir, port: 0 },
      createLogger("silent"),
    );
    try {
      await until(
        "the abandoned session cancelled",
        async () => !(await leftovers(emu.url)).locks.some((l) => l.path.endsWith("abandoned.bin")),
        WAIT_MS,
      );
      const left = await leftovers(emu.url);
      expect(left.locks.map((l) => l.path)).toEqual(["cloudreve://my/running.bin"]);
      // The running one's lock is not this gateway's to free.
      const url = gw.url.replace(/\/$/, "");
      expect((await dav(`${url}/running.bin`, "DELETE")).status).toBe(423);
    } finally {
      await gw.close();
      await emu.close();
    }
  });
});
