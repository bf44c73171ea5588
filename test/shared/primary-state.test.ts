/**
 * The primary's side of `--workers` without Redis, with stand-in workers that record what they
 * are sent: a lock change is answered only once every worker holding a copy of the tables has
 * acknowledged the new one (or is gone, or was killed for not answering).
 */
import type { Worker } from "node:cluster";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { LockInfo } from "../../src/dav/locks.js";
import { createLogger } from "../../src/log.js";
import { PrimaryState } from "../../src/shared/primary-state.js";

interface Sent {
  type: string;
  id?: number;
  ack?: number;
  all?: boolean;
  tables?: Record<string, LockInfo[]>;
  error?: { name: string };
}

class StandIn {
  sent: Sent[] = [];
  connected = true;
  killedWith: string | undefined;
  readonly process = {
    pid: 4242,
    kill: (signal: string) => {
      this.killedWith = signal;
      return true;
    },
  };
  isConnected = () => this.connected;
  send = (msg: Sent) => {
    this.sent.push(msg);
    return true;
  };
  get worker() {
    return this as unknown as Worker;
  }
  /** The tables messages that ask for an acknowledgement. */
  get toAcknowledge() {
    return this.sent.filter((m) => m.type === "cdav:locks" && m.ack !== undefined);
  }
  reply(id: number) {
    return this.sent.find((m) => m.type === "cdav:lock-reply" && m.id === id);
  }
}

const LOCK = {
  root: "/a.txt",
  depth: 0,
  scope: "exclusive",
  ownerXml: "",
  timeoutSeconds: 60,
} as const;

/** `count` stand-ins, of which the first `joined` have asked for the tables. */
function setUp(count: number, joined = count) {
  const workers = Array.from({ length: count }, () => new StandIn());
  const state = new PrimaryState(() => workers.map((w) => w.worker), createLogger("silent"));
  const join = (w: StandIn) => state.handle(w.worker, { type: "cdav:locks-wanted" });
  workers.slice(0, joined).forEach(join);
  const create = (from: StandIn, id: number, root: string = LOCK.root) =>
    state.handle(from.worker, {
      type: "cdav:lock",
      id,
      account: "acct",
      method: "create",
      args: [{ ...LOCK, root }],
    });
  const ack = (w: StandIn) => {
    for (const m of w.toAcknowledge) state.handle(w.worker, { type: "cdav:locks-ack", ack: m.ack });
  };
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  return { workers, state, join, create, ack, settle };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("the primary's lock tables", () => {
  it("answers a change only after every worker with a copy has acknowledged the new table", async () => {
    const { workers, join, create, ack, settle } = setUp(3, 2);
    const [a, b, late] = workers as [StandIn, StandIn, StandIn];
    expect(a.sent).toEqual([{ type: "cdav:locks", tables: {}, all: true }]);
    create(a, 1);
    await settle();
    // Both copies are sent the table; `late` has not asked for the tables yet, so it is not.
    expect(a.toAcknowledge).toHaveLength(1);
    expect(b.toAcknowledge).toHaveLength(1);
    expect(late.sent).toEqual([]);
    expect(b.toAcknowledge[0]!.tables!.acct!.map((l) => l.root)).toEqual(["/a.txt"]);
    expect(a.reply(1)).toBeUndefined();
    ack(a);
    await settle();
    expect(a.reply(1)).toBeUndefined();
    ack(b);
    await settle();
    expect(a.reply(1)).toMatchObject({ type: "cdav:lock-reply", id: 1 });
    // A worker asking later gets every table as it now is.
    join(late);
    expect(late.sent[0]!.tables!.acct!.map((l) => l.root)).toEqual(["/a.txt"]);
  });

  it("answers a refused change at once, sending no table", async () => {
    const { workers, create, ack, settle } = setUp(2);
    const [a, b] = workers as [StandIn, StandIn];
    create(a, 1);
    await settle();
    ack(a);
    ack(b);
    await settle();
    create(b, 2);
    await settle();
    expect(b.reply(2)).toMatchObject({ error: { name: "LockConflict" } });
    expect(b.toAcknowledge).toHaveLength(1);
  });

  it("stops waiting for a worker that is gone", async () => {
    const { workers, state, create, ack, settle } = setUp(2);
    const [a, b] = workers as [StandIn, StandIn];
    create(a, 1);
    await settle();
    ack(a);
    b.connected = false;
    state.gone(b.worker);
    await settle();
    expect(a.reply(1)).toMatchObject({ id: 1 });
    // Nor sends it the next table.
    create(a, 2, "/b.txt");
    await settle();
    expect(b.toAcknowledge).toHaveLength(1);
  });

  it("kills a worker that does not acknowledge within 10 s, then answers", async () => {
    vi.useFakeTimers();
    const { workers, create, ack } = setUp(2);
    const [a, stuck] = workers as [StandIn, StandIn];
    create(a, 1);
    await vi.advanceTimersByTimeAsync(0);
    ack(a);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(a.reply(1)).toBeUndefined();
    expect(stuck.killedWith).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(stuck.killedWith).toBe("SIGKILL");
    expect(a.reply(1)).toMatchObject({ id: 1 });
  });
});
