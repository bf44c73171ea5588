/**
 * Locks shared through Redis by two gateway instances (two clients) serving one account.
 * Expiry is Redis's own, with one-second timeouts, waited for by polling.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { within } from "../../src/accounts.js";
import {
  LockConflict,
  LockForbidden,
  LockNotFound,
  LockTokenMismatch,
  type LockRequest,
} from "../../src/dav/locks.js";
import { createLogger } from "../../src/log.js";
import { RedisLockSystem } from "../../src/shared/redis-locks.js";
import { SharedStateUnavailable } from "../../src/errors.js";
import { openRedis } from "../../src/shared/redis.js";
import { startRedis, type RedisServer } from "../helpers/redis.js";
import { until } from "../helpers/wait.js";

const OWNER = "<D:owner>test</D:owner>";
/** Only bounds a hang: a call to an unreachable Redis must settle, however long it takes. */
const SETTLE_MS = 5_000;

function request(root: string, extra: Partial<LockRequest> = {}): LockRequest {
  return { root, depth: 0, scope: "exclusive", ownerXml: OWNER, timeoutSeconds: 600, ...extra };
}

/** Two gateway instances (a client each) on one fresh account, closed after each test. */
function useInstances(server: () => RedisServer) {
  const clients: Redis[] = [];
  afterEach(() => {
    for (const client of clients.splice(0)) client.disconnect();
  });
  return async (account = randomUUID()) => {
    const open = async () => {
      const client = await openRedis(server().url, createLogger("silent"), {
        commandTimeoutMs: 300,
      });
      clients.push(client);
      return { client, locks: new RedisLockSystem(client, { account }) };
    };
    return { a: await open(), b: await open(), account };
  };
}

describe("RedisLockSystem, two instances on one account", () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(() => server?.dispose());
  const instances = useInstances(() => server);

  it("a lock taken through one instance binds the other, and no other account", async () => {
    const { a, b } = await instances();
    const lock = await a.locks.create(request("/doc", { principal: "alice" }));

    const without = await b.locks.canWrite("/doc", []);
    expect(without).toMatchObject({ allowed: false, lock: { token: lock.token } });
    expect(await b.locks.canWrite("/doc", [lock.token], { principal: "alice" })).toEqual({
      allowed: true,
    });
    expect((await b.locks.canWrite("/doc", [lock.token], { principal: "bob" })).allowed).toBe(
      false,
    );
    expect(await b.locks.get(lock.token)).toMatchObject({
      root: "/doc",
      principal: "alice",
      ownerXml: OWNER,
      timeoutSeconds: 600,
    });
    expect((await b.locks.snapshot()).covering("/doc").map((l) => l.token)).toEqual([lock.token]);
    expect(await b.locks.holdsAny()).toBe(true);

    const other = new RedisLockSystem(a.client, { account: randomUUID() });
    expect(await other.holdsAny()).toBe(false);
    expect(await other.canWrite("/doc", [])).toEqual({ allowed: true });
  });

  it("of 20 conflicting exclusive locks asked of both instances at once, exactly one is granted", async () => {
    const { a, b, account } = await instances();
    // Pairwise incompatible: each is on, above or below every other.
    const roots = ["/d", "/d/x", "/d/x/y", "/d/x/y/z"];
    const attempts = Array.from({ length: 20 }, (_, i) =>
      (i % 2 === 0 ? a : b).locks.create(request(roots[i % roots.length]!, { depth: "infinity" })),
    );
    const outcomes = await Promise.allSettled(attempts);

    const granted = outcomes.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []));
    const refused = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as unknown] : []));
    expect(granted).toHaveLength(1);
    expect(refused).toHaveLength(19);
    for (const reason of refused) {
      expect(reason).toBeInstanceOf(LockConflict);
      expect((reason as LockConflict).locks.map((l) => l.token)).toEqual([granted[0]!.token]);
    }
    expect((await a.locks.snapshot()).covering("/d/x/y/z")).toHaveLength(1);
    expect(await b.client.scard(indexOf(account))).toBe(1);
  });

  it("shared locks coexist across instances; an exclusive one is refused naming them", async () => {
    const { a, b } = await instances();
    const first = await a.locks.create(request("/s", { scope: "shared" }));
    const second = await b.locks.create(request("/s", { scope: "shared", depth: "infinity" }));

    const refusal = await a.locks.create(request("/s/below")).catch((err: unknown) => err);
    expect(refusal).toBeInstanceOf(LockConflict);
    expect((refusal as LockConflict).locks.map((l) => l.token)).toEqual([second.token]);
    const onRoot = await b.locks.create(request("/s")).catch((err: unknown) => err);
    expect((onRoot as LockConflict).locks.map((l) => l.token).sort()).toEqual(
      [first.token, second.token].sort(),
    );
  });

  it("only the lock's principal refreshes or unlocks it, through either instance", async () => {
    const { a, b, account } = await instances();
    const lock = await a.locks.create(request("/f", { principal: "alice", timeoutSeconds: 60 }));

    await expect(b.locks.refresh(lock.token, 120, { principal: "bob" })).rejects.toBeInstanceOf(
      LockForbidden,
    );
    await expect(b.locks.unlock("/f", lock.token, "bob")).rejects.toBeInstanceOf(LockForbidden);
    await expect(
      b.locks.refresh(lock.token, 120, { path: "/elsewhere", principal: "alice" }),
    ).rejects.toBeInstanceOf(LockTokenMismatch);

    const refreshed = await b.locks.refresh(lock.token, 120, { path: "/f", principal: "alice" });
    expect(refreshed.timeoutSeconds).toBe(120);
    expect((await a.locks.get(lock.token))?.timeoutSeconds).toBe(120);
    // The key's own expiry moved too: more is left than the first timeout ever gave.
    expect(await a.client.pttl(keyOf(account, lock.token))).toBeGreaterThan(60_000);

    await b.locks.unlock("/f", lock.token, "alice");
    expect(await a.locks.get(lock.token)).toBeUndefined();
    await expect(a.locks.unlock("/f", lock.token, "alice")).rejects.toBeInstanceOf(LockNotFound);
    await expect(a.locks.refresh(lock.token, 60, { principal: "alice" })).rejects.toBeInstanceOf(
      LockNotFound,
    );
  });

  it("Redis expires a lock: both instances see it go, and the next write prunes its token", async () => {
    const { a, b, account } = await instances();
    const lock = await a.locks.create(request("/e", { timeoutSeconds: 1 }));
    expect((await b.locks.canWrite("/e", [])).allowed).toBe(false);

    await until(
      "the lock to expire",
      async () => (await b.locks.get(lock.token)) === undefined,
      10_000,
    );
    expect(await a.locks.canWrite("/e", [])).toEqual({ allowed: true });
    await expect(a.locks.refresh(lock.token, 60)).rejects.toBeInstanceOf(LockNotFound);
    expect(await a.client.sismember(indexOf(account), lock.token)).toBe(1);

    const again = await b.locks.create(request("/e"));
    expect(await a.client.smembers(indexOf(account))).toEqual([again.token]);
  });

  it("a killed instance's lock binds the others until it times out", async () => {
    const { a, b } = await instances();
    const lock = await a.locks.create(request("/k", { timeoutSeconds: 1 }));
    a.client.disconnect(); // no UNLOCK will ever come from it

    expect(await b.locks.canWrite("/k", [])).toMatchObject({
      allowed: false,
      lock: { token: lock.token },
    });
    await until(
      "the lock to time out",
      async () => (await b.locks.canWrite("/k", [])).allowed,
      10_000,
    );
    expect(await b.locks.holdsAny()).toBe(false);
  });

  it("MOVE and DELETE through one instance drop the locks the other took there", async () => {
    const { a, b } = await instances();
    const onSource = await a.locks.create(request("/m/a"));
    const belowSource = await a.locks.create(request("/m/b/c", { depth: "infinity" }));
    const onTarget = await a.locks.create(request("/n"));
    const elsewhere = await a.locks.create(request("/m2"));
    const doomed = await a.locks.create(request("/gone/x"));

    await b.locks.move("/m", "/n");
    await b.locks.remove("/gone");
    for (const dropped of [onSource, belowSource, onTarget, doomed]) {
      expect(await a.locks.get(dropped.token)).toBeUndefined();
    }
    expect(await a.locks.get(elsewhere.token)).toBeDefined();
  });
});

