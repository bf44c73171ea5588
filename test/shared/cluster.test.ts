/**
 * Gateway instances sharing one Redis (`--redis`) as a cluster: litmus through a round-robin
 * front whose connections alternate between two instances, an instance that dies holding a lock,
 * and Redis going away and coming back.
 */
import { mkdtemp } from "node:fs/promises";
import { createServer, connect, type Server, type Socket } from "node:net";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaults } from "../../src/config.js";
import { startEmulator } from "../../src/emulator/index.js";
import type { RunningEmulator } from "../../src/emulator/options.js";
import { createLogger } from "../../src/log.js";
import { hashPassword } from "../../src/passwords.js";
import { startGateway, type Gateway } from "../../src/server.js";
import { expectLitmusPasses, LITMUS_TIMEOUT_MS } from "../clients/litmus.js";
import { requireTool } from "../clients/tools.js";
import { EMAIL, PASSWORD } from "../helpers/emulator.js";
import {
  hrefs,
  LOCK_EXCLUSIVE,
  propfindBody,
  raw,
  responseFor,
  type RawReply,
} from "../helpers/http-raw.js";
import { startRedis, type RedisServer } from "../helpers/redis.js";
import { until } from "../helpers/wait.js";

const ALICE = { user: "alice", password: "alice-pw" };
const BOB = { user: "bob", password: "bob-pw" };

/** A TCP front handing each new connection to the next backend in turn: A, B, A, B… */
interface RoundRobin {
  url: string;
  /** Connections handed to each backend so far, in the order of `backends`. */
  counts: number[];
  close(): Promise<void>;
}

