/**
 * `--workers 2`: two gateway processes on one port (node:cluster), sharing locks and change
 * notices through the primary process, or through Redis. Each new connection goes to the next
 * worker in turn, so consecutive requests below alternate between them; the log's `pid` field
 * shows that both served.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator } from "../../src/emulator/index.js";
import type { RunningEmulator } from "../../src/emulator/options.js";
import { hashPassword } from "../../src/passwords.js";
import { Cli, cleanEnv } from "../helpers/cli.js";
import { EMAIL, PASSWORD } from "../helpers/emulator.js";
import { hrefs, LOCK_EXCLUSIVE, raw } from "../helpers/http-raw.js";
import { eventually } from "../helpers/wait.js";
import { freePort, startRedis, type RedisServer } from "../helpers/redis.js";

const ALICE = { user: "alice", password: "alice-pw" };
const BOB = { user: "bob", password: "bob-pw" };

/** An htpasswd SHA-1 entry (`htpasswd -s`), written without the tool. */
const sha = (password: string) => `{SHA}${createHash("sha1").update(password).digest("base64")}`;

describe.each([
  { shared: "the primary", withRedis: false },
  { shared: "Redis", withRedis: true },
])("--workers 2 sharing through $shared", ({ withRedis }) => {
  let emu: RunningEmulator;
  let redis: RedisServer | undefined;
  let home: string;
  let cli: Cli;
  let base: string;
  let htpasswd: string;

  beforeAll(async () => {
    if (withRedis) redis = await startRedis();
    // Cloudreve's own change events arrive only after a minute here: whatever one worker learns
    // sooner came from the other.
    emu = await startEmulator({ email: EMAIL, password: PASSWORD, eventDebounceMs: 60_000 });
    home = await mkdtemp(join(tmpdir(), "cloudreve-dav-workers-"));
    const users = [
      { name: ALICE.user, passwordHash: await hashPassword(ALICE.password) },
      { name: BOB.user, passwordHash: await hashPassword(BOB.password) },
    ];
    htpasswd = join(home, "users.htpasswd");
    await writeFile(htpasswd, `carl:${sha("carl-pw")}\n`);
    // Each worker listening on port 0 would get a port of its own: the test picks one.
    const port = await freePort();
    cli = new Cli(
      [
        ...["--import", "tsx", "src/cli.ts"],
        ...["--upstream", emu.url, "--email", EMAIL, "--password", PASSWORD],
        ...["--port", String(port), "--workers", "2", "--log-level", "debug"],
        ...(redis ? ["--redis", redis.url] : []),
        ...["--htpasswd", htpasswd],
      ],
      cleanEnv(home, { CLOUDREVE_DAV_USERS: JSON.stringify(users) }),
    );
    await cli.waitFor(/(?:"msg":"serving WebDAV"[^]*){2}/);
    base = `http://127.0.0.1:${port}`;
  }, 60_000);

  afterAll(async () => {
    cli?.kill();
    await emu?.close();
    await redis?.dispose();
    await rm(home, { recursive: true, force: true });
  });

  /** The request log lines, once there are at least `count` (bounded wait). */
  async function logged(count: number) {
    for (let i = 0; i < 100; i++) {
      const lines = cli.logs.filter((line) => line.msg === "request");
      if (lines.length >= count) return lines;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`fewer than ${count} request lines:\n${cli.output}`);
  }

  /** The pids of the processes that logged a served request. */
  const servers = () =>
    new Set(cli.logs.filter((line) => line.msg === "request").map((line) => line.pid));

  it("a LOCK through one worker gives 423 to PUTs through both; its token unlocks through either", async () => {
    expect((await raw(base, "PUT", "/doc.txt", { body: "v1", auth: ALICE })).status).toBe(201);
    const lock = await raw(base, "LOCK", "/doc.txt", { body: LOCK_EXCLUSIVE, auth: ALICE });
    expect(lock.status).toBe(200);
    const token = /<([^>]+)>/.exec(String(lock.headers["lock-token"]))![1]!;
    for (let i = 0; i < 4; i++) {
      expect((await raw(base, "PUT", "/doc.txt", { body: "v2", auth: ALICE })).status).toBe(423);
    }
    const ifHeader = { if: `(<${token}>)` };
    const bobs = await raw(base, "PUT", "/doc.txt", { body: "v2", auth: BOB, headers: ifHeader });
    expect(bobs.status).toBe(423); // the token is alice's
    expect(
      (
        await raw(base, "UNLOCK", "/doc.txt", {
          auth: BOB,
          headers: { "lock-token": `<${token}>` },
        })
      ).status,
    ).toBe(403);
    for (let i = 0; i < 2; i++) {
      const put = await raw(base, "PUT", "/doc.txt", {
        body: "v2",
        auth: ALICE,
        headers: ifHeader,
      });
      expect(put.status).toBe(204);
      // The primary's refusals come back as the errors they were (LockNotFound, LockTokenMismatch).
      const unknown = { "lock-token": "<opaquelocktoken:nope>" };
      expect(
        (await raw(base, "UNLOCK", "/doc.txt", { auth: ALICE, headers: unknown })).status,
      ).toBe(409);
      const elsewhere = { "lock-token": `<${token}>` };
      expect(
        (await raw(base, "UNLOCK", "/other.txt", { auth: ALICE, headers: elsewhere })).status,
      ).toBe(409);
    }
    const unlock = await raw(base, "UNLOCK", "/doc.txt", {
      auth: ALICE,
      headers: { "lock-token": `<${token}>` },
    });
    expect(unlock.status).toBe(204);
    expect((await raw(base, "PUT", "/doc.txt", { body: "v3", auth: BOB })).status).toBe(204);
    expect((await raw(base, "PUT", "/doc.txt", { body: "v3", auth: BOB })).status).toBe(204);

    await logged(14);
    const pids = servers();
    expect(pids.size).toBe(2);
    expect(pids.has(cli.child.pid)).toBe(false);
  });

  it("a lock change is in force through the other worker the moment it is answered", async () => {
    // Each request below is a new connection, so consecutive ones go to alternate workers: the
    // one answering a LOCK or UNLOCK is never the one answering the check right after it.
    expect((await raw(base, "PUT", "/race.txt", { body: "0", auth: ALICE })).status).toBe(201);
    for (let round = 1; round <= 10; round++) {
      const lock = await raw(base, "LOCK", "/race.txt", { body: LOCK_EXCLUSIVE, auth: ALICE });
      expect(lock.status).toBe(200);
      const token = /<([^>]+)>/.exec(String(lock.headers["lock-token"]))![1]!;
      expect((await raw(base, "PUT", "/race.txt", { body: "x", auth: ALICE })).status).toBe(423);
      const shown = await raw(base, "PROPFIND", "/race.txt", {
        auth: BOB,
        headers: { depth: "0" },
      });
      expect(shown.text).toContain(token);
      const unlock = await raw(base, "UNLOCK", "/race.txt", {
        auth: ALICE,
        headers: { "lock-token": `<${token}>` },
      });
      expect(unlock.status).toBe(204);
      const put = await raw(base, "PUT", "/race.txt", { body: String(round), auth: BOB });
      expect(put.status).toBe(204);
    }
    expect((await raw(base, "GET", "/race.txt", { auth: ALICE })).text).toBe("10");
    const pids = new Set((await logged(0)).slice(-50).map((line) => line.pid));
    expect(pids.size).toBe(2);
  });

  it("a file written through one worker is listed by both, though both had the folder cached", async () => {
    expect((await raw(base, "MKCOL", "/shared/", { auth: ALICE })).status).toBe(201);
    const listing = async () =>
      hrefs(
        (await raw(base, "PROPFIND", "/shared/", { auth: BOB, headers: { depth: "1" } })).text,
      ).join(" ");
    for (let i = 0; i < 2; i++) expect(await eventually(listing, "/shared/")).toBe("/shared/");
    expect((await raw(base, "PUT", "/shared/new.txt", { body: "hello", auth: ALICE })).status).toBe(
      201,
    );
    for (let i = 0; i < 4; i++) {
      expect(await eventually(listing, "/shared/ /shared/new.txt")).toBe(
        "/shared/ /shared/new.txt",
      );
    }
    for (let i = 0; i < 2; i++) {
      expect((await raw(base, "GET", "/shared/new.txt", { auth: BOB })).text).toBe("hello");
    }
  });

  it("gives each worker a Cloudreve client id of its own (one id's event stream is one queue)", async () => {
    const dir = join(home, "cloudreve-dav", "client-id");
    const files = (await readdir(dir)).sort();
    expect(files).toHaveLength(2);
    expect(files[1]).toBe(`${files[0]}.worker-2`);
    const ids = await Promise.all(files.map((f) => readFile(join(dir, f), "utf8")));
    expect(new Set(ids).size).toBe(2);
  });

  it("SIGHUP to the primary reloads every worker", async () => {
    const dana = { user: "dana", password: "dana-pw" };
    expect((await raw(base, "PROPFIND", "/", { auth: dana, headers: { depth: "0" } })).status).toBe(
      401,
    );
    await writeFile(htpasswd, `carl:${sha("carl-pw")}\ndana:${sha(dana.password)}\n`);
    cli.child.kill("SIGHUP");
    await cli.waitFor(/(?:"msg":"reloaded the htpasswd file"[^]*){2}/);
    const before = cli.logs.filter((line) => line.msg === "request").length;
    for (let i = 0; i < 2; i++) {
      const status = (await raw(base, "PROPFIND", "/", { auth: dana, headers: { depth: "0" } }))
        .status;
      expect(status).toBe(207);
    }
    // A log line comes through the pipe a moment after its reply.
    const served = await logged(before + 2);
    expect(new Set(served.slice(before).map((line) => line.pid)).size).toBe(2);
  });

  it("a worker that dies is restarted; the locks it took live on", async () => {
    const earlier = (await logged(0)).length;
    const lock = await raw(base, "LOCK", "/held.txt", { body: LOCK_EXCLUSIVE, auth: ALICE });
    expect(lock.status).toBe(201);
    const taker = (await logged(earlier + 1)).at(-1)!.pid as number;
    process.kill(taker, "SIGKILL");
    await cli.waitFor(/"msg":"a worker died: restarting it"/);
    await cli.waitFor(/(?:"msg":"serving WebDAV"[^]*){3}/);
    const before = cli.logs.filter((line) => line.msg === "request").length;
    for (let i = 0; i < 4; i++) {
      expect((await raw(base, "PUT", "/held.txt", { body: "x", auth: ALICE })).status).toBe(
        // Redis keeps the lock too; the primary keeps it whichever worker took it.
        423,
      );
    }
    const after = new Set((await logged(before + 4)).slice(before).map((line) => line.pid));
    expect(after.size).toBe(2);
    expect(after.has(taker)).toBe(false);
  });

  it("SIGTERM stops every worker and the primary exits 0", async () => {
    cli.child.kill("SIGTERM");
    expect(await cli.finished()).toEqual({ code: 0, signal: null });
    expect(cli.logs.filter((line) => line.msg === "stopped")).toHaveLength(2);
  });
});

describe("--workers 2 failing at start", () => {
  it("stops the other workers and exits with the failed one's code, not restarting it", async () => {
    const home = await mkdtemp(join(tmpdir(), "cloudreve-dav-workers-"));
    try {
      const nobody = `redis://127.0.0.1:${await freePort()}`;
      const cli = new Cli(
        [
          ...["--import", "tsx", "src/cli.ts"],
          ...["--upstream", "http://127.0.0.1:1", "--email", EMAIL, "--password", PASSWORD],
          ...["--port", String(await freePort()), "--workers", "2", "--redis", nobody],
        ],
        cleanEnv(home),
      );
      expect(await cli.finished()).toEqual({ code: 2, signal: null });
      expect(cli.stderr).toContain("redis: cannot reach Redis");
      expect(cli.logs.some((line) => line.msg === "a worker failed to start: stopping")).toBe(true);
      expect(cli.logs.some((line) => line.msg === "a worker died: restarting it")).toBe(false);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
