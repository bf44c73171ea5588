/**
 * Shared state for `--workers N` without `--redis`: the gateway's worker processes (node:cluster)
 * share WebDAV locks and change notices through the primary process, over cluster IPC.
 *
 * The primary holds one MemoryLockSystem per account (the lock rules stay in
 * src/dav/lock-rules.ts) and is the only one that changes them: a worker sends each change
 * (create, refresh, unlock, and the bookkeeping after MOVE and DELETE) and awaits the reply, its
 * errors carried by class name and rebuilt here so that the WebDAV layer maps them as with locks
 * in its own process. Every worker keeps a copy of the tables and answers the reads (every
 * PROPFIND's lock discovery, every write's lock check) from it: a round trip to the primary per
 * read cost a third of PROPFIND's throughput, profiled. The copy is exact because the primary
 * answers a change only once every worker has acknowledged the new table: a LOCK answered
 * through one worker holds for a PUT through any other. Expiry needs no message: every process
 * reads the same clock.
 */
import type { Worker } from "node:cluster";
import {
  LockConflict,
  LockForbidden,
  LockNotFound,
  LockTokenMismatch,
  MemoryLockSystem,
  type LockInfo,
  type LockSystem,
} from "../dav/locks.js";
import { goesWith, isLive, snapshotOf, writeCheck } from "../dav/lock-rules.js";
import { SharedStateUnavailable } from "../errors.js";
import type { Logger } from "../log.js";
import type { ChangeBus, ChangeBusListener } from "./changes.js";
import type { SharedState } from "./state.js";

/** The LockSystem methods that change a table: only the primary runs them. */
type LockChange = "create" | "refresh" | "unlock" | "move" | "remove";

/** Worker → primary: make a change. */
interface LockCall {
  type: "cdav:lock";
  id: number;
  account: string;
  method: LockChange;
  args: unknown[];
}

interface CarriedError {
  name: string;
  message: string;
  locks?: LockInfo[];
  token?: string;
  path?: string;
}

/** Primary → worker: the change is made and every worker has the new table. */
interface LockReply {
  type: "cdav:lock-reply";
  id: number;
  result?: unknown;
  error?: CarriedError;
}

/** Worker → primary, once at start: send me every table. */
interface TablesWanted {
  type: "cdav:locks-wanted";
}

/**
 * Primary → worker: these accounts' tables as they now are (all of them in answer to
 * TablesWanted, then one per change, to be acknowledged with `ack`).
 */
interface Tables {
  type: "cdav:locks";
  tables: Record<string, LockInfo[]>;
  all?: boolean;
  ack?: number;
}

interface TablesAck {
  type: "cdav:locks-ack";
  ack: number;
}

interface ChangeNotice {
  type: "cdav:changed";
  account: string;
  paths: string[];
}

const isMessage = <T extends { type: string }>(msg: unknown, type: T["type"]): msg is T =>
  typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === type;

function carry(err: unknown): CarriedError {
  const e = err as Error & Partial<CarriedError>;
  const carried: CarriedError = { name: e.name, message: e.message };
  if (err instanceof LockConflict) carried.locks = [...err.locks];
  if (err instanceof LockTokenMismatch) carried.path = err.path;
  if (e.token !== undefined) carried.token = e.token;
  return carried;
}

function rebuild(carried: CarriedError): Error {
  switch (carried.name) {
    case "LockConflict":
      return new LockConflict(carried.locks ?? []);
    case "LockNotFound":
      return new LockNotFound(carried.token ?? "");
    case "LockTokenMismatch":
      return new LockTokenMismatch(carried.token ?? "", carried.path ?? "");
    case "LockForbidden":
      return new LockForbidden(carried.token ?? "");
    default:
      return new Error(carried.message);
  }
}

/**
 * A worker that has not acknowledged a new table this long is stuck (a worker's event loop is
 * never busy for seconds): it is killed, and restarted with a fresh copy, rather than left
 * answering from an old one.
 */
const ACK_TIMEOUT_MS = 10_000;

/**
 * In the primary: makes the workers' lock changes, sends every worker the new tables and relays
 * change notices. `workers` gives the live workers at the time of each message (cluster.workers).
 */