async function roundRobin(backends: readonly string[]): Promise<RoundRobin> {
  const targets = backends.map((backend) => new URL(backend));
  const counts = targets.map(() => 0);
  const sockets = new Set<Socket>();
  let next = 0;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  const server: Server = createServer((client) => {
    const index = next;
    next = (next + 1) % targets.length;
    counts[index]!++;
    const target = targets[index]!;
    const upstream = connect(Number(target.port), target.hostname);
    track(client);
    track(upstream);
    // Either side failing or closing ends the other: the front keeps nothing of its own.
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port assigned");
  return {
    url: `http://127.0.0.1:${address.port}`,
    counts,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/**
 * Asks `probe` until `done` holds for its answer, at most `deadlineMs` (a bound on a hang,
 * never an asserted duration); returns the last answer.
 */
async function pollUntil<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  deadlineMs: number,
): Promise<T> {
  let last = await probe();
  await until(
    "the expected answer",
    async () => {
      if (done(last)) return true;
      last = await probe();
      return done(last);
    },
    deadlineMs,
  ).catch(() => undefined); // the caller's assertion on the last answer says what went wrong
  return last;
}

const tokenOf = (lock: RawReply) => /<([^>]+)>/.exec(String(lock.headers["lock-token"]))?.[1];

describe("a cluster of instances sharing Redis", () => {
  let redis: RedisServer;
  let emu: RunningEmulator;
  const running = new Set<Gateway>();
  let a: string;
  let b: string;

  const startInstance = async (): Promise<Gateway> => {
    const users = [
      { name: ALICE.user, passwordHash: await hashPassword(ALICE.password) },
      { name: BOB.user, passwordHash: await hashPassword(BOB.password) },
    ];
    const gw = await startGateway(
      {
        ...defaults(),
        upstream: emu.url,
        email: EMAIL,
        password: PASSWORD,
        stateDir: await mkdtemp(join(tmpdir(), "cloudreve-dav-cluster-")),
        port: 0,
        metricsListen: "off",
        users,
        redis: redis.url,
      },
      createLogger("silent"),
    );
    running.add(gw);
    return gw;
  };
  const urlOf = (gw: Gateway) => gw.url.replace(/\/$/, "");

  beforeAll(async () => {
    requireTool("litmus", "litmus"); // missing: a failure, never a skip
    redis = await startRedis();
    // Cloudreve's own change events arrive only after a minute here: whatever one instance
    // learns of another's writes sooner came through Redis.
    emu = await startEmulator({ email: EMAIL, password: PASSWORD, eventDebounceMs: 60_000 });
    a = urlOf(await startInstance());
    b = urlOf(await startInstance());
  }, 60_000);

  afterAll(async () => {
    await Promise.all([...running].map((gw) => gw.close()));
    await emu?.close();
    await redis?.dispose();
  });

  it(
    "litmus passes through a round-robin front over two instances",
    async () => {
      const front = await roundRobin([a, b]);
      try {
        await expectLitmusPasses(`${front.url}/`, ALICE);
        // litmus opens several connections: both instances served some of its requests.
        expect(front.counts[0], `connections to A: ${front.counts.join(", ")}`).toBeGreaterThan(0);
        expect(front.counts[1], `connections to B: ${front.counts.join(", ")}`).toBeGreaterThan(0);
      } finally {
        await front.close();
      }
    },
    LITMUS_TIMEOUT_MS + 30_000,
  );

  it("a lock taken through an instance that dies holds through B until its timeout", async () => {
    const doomed = await startInstance();
    const c = urlOf(doomed);
    expect((await raw(b, "PUT", "/held.txt", { body: "v1", auth: ALICE })).status).toBe(201);
    const lock = await raw(c, "LOCK", "/held.txt", {
      body: LOCK_EXCLUSIVE,
      auth: ALICE,
      headers: { timeout: "Second-3" },
    });
    expect(lock.status).toBe(200);
    const token = tokenOf(lock);
    expect(token).toBeDefined();

    // Killed with no chance to let go of anything.
    doomed.server.closeAllConnections();
    await doomed.close();
    running.delete(doomed);

    const discovery = await raw(b, "PROPFIND", "/held.txt", {
      body: propfindBody("<D:lockdiscovery/>"),
      auth: ALICE,
      headers: { depth: "0" },
    });
    expect(discovery.status).toBe(207);
    expect(responseFor(discovery.text, "/held.txt")).toContain(token);
    expect((await raw(b, "PUT", "/held.txt", { body: "v2", auth: ALICE })).status).toBe(423);

    // Redis drops the lock at its timeout, though nobody is left to unlock it.
    const put = await pollUntil(
      async () => (await raw(b, "PUT", "/held.txt", { body: "v2", auth: ALICE })).status,
      (status) => status !== 423,
      15_000,
    );
    expect(put).toBe(204);
    expect((await raw(b, "GET", "/held.txt", { auth: ALICE })).text).toBe("v2");
    const after = await raw(b, "PROPFIND", "/held.txt", {
      body: propfindBody("<D:lockdiscovery/>"),
      auth: ALICE,
      headers: { depth: "0" },
    });
    expect(after.status).toBe(207);
    expect(after.text).not.toContain(token);
  });

  it("without Redis, locks and writes fail closed (503) while reads and listings go on", async () => {
    expect((await raw(a, "MKCOL", "/outage/", { auth: ALICE })).status).toBe(201);
    expect((await raw(a, "PUT", "/outage/kept.txt", { body: "kept", auth: ALICE })).status).toBe(
      201,
    );
    // B reads both once, as a client that was already browsing would have.
    expect((await raw(b, "GET", "/outage/kept.txt", { auth: ALICE })).text).toBe("kept");

    await redis.stop();
    try {
      const lock = await raw(b, "LOCK", "/outage/kept.txt", { body: LOCK_EXCLUSIVE, auth: ALICE });
      expect(lock.status).toBe(503);
      const put = await raw(b, "PUT", "/outage/new.txt", { body: "new", auth: ALICE });
      expect(put.status).toBe(503);
      const overwrite = await raw(b, "PUT", "/outage/kept.txt", { body: "lost", auth: ALICE });
      expect(overwrite.status).toBe(503);

      const get = await raw(b, "GET", "/outage/kept.txt", { auth: ALICE });
      expect(get.status).toBe(200);
      expect(get.text).toBe("kept");
      const listing = await raw(b, "PROPFIND", "/outage/", {
        auth: ALICE,
        headers: { depth: "1" },
      });
      expect(listing.status).toBe(207);
      expect(hrefs(listing.text)).toEqual(["/outage/", "/outage/kept.txt"]);
      expect(listing.text).not.toContain("<D:activelock>");
    } finally {
      await redis.start();
    }

    // Each instance reconnects by itself, within seconds.
    for (const [name, url] of [
      ["A", a],
      ["B", b],
    ] as const) {
      const path = `/outage/after-${name}.txt`;
      const put = await pollUntil(
        async () => (await raw(url, "PUT", path, { body: name, auth: ALICE })).status,
        (status) => status !== 503,
        15_000,
      );
      expect(put, `PUT through ${name} after the restart`).toBe(201);
      const lock = await pollUntil(
        () => raw(url, "LOCK", path, { body: LOCK_EXCLUSIVE, auth: ALICE }),
        (reply) => reply.status !== 503,
        15_000,
      );
      expect(lock.status, `LOCK through ${name} after the restart`).toBe(200);
      const token = tokenOf(lock)!;
      // The lock is shared again: the other instance refuses a write without its token.
      const other = name === "A" ? b : a;
      const refused = await pollUntil(
        async () => (await raw(other, "PUT", path, { body: "x", auth: ALICE })).status,
        (status) => status !== 503,
        15_000,
      );
      expect(refused, `PUT without the token through the other instance`).toBe(423);
      const unlock = await raw(other, "UNLOCK", path, {
        auth: ALICE,
        headers: { "lock-token": `<${token}>` },
      });
      expect(unlock.status).toBe(204);
    }
    // The file written before the outage came through unharmed.
    expect((await raw(a, "GET", "/outage/kept.txt", { auth: ALICE })).text).toBe("kept");
  });
});
