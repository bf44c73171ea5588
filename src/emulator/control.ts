import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { writeFile } from "node:fs/promises";
import type { Auth } from "./auth.js";
import { newNode, type FileNode } from "./model.js";
import type { EmulatorState } from "./state.js";
import { parseUri } from "./uri.js";

/** Calls per route and body bytes, for tests and benchmarks that count upstream work. */
export class Stats {
  requests: Record<string, number> = {};
  bytesIn = 0;
  bytesOut = 0;

  count(key: string): void {
    this.requests[key] = (this.requests[key] ?? 0) + 1;
  }

  reset(): void {
    this.requests = {};
    this.bytesIn = 0;
    this.bytesOut = 0;
  }
}

const countsOf = ({ requests, bytesIn, bytesOut }: Stats) => ({ requests, bytesIn, bytesOut });

/** How a faulty request fails: an HTTP status as a proxy would answer, a reset, or silence. */
export type FaultKind = number | "reset" | "hang";

export interface FaultRule {
  route?: string;
  latencyMs?: number;
  failRate?: number;
  failWith?: FaultKind;
  /**
   * With "reset" or "hang": the request is processed and this many bytes of its reply body go
   * out before the failure (0: the server acted but the client never hears of it).
   */
  afterBytes?: number;
  times?: number;
  fired: number;
}

export interface FaultDecision {
  latencyMs: number;
  fail?: FaultKind;
  afterBytes?: number;
}

/**
 * Which server a request reached: Cloudreve's API, or the storage provider's origin. A rule
 * without a route applies to every API route and never to the storage.
 */
export type Origin = "api" | "storage";

/** Injected latency and failures, per route or for all of them. */
export class Faults {
  private rules: FaultRule[] = [];

  /** Checks each rule, so a test's typo is an error and not a fault that never fires. */
  set(rules: Omit<FaultRule, "fired">[]): string | undefined {
    for (const rule of rules) {
      const kind = rule.failWith;
      const status = typeof kind === "number";
      if (kind !== undefined && !status && kind !== "reset" && kind !== "hang")
        return `failWith must be an HTTP status, "reset" or "hang"`;
      if (status && !(Number.isInteger(kind) && kind >= 400 && kind <= 599))
        return "a failWith status must be 400–599";
      if (rule.afterBytes !== undefined && (status || kind === undefined))
        return 'afterBytes needs failWith "reset" or "hang"';
    }
    this.rules = rules.map((r) => ({ ...r, fired: 0 }));
    return undefined;
  }

  /** The latency to add and the failure to produce (if any) for one request. */
  decide(key: string, origin: Origin): FaultDecision {
    const decision: FaultDecision = { latencyMs: 0 };
    for (const rule of this.rules) {
      if (rule.route === undefined ? origin !== "api" : rule.route !== key) continue;
      decision.latencyMs += rule.latencyMs ?? 0;
      if (!rule.failWith || decision.fail) continue;
      if (rule.times !== undefined && rule.fired >= rule.times) continue;
      if (Math.random() < (rule.failRate ?? 1)) {
        rule.fired++;
        decision.fail = rule.failWith;
        decision.afterBytes = rule.afterBytes;
      }
    }
    return decision;
  }
}

/**
 * Delays and fails one request as decided; true when the request is answered (or dropped) by
 * the fault, false when the handler still has to run.
 */
export async function answerFault(
  req: IncomingMessage,
  res: ServerResponse,
  fault: FaultDecision,
  baseLatencyMs = 0,
): Promise<boolean> {
  const latency = baseLatencyMs + fault.latencyMs;
  if (latency > 0) await sleep(latency);
  if (fault.fail === undefined) return false;
  if (fault.afterBytes !== undefined) {
    cutReply(res, fault.fail, fault.afterBytes);
    return false;
  }
  if (fault.fail === "reset") {
    req.socket.destroy();
    return true;
  }
  if (fault.fail === "hang") return true; // no answer, ever: the client's own timeout has to end it
  // As a proxy in front of the server answers (e.g. nginx's 413): unread body, then close.
  const text = `${fault.fail} ${STATUS_CODES[fault.fail] ?? "Error"}`;
  res
    .writeHead(fault.fail, {
      "content-type": "text/plain",
      "content-length": Buffer.byteLength(text),
      connection: "close",
    })
    .end(text);
  return true;
}

/**
 * Lets the first `bytes` of a reply's body out, then resets the connection or goes silent
 * (writes are swallowed, the socket stays open): a reply lost after the server acted on the
 * request (0 bytes), or a transfer that breaks off or stalls part-way.
 */