export class PrimaryState {
  private readonly locks = new Map<string, MemoryLockSystem>();
  /**
   * The workers holding a copy: those that asked for the tables. One just forked has no listener
   * yet and would drop a table sent to it; it gets them all when it asks.
   */
  private readonly copies = new Set<Worker>();
  private nextAck = 1;
  /** Per table sent: the workers yet to acknowledge it. */
  private readonly awaiting = new Map<number, { workers: Set<Worker>; done: () => void }>();

  constructor(
    private readonly workers: () => Iterable<Worker | undefined>,
    private readonly log: Logger,
  ) {}

  /** For cluster.on("message"). */
  handle(from: Worker, msg: unknown): void {
    if (isMessage<ChangeNotice>(msg, "cdav:changed")) {
      for (const worker of this.workers()) {
        if (worker && worker !== from && worker.isConnected()) worker.send(msg);
      }
    } else if (isMessage<LockCall>(msg, "cdav:lock")) {
      void this.answer(msg).then((reply) => {
        if (from.isConnected()) from.send(reply);
      });
    } else if (isMessage<TablesAck>(msg, "cdav:locks-ack")) {
      this.acknowledged(from, msg.ack);
    } else if (isMessage<TablesWanted>(msg, "cdav:locks-wanted")) {
      const tables: Record<string, LockInfo[]> = {};
      for (const [account, system] of this.locks) tables[account] = system.liveLocks();
      const all: Tables = { type: "cdav:locks", tables, all: true };
      from.send(all);
      this.copies.add(from);
    }
  }

  /** For cluster's "disconnect" and "exit": a worker that is gone acknowledges nothing more. */
  gone(worker: Worker): void {
    this.copies.delete(worker);
    for (const ack of [...this.awaiting.keys()]) this.acknowledged(worker, ack);
  }

  private acknowledged(worker: Worker, ack: number): void {
    const waiting = this.awaiting.get(ack);
    if (!waiting?.workers.delete(worker) || waiting.workers.size > 0) return;
    this.awaiting.delete(ack);
    waiting.done();
  }

  private async answer(call: LockCall): Promise<LockReply> {
    let system = this.locks.get(call.account);
    if (!system) this.locks.set(call.account, (system = new MemoryLockSystem()));
    let result: unknown;
    try {
      const method = system[call.method] as (...args: unknown[]) => Promise<unknown>;
      result = await method.apply(system, call.args);
    } catch (err) {
      return { type: "cdav:lock-reply", id: call.id, error: carry(err) };
    }
    await this.share(call.account, system.liveLocks());
    return { type: "cdav:lock-reply", id: call.id, result };
  }

  /** Sends every worker the account's new table; resolves once each has it (or is gone). */
  private share(account: string, locks: LockInfo[]): Promise<void> {
    const ack = this.nextAck++;
    const workers = new Set([...this.copies].filter((worker) => worker.isConnected()));
    if (workers.size === 0) return Promise.resolve();
    const tables: Tables = { type: "cdav:locks", tables: { [account]: locks }, ack };
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const worker of this.awaiting.get(ack)?.workers ?? []) {
          this.log.error(
            { workerPid: worker.process.pid },
            "a worker did not take the new lock table in time: killing it",
          );
          worker.process.kill("SIGKILL");
          this.acknowledged(worker, ack);
        }
      }, ACK_TIMEOUT_MS);
      this.awaiting.set(ack, {
        workers,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      for (const worker of workers) worker.send(tables);
    });
  }
}

