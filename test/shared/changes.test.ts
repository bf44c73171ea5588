/**
 * Change notices between two gateway instances (a client each) on one account. Pub/sub keeps
 * the order of one channel, so a later notice arriving proves an earlier one was not sent.
 */
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { LocalChangeBus, type ChangeBus } from "../../src/shared/changes.js";
import { RedisNotices } from "../../src/shared/redis-changes.js";
import { openRedis } from "../../src/shared/redis.js";
import { startRedis, type RedisServer } from "../helpers/redis.js";
import { until } from "../helpers/wait.js";

/** What one listener heard, in order: paths, or "reset". */
function listen(bus: ChangeBus) {
  const heard: (string[] | "reset")[] = [];
  const stop = bus.subscribe({
    changed: (paths) => heard.push(paths),
    reset: () => heard.push("reset"),
  });
  return { heard, stop };
}

describe("RedisNotices", () => {
  let server: RedisServer;
  const closers: (() => unknown)[] = [];
  beforeAll(async () => {
    server = await startRedis();
  });
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });
  afterAll(() => server?.dispose());

  /** A gateway process's notices: its own publishing client and subscribed connection. */
  const gatewayProcess = async () => {
    const client = await openRedis(server.url, createLogger("silent"), { commandTimeoutMs: 300 });
    const notices = new RedisNotices(client, createLogger("silent"));
    closers.push(
      () => notices.close(),
      () => client.disconnect(),
    );
    return { notices, client };
  };
  const instance = async (account: string) => (await gatewayProcess()).notices.busOf(account);

  /** Per connection to the server, how many channels it is subscribed to (CLIENT LIST). */
  const subscriptions = async (client: Awaited<ReturnType<typeof gatewayProcess>>["client"]) => {
    const list = (await client.client("LIST")) as string;
    return list
      .trim()
      .split("\n")
      .map((line) => Number(/ sub=(\d+)/.exec(line)?.[1] ?? 0))
      .filter((sub) => sub > 0);
  };

  it("serves every account of a process over one subscribed connection", async () => {
    const [one, other] = [await gatewayProcess(), await gatewayProcess()];
    const accounts = [randomUUID(), randomUUID(), randomUUID()];
    const buses = await Promise.all(accounts.map((account) => one.notices.busOf(account)));
    const heard = buses.map(listen);
    expect(await subscriptions(one.client)).toEqual([3]);

    const senders = await Promise.all(accounts.map((account) => other.notices.busOf(account)));
    senders.forEach((bus, i) => bus.publish([`/${i}`]));
    await until("each account's notice", () => heard.every((h) => h.heard.length === 1), 5_000);
    expect(heard.map((h) => h.heard)).toEqual([[["/0"]], [["/1"]], [["/2"]]]);
    expect((await subscriptions(one.client)).sort()).toEqual([3, 3]);

    // A closed bus leaves its channel; the others stay.
    await buses[0]!.close();
    await until(
      "the channel to be left",
      async () => (await subscriptions(one.client)).sort().join() === "2,3",
      5_000,
    );
    senders[0]!.publish(["/gone"]);
    senders[1]!.publish(["/kept"]);
    await until("the open bus to hear", () => heard[1]!.heard.length === 2, 5_000);
    expect(heard[0]!.heard).toEqual([["/0"]]);
  });

  it("reaches the other instances of the account, not the sender nor other accounts", async () => {
    const account = randomUUID();
    const [a, b, other] = [
      await instance(account),
      await instance(account),
      await instance(randomUUID()),
    ];
    const [atA, atB, atOther] = [listen(a), listen(b), listen(other)];

    a.publish(["/x", "/y/z"]);
    await until("B to hear A", () => atB.heard.length === 1, 5_000);
    b.publish(["/from-b"]);
    await until("A to hear B", () => atA.heard.length === 1, 5_000);

    expect(atB.heard).toEqual([["/x", "/y/z"]]);
    expect(atA.heard).toEqual([["/from-b"]]);
    expect(atOther.heard).toEqual([]);
  });

  it("stops telling a listener once it unsubscribes", async () => {
    const account = randomUUID();
    const [a, b] = [await instance(account), await instance(account)];
    const gone = listen(b);
    const staying = listen(b);

    gone.stop();
    a.publish(["/1"]);
    await until("the remaining listener to hear", () => staying.heard.length === 1, 5_000);
    expect(gone.heard).toEqual([]);
  });

  it("after Redis restarts, tells listeners to forget everything, then hears notices again", async () => {
    const account = randomUUID();
    const [a, b] = [await instance(account), await instance(account)];
    const [atA, atB] = [listen(a), listen(b)];

    await server.stop();
    await server.start();
    await until("both to resubscribe", () => atA.heard.length + atB.heard.length === 2, 15_000);
    expect(atA.heard).toEqual(["reset"]);
    expect(atB.heard).toEqual(["reset"]);

    // The publishing client reconnects on its own schedule: publish until a notice gets through.
    await until(
      "A's notice to reach B",
      () => {
        if (atB.heard.length === 1) a.publish(["/after"]);
        return atB.heard.length > 1;
      },
      15_000,
    );
    expect(atB.heard[1]).toEqual(["/after"]);
  });
});

describe("LocalChangeBus", () => {
  it("reaches no one: one process has no other instance to tell", async () => {
    const bus = new LocalChangeBus();
    const { heard, stop } = listen(bus);
    bus.publish(["/a"]);
    stop();
    await bus.close();
    expect(heard).toEqual([]);
  });
});