function cutReply(res: ServerResponse, how: "reset" | "hang" | number, bytes: number): void {
  let left = bytes;
  let cut = false;
  const write = res.write.bind(res) as (chunk: Buffer, cb: () => void) => boolean;
  const end = res.end.bind(res) as () => ServerResponse;
  const breakOff = () => {
    cut = true;
    if (how === "reset") res.socket?.destroy();
  };
  const pass = (chunk: unknown): void => {
    if (cut || chunk === undefined || chunk === null || typeof chunk === "function") return;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    if (buf.length === 0) return;
    if (left === 0) return breakOff();
    const part = buf.subarray(0, left);
    left -= part.length;
    // Broken off only once the allowed bytes are out.
    if (left === 0) write(part, breakOff);
    else write(part, () => undefined);
  };
  const callbackOf = (args: unknown[]) =>
    args.find((a) => typeof a === "function") as (() => void) | undefined;
  res.write = ((chunk: unknown, ...rest: unknown[]) => {
    pass(chunk);
    const cb = callbackOf(rest);
    if (cb) setImmediate(cb);
    return true;
  }) as ServerResponse["write"];
  res.end = ((...args: unknown[]) => {
    pass(args[0]);
    const cb = callbackOf(args);
    if (cb) setImmediate(cb);
    // A reply shorter than `bytes` got through whole.
    if (!cut) end();
    return res;
  }) as ServerResponse["end"];
}

async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

/** Byte i of seeded content is i % 251, so any range can be checked without the file. */
export function seedBytes(size: number): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = i % 251;
  return buf;
}

/** The /__emulator/ routes (see README.md). */
export async function handleControl(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  query: URLSearchParams,
  env: {
    state: EmulatorState;
    auth: Auth;
    stats: Stats;
    faults: Faults;
    /** Every storage origin's, together; undefined when every policy in use is `local`. */
    storageStats: Stats | undefined;
  },
): Promise<void> {
  const { state, stats, faults, storageStats } = env;
  const route = `${req.method} ${path}`;
  let body: Record<string, unknown>;
  try {
    body = req.method === "POST" ? await readJsonBody(req) : {};
  } catch {
    return reply(res, 400, { error: "body must be JSON" });
  }
  switch (route) {
    case "GET /__emulator/stats":
      return reply(res, 200, {
        ...countsOf(stats),
        ...(storageStats && { storage: countsOf(storageStats) }),
      });
    case "GET /__emulator/locks":
      return reply(res, 200, {
        locks: state.locks.live(),
        uploads: [...state.uploads.values()].map((u) => ({
          id: u.id,
          owner: u.user.email,
          expired: u.expiresAt <= state.clock.now(),
          placeholder: u.placeholder && !u.node.entity,
          locked: state.locks.live().some((l) => l.token === u.lockToken),
        })),
      });
    case "POST /__emulator/stats/reset":
      stats.reset();
      storageStats?.reset();
      return reply(res, 200, {});
    case "POST /__emulator/clock":
      state.clock.advance(Number(body.advanceSeconds ?? 0));
      return reply(res, 200, { now: new Date(state.clock.now()).toISOString() });
    case "POST /__emulator/faults": {
      if (!Array.isArray(body.rules)) return reply(res, 400, { error: "rules must be an array" });
      const problem = faults.set(body.rules as Omit<FaultRule, "fired">[]);
      return problem ? reply(res, 400, { error: problem }) : reply(res, 200, {});
    }
    case "GET /__emulator/captcha": {
      const ticket = query.get("ticket") ?? env.auth.newestCaptcha() ?? "";
      const answer = env.auth.captchaAnswer(ticket);
      return answer === undefined
        ? reply(res, 404, { error: "unknown ticket" })
        : reply(res, 200, { answer, ticket });
    }
    case "POST /__emulator/seed":
      return reply(res, 200, await seed(state, body));
    default:
      return reply(res, 404, { error: `unknown control route ${route}` });
  }
}

/**
 * Creates `folders` folders and `files` files of `size` bytes under `uri` in one go. The files
 * share one entity, as copies do, so 10,000 of them cost one blob.
 */
async function seed(
  state: EmulatorState,
  body: Record<string, unknown>,
): Promise<Record<string, number>> {
  const user = state.users.find((u) => u.email === body.email) ?? state.users[0]!;
  const files = Number(body.files ?? 0);
  const folders = Number(body.folders ?? 0);
  const size = Number(body.size ?? 0);
  const now = state.clock.now();
  let folder: FileNode = user.root;
  for (const name of parseUri(String(body.uri ?? "cloudreve://my")).elements) {
    folder = folder.children!.get(name) ?? newNode(state.ids, user, folder, name, 1, now);
  }
  const pad = (i: number) => String(i).padStart(5, "0");
  for (let i = 0; i < folders; i++) {
    const name = `folder-${pad(i)}`;
    if (!folder.children!.has(name)) newNode(state.ids, user, folder, name, 1, now);
  }
  if (files > 0) {
    let entity = null;
    if (size > 0) {
      const tmp = state.tmpPath();
      await writeFile(tmp, seedBytes(size));
      entity = await state.createEntity(tmp, size, user);
      entity.refs = 0;
    }
    for (let i = 0; i < files; i++) {
      const name = `file-${pad(i)}.bin`;
      if (folder.children!.has(name)) continue;
      const node = newNode(state.ids, user, folder, name, 0, now);
      if (entity) {
        entity.refs++;
        node.entity = entity;
      }
    }
  }
  return { files, folders };
}