describe("RedisLockSystem when Redis is away", () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(() => server?.dispose());
  const instances = useInstances(() => server);

  it("a paused Redis fails calls within the command timeout, and the lock it holds is there when it answers again", async () => {
    const { a, b } = await instances();
    const lock = await a.locks.create(request("/p"));
    const admin = await openRedis(server.url, createLogger("silent"));
    try {
      await admin.call("CLIENT", "PAUSE", "2000", "ALL");
      await expectUnavailable(a.locks.canWrite("/p", []));
      await until(
        "Redis to answer again",
        () =>
          b.locks.get(lock.token).then(
            () => true,
            () => false,
          ),
        10_000,
      );
    } finally {
      admin.disconnect();
    }
    expect(await b.locks.get(lock.token)).toMatchObject({ root: "/p" });
    expect((await a.locks.canWrite("/p", [])).allowed).toBe(false);
  });

  it("a stopped Redis fails every method with SharedStateUnavailable; restarted, locks work again", async () => {
    const { a, b } = await instances();
    const lock = await a.locks.create(request("/r"));
    await server.stop();

    await expectUnavailable(a.locks.create(request("/r2")));
    await expectUnavailable(a.locks.refresh(lock.token, 60));
    await expectUnavailable(a.locks.unlock("/r", lock.token));
    await expectUnavailable(a.locks.get(lock.token));
    await expectUnavailable(a.locks.holdsAny());
    await expectUnavailable(a.locks.snapshot());
    await expectUnavailable(a.locks.canWrite("/r", []));
    await expectUnavailable(a.locks.move("/r", "/r3"));
    await expectUnavailable(a.locks.remove("/r"));

    await server.start(); // empty: nothing is saved to disk
    const back = async (locks: RedisLockSystem) =>
      locks.holdsAny().then(
        () => true,
        () => false,
      );
    await until(
      "both instances to reconnect",
      async () => (await back(a.locks)) && (await back(b.locks)),
      15_000,
    );
    const after = await a.locks.create(request("/r"));
    expect((await b.locks.canWrite("/r", [])).allowed).toBe(false);
    await expect(b.locks.create(request("/r"))).rejects.toBeInstanceOf(LockConflict);
    expect(await b.locks.get(after.token)).toBeDefined();
  });
});

describe("openRedis", () => {
  it("fails with SharedStateUnavailable when nothing answers at the URL", async () => {
    const server = await startRedis();
    await server.dispose();
    await expectUnavailable(openRedis(server.url, createLogger("silent")));
  });
});

async function expectUnavailable(call: Promise<unknown>): Promise<void> {
  expect(await within(call, SETTLE_MS)).toBe(true);
  await expect(call).rejects.toBeInstanceOf(SharedStateUnavailable);
}

function keyOf(account: string, token: string): string {
  return `cdav:${encodeURIComponent(account)}:lock:${token}`;
}

function indexOf(account: string): string {
  return `cdav:${encodeURIComponent(account)}:locks`;
}