/** In a worker: the SharedState whose locks and notices are the primary's. */
export class WorkerState implements SharedState {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (err: Error) => void }
  >();
  /** This worker's copy of every account's lock table. */
  private readonly tables = new Map<string, readonly LockInfo[]>();
  private hasTables = false;
  private readonly tablesArrived: Promise<void>;
  private tablesIn!: () => void;
  private readonly listeners = new Map<string, Set<ChangeBusListener>>();
  private readonly onMessage = (msg: unknown) => {
    if (isMessage<LockReply>(msg, "cdav:lock-reply")) {
      const waiting = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) waiting?.reject(rebuild(msg.error));
      else waiting?.resolve(msg.result);
    } else if (isMessage<Tables>(msg, "cdav:locks")) {
      // Messages from the primary arrive in the order sent, so the last table is the newest.
      for (const [account, locks] of Object.entries(msg.tables)) this.tables.set(account, locks);
      if (msg.ack !== undefined) this.send<TablesAck>({ type: "cdav:locks-ack", ack: msg.ack });
      if (msg.all) {
        this.hasTables = true;
        this.tablesIn();
      }
    } else if (isMessage<ChangeNotice>(msg, "cdav:changed")) {
      for (const listener of this.listeners.get(msg.account) ?? []) listener.changed(msg.paths);
    }
  };
  private readonly onDisconnect = () => {
    for (const waiting of this.pending.values()) waiting.reject(this.unavailable());
    this.pending.clear();
  };

  constructor() {
    this.tablesArrived = new Promise((resolve) => (this.tablesIn = resolve));
    process.on("message", this.onMessage);
    process.on("disconnect", this.onDisconnect);
    this.send<TablesWanted>({ type: "cdav:locks-wanted" });
  }

  private unavailable(): SharedStateUnavailable {
    return new SharedStateUnavailable("shared state (the primary process) unavailable", {
      retryable: true,
    });
  }

  /** Sends to the primary; false when it cannot be reached. */
  private send<T>(msg: T, failed: () => void = () => {}): boolean {
    if (!process.send || !process.connected) return false;
    process.send(msg, undefined, undefined, (err) => {
      if (err) failed();
    });
    return true;
  }

  private call<T>(account: string, method: LockChange, args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const failed = () => {
        this.pending.delete(id);
        reject(this.unavailable());
      };
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      const call: LockCall = { type: "cdav:lock", id, account, method, args };
      if (!this.send(call, failed)) failed();
    });
  }

  /** The account's live locks, from this worker's copy (once it has one). */
  private async live(account: string): Promise<LockInfo[]> {
    if (!this.hasTables) await this.tablesArrived;
    const now = Date.now();
    return (this.tables.get(account) ?? []).filter((lock) => isLive(lock, now));
  }

  locksOf(account: string): LockSystem {
    // IPC is JSON: an undefined argument would arrive as null, which an optional parameter
    // does not take. Only the last ones are optional, so they are left off instead.
    const call = <T>(method: LockChange, ...args: unknown[]) =>
      this.call<T>(account, method, trimUndefined(args));
    const live = () => this.live(account);
    /** MOVE and DELETE bookkeeping asks the primary only when a lock goes with the paths. */
    const anyGoesWith = async (...paths: string[]) =>
      (await live()).some((lock) => paths.some((path) => goesWith(lock, path)));
    return {
      create: (request) => call("create", request),
      refresh: (token, timeoutSeconds, options) => call("refresh", token, timeoutSeconds, options),
      unlock: (path, token, principal) => call("unlock", path, token, principal),
      get: async (token) => (await live()).find((lock) => lock.token === token),
      holdsAny: async () => (await live()).length > 0,
      snapshot: async () => snapshotOf(await live()),
      canWrite: async (path, tokens, options) => writeCheck(await live(), path, tokens, options),
      move: async (from, to) => {
        if (await anyGoesWith(from, to)) await call("move", from, to);
      },
      remove: async (path) => {
        if (await anyGoesWith(path)) await call("remove", path);
      },
    };
  }

  async changesOf(account: string): Promise<ChangeBus> {
    const mine = new Set<ChangeBusListener>();
    return {
      publish: (paths) => {
        this.send<ChangeNotice>({ type: "cdav:changed", account, paths: [...paths] });
      },
      subscribe: (listener) => {
        let all = this.listeners.get(account);
        if (!all) this.listeners.set(account, (all = new Set()));
        all.add(listener);
        mine.add(listener);
        return () => {
          all.delete(listener);
          mine.delete(listener);
        };
      },
      close: async () => {
        for (const listener of mine) this.listeners.get(account)?.delete(listener);
        mine.clear();
      },
    };
  }

  async close(): Promise<void> {
    process.off("message", this.onMessage);
    process.off("disconnect", this.onDisconnect);
  }
}

/** Trailing undefined arguments dropped. */
function trimUndefined(args: unknown[]): unknown[] {
  const out = [...args];
  while (out.length > 0 && out[out.length - 1] === undefined) out.pop();
  return out;
}
