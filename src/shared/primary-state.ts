/**
 * Shared state for `--workers N` without `--redis`: the gateway's worker processes (node:cluster)
 * share WebDAV locks and change notices through the primary process, over cluster IPC. The
 * primary holds one MemoryLockSystem per account (the lock rules stay in src/dav/lock-rules.ts)
 * and relays each worker's change notices to the other workers; a worker's lock system sends
 * each call to the primary and awaits the reply, the errors carried by class name and rebuilt
 * here so that the WebDAV layer maps them as with locks in its own process.
 */
import type { Worker } from "node:cluster";
import {
  LockConflict,
  LockForbidden,
  LockNotFound,
  LockTokenMismatch,
  MemoryLockSystem,
  type LockInfo,
  type LockSnapshot,
  type LockSystem,
} from "../dav/locks.js";
import { snapshotOf } from "../dav/lock-rules.js";
import { SharedStateUnavailable } from "../errors.js";
import type { ChangeBus, ChangeBusListener } from "./changes.js";
import type { SharedState } from "./state.js";

/** The LockSystem methods a worker asks of the primary (`snapshot` travels as `list`). */
type LockMethod =
  "create" | "refresh" | "unlock" | "get" | "holdsAny" | "list" | "canWrite" | "move" | "remove";

interface LockCall {
  type: "cdav:lock";
  id: number;
  account: string;
  method: LockMethod;
  args: unknown[];
}

interface CarriedError {
  name: string;
  message: string;
  locks?: LockInfo[];
  token?: string;
  path?: string;
}

interface LockReply {
  type: "cdav:lock-reply";
  id: number;
  result?: unknown;
  error?: CarriedError;
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
 * In the primary: answers the workers' lock calls and relays their change notices. `workers`
 * gives the live workers at the time of each notice (cluster.workers).
 */
export class PrimaryState {
  private readonly locks = new Map<string, MemoryLockSystem>();

  constructor(private readonly workers: () => Iterable<Worker | undefined>) {}

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
    }
  }

  private async answer(call: LockCall): Promise<LockReply> {
    let system = this.locks.get(call.account);
    if (!system) this.locks.set(call.account, (system = new MemoryLockSystem()));
    try {
      const method = system[call.method] as (...args: unknown[]) => Promise<unknown>;
      const result = await method.apply(system, call.args);
      return { type: "cdav:lock-reply", id: call.id, result };
    } catch (err) {
      return { type: "cdav:lock-reply", id: call.id, error: carry(err) };
    }
  }
}

/** In a worker: the SharedState whose locks and notices are the primary's. */
export class WorkerState implements SharedState {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (err: Error) => void }
  >();
  private readonly listeners = new Map<string, Set<ChangeBusListener>>();
  private readonly onMessage = (msg: unknown) => {
    if (isMessage<LockReply>(msg, "cdav:lock-reply")) {
      const waiting = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) waiting?.reject(rebuild(msg.error));
      else waiting?.resolve(msg.result);
    } else if (isMessage<ChangeNotice>(msg, "cdav:changed")) {
      for (const listener of this.listeners.get(msg.account) ?? []) listener.changed(msg.paths);
    }
  };
  private readonly onDisconnect = () => {
    for (const waiting of this.pending.values()) waiting.reject(this.unavailable());
    this.pending.clear();
  };

  constructor() {
    process.on("message", this.onMessage);
    process.on("disconnect", this.onDisconnect);
  }

  private unavailable(): SharedStateUnavailable {
    return new SharedStateUnavailable("shared state (the primary process) unavailable", {
      retryable: true,
    });
  }

  private call<T>(account: string, method: LockMethod, args: unknown[]): Promise<T> {
    if (!process.send || !process.connected) return Promise.reject(this.unavailable());
    const id = this.nextId++;
    const call: LockCall = { type: "cdav:lock", id, account, method, args };
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      process.send!(call, undefined, undefined, (err) => {
        if (!err) return;
        this.pending.delete(id);
        reject(this.unavailable());
      });
    });
  }

  locksOf(account: string): LockSystem {
    // IPC is JSON: an undefined argument would arrive as null, which an optional parameter
    // does not take. Only the last ones are optional, so they are left off instead.
    const call = <T>(method: LockMethod, ...args: unknown[]) =>
      this.call<T>(account, method, trimUndefined(args));
    return {
      create: (request) => call("create", request),
      refresh: (token, timeoutSeconds, options) => call("refresh", token, timeoutSeconds, options),
      unlock: (path, token, principal) => call("unlock", path, token, principal),
      get: async (token) => (await call<LockInfo | null>("get", token)) ?? undefined,
      holdsAny: () => call("holdsAny"),
      snapshot: async (): Promise<LockSnapshot> => snapshotOf(await call<LockInfo[]>("list")),
      canWrite: (path, tokens, options) => call("canWrite", path, tokens, options),
      move: (from, to) => call("move", from, to),
      remove: (path) => call("remove", path),
    };
  }

  async changesOf(account: string): Promise<ChangeBus> {
    const mine = new Set<ChangeBusListener>();
    return {
      publish: (paths) => {
        if (!process.send || !process.connected) return;
        const notice: ChangeNotice = { type: "cdav:changed", account, paths: [...paths] };
        process.send(notice, undefined, undefined, () => {});
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
