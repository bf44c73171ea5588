/**
 * `npm run bench -- --only soak`: many WebDAV clients at once against the gateway for a while,
 * with a share of every upstream API call failing, then every file checked byte for byte.
 *
 *   npm run bench -- --only soak [--soak-seconds 300] [--soak-clients 64] [--soak-fault-rate 0.01]
 *
 * Each client works in its own folder and keeps a model of what each of its files may hold
 * (a set of allowed contents, "no file" included): a 2xx write narrows it to the new state, a
 * failed write widens it to "before or after", a GET narrows it to what was read. Contents are
 * regenerated from a seed and a size, so no client keeps the bytes it wrote.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "undici";
import { CloudreveApi } from "../src/cloudreve/api.js";
import { FILE_TYPE_FOLDER } from "../src/cloudreve/types.js";
import {
  answers,
  freePort,
  GiB,
  MiB,
  PeakRss,
  startChild,
  writeSection,
  type Child,
} from "./lib.js";

/** The soak's flags, spread into run.ts's parseArgs options. */
export const SOAK_OPTIONS = {
  "soak-seconds": { type: "string", default: "300" },
  "soak-clients": { type: "string", default: "64" },
  "soak-fault-rate": { type: "string", default: "0.01" },
} as const;

export interface SoakSettings {
  seconds: number;
  clients: number;
  faultRate: number;
  logLevel: string;
  /** The repository root (dist/ is started from there). */
  root: string;
  /** Keep the work directory (gateway and emulator logs) instead of removing it. */
  keep: boolean;
  /** RESULTS.md, or undefined to only print. */
  resultsFile: string | undefined;
  /** The line after which RESULTS.md is kept by the other scenarios' runs. */
  keptMarker: string;
  commandLine: string;
}

/**
 * The upstream failures, each given an equal share of the fault rate, on every API route (a
 * rule without `route`). New failure kinds of the emulator go here.
 */
const FAILURE_KINDS: readonly (number | "reset")[] = [502, 503, "reset"];

const EMAIL = "soak@example.com";
const PASSWORD = "soak-password-1";
/** Small upload chunks, so that most uploads of a few MiB take several chunk calls. */
const CHUNK_SIZE = MiB;
/** A hung request counts as unexpected instead of stopping the run. */
const REQUEST_TIMEOUT_MS = 120_000;
const RSS_SAMPLE_MS = 2_000;
const TOP = "/soak/";
const ROOT_FILES = ["f0.bin", "f1.bin", "f2.bin", "f3.bin", "f4.bin", "f5.bin"];
const SUB = "sub";
const SUB_FILES = ["g0.bin", "g1.bin", "g2.bin"];
const MAX_EXAMPLES = 30;
const SECTION_BEGIN = "<!-- soak: replaced by `npm run bench -- --only soak` -->";
const SECTION_END = "<!-- soak end -->";

const log = (...parts: unknown[]) => process.stderr.write(`${parts.join(" ")}\n`);
const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "n/a";
const yes = (ok: boolean) => (ok ? "yes" : "**no**");

// ---------------------------------------------------------------------------------------------
// Contents

interface Bytes {
  seed: number;
  size: number;
}
/** What a path holds: bytes regenerated from `seed` and `size`, or null for "no file". */
type Content = Bytes | null;
/** All empty files are the same bytes, so they are one content. */
const EMPTY: Bytes = { seed: 0, size: 0 };

function contentBytes(c: Bytes): Buffer {
  const words = new Uint32Array(Math.ceil(c.size / 4));
  let x = c.seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer, 0, c.size);
}

const keyOf = (c: Content) => (c ? `${c.seed}:${c.size}` : "none");
const present = (allowed: readonly Content[]) => allowed.filter((c): c is Bytes => c !== null);
const mayBeMissing = (allowed: readonly Content[]) => allowed.includes(null);

function union(...lists: (readonly Content[])[]): Content[] {
  const out = new Map<string, Content>();
  for (const c of lists.flat()) out.set(keyOf(c), c);
  return [...out.values()];
}

/** The statuses any of the allowed states can answer. */
function statusesOf(allowed: readonly Content[], status: (c: Content) => number): Set<number> {
  return new Set(allowed.map(status));
}

/** A byte range as a client writes it, resolved against a size as range-parser does. */
type RangeSpec = { from: number; to?: number } | { suffix: number };

const rangeHeader = (r: RangeSpec) =>
  "suffix" in r ? `bytes=-${r.suffix}` : `bytes=${r.from}-${r.to ?? ""}`;

function resolveRange(r: RangeSpec, size: number): { start: number; end: number } | undefined {
  if ("suffix" in r) return { start: Math.max(0, size - r.suffix), end: size - 1 };
  if (r.from >= size) return undefined;
  return { start: r.from, end: Math.min(r.to ?? size - 1, size - 1) };
}

/** Mulberry32: each client's own reproducible choices. */
function randomSource(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// Requests and what they answered

interface Reply {
  /** 0 when no response came (connection error, timeout). */
  status: number;
  error?: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

interface Example {
  what: string;
  method: string;
  path: string;
  status: string;
  note: string;
}

/** A wrong body or listing behind an expected status: `kind` groups, `detail` explains. */
interface Problem {
  kind: string;
  detail: string;
}

/** Latencies per operation, unexpected answers by operation and status, a few examples. */
class Tally {
  readonly latencies = new Map<string, number[]>();
  /** By operation, status and problem kind. */
  readonly unexpected = new Map<string, number>();
  readonly unexpectedPerLabel = new Map<string, number>();
  readonly examples: Example[] = [];

  time(label: string, ms: number): void {
    let list = this.latencies.get(label);
    if (!list) this.latencies.set(label, (list = []));
    list.push(ms);
  }

  /** `problem` for a wrong body; without it the status itself was not allowed. */
  flag(
    label: string,
    method: string,
    path: string,
    reply: Reply,
    expected: string,
    problem?: Problem,
  ): void {
    const status = reply.status === 0 ? `no response (${reply.error})` : String(reply.status);
    const what = `${label} ${status}${problem ? `, ${problem.kind}` : ""}`;
    this.unexpected.set(what, (this.unexpected.get(what) ?? 0) + 1);
    this.unexpectedPerLabel.set(label, (this.unexpectedPerLabel.get(label) ?? 0) + 1);
    const sameKind = this.examples.filter((e) => e.what === what).length;
    if (this.examples.length < MAX_EXAMPLES && sameKind < 2) {
      const body = reply.body.subarray(0, 200).toString("utf8").replace(/\s+/g, " ").trim();
      const note = problem ? problem.detail : `expected ${expected}; body: ${body}`;
      this.examples.push({ what, method, path, status, note });
    }
  }

  get operations(): number {
    let n = 0;
    for (const list of this.latencies.values()) n += list.length;
    return n;
  }

  get unexpectedCount(): number {
    let n = 0;
    for (const count of this.unexpected.values()) n += count;
    return n;
  }

  unexpectedOf(...labels: string[]): number {
    return labels.reduce((n, label) => n + (this.unexpectedPerLabel.get(label) ?? 0), 0);
  }
}

interface Listed {
  /** Decoded, without a trailing slash. */
  path: string;
  name: string;
  folder: boolean;
  size: number | undefined;
}

/** The entries of a multistatus, the requested one included (any namespace prefix). */
function parseMultistatus(xml: string): Listed[] {
  const out: Listed[] = [];
  for (const part of xml.split(/<(?:\w+:)?response>/).slice(1)) {
    const href = /<(?:\w+:)?href>([^<]*)</.exec(part)?.[1] ?? "";
    const size = /<(?:\w+:)?getcontentlength>(\d+)</.exec(part)?.[1];
    const path = decodeURIComponent(href.replace(/^https?:\/\/[^/]+/, "")).replace(/\/+$/, "");
    out.push({
      path,
      name: path.split("/").pop() ?? "",
      folder: /<(?:\w+:)?collection\s*\/>/.test(part),
      size: size === undefined ? undefined : Number(size),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// One client

class SoakClient {
  /** Allowed contents of every file path this client uses. */
  private readonly files = new Map<string, Content[]>();
  /** Whether the subfolder exists; undefined after a failed MKCOL or DELETE of it. */
  private subExists: boolean | undefined = false;
  /** Names that should not be there, flagged once during the load (verification flags all). */
  private readonly strayNames = new Set<string>();
  /** Paths whose lock could not be released: never written again (they would answer 423). */
  private readonly stuckLocks = new Set<string>();
  private readonly random: () => number;
  private seeds = 0;
  readonly folder: string;

  constructor(
    private readonly index: number,
    private readonly base: string,
    private readonly agent: Agent,
    public tally: Tally,
  ) {
    this.random = randomSource(0x50a1c + index * 7919);
    this.folder = `${TOP}c${String(index).padStart(3, "0")}/`;
    for (const name of ROOT_FILES) this.files.set(this.folder + name, [null]);
    for (const name of SUB_FILES) this.files.set(`${this.subFolder}${name}`, [null]);
  }

  private get subFolder(): string {
    return `${this.folder}${SUB}/`;
  }

  private allowed(path: string): Content[] {
    return this.files.get(path)!;
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  /** Files whose folder is known to exist (a PUT elsewhere would be a 409 by design). */
  private targets(forWrite: boolean): string[] {
    return [...this.files.keys()].filter(
      (p) =>
        (!p.startsWith(this.subFolder) || this.subExists === true) &&
        !(forWrite && this.stuckLocks.has(p)),
    );
  }

  /** Mostly a file that may exist, so that reads, moves and deletes have something to act on. */
  private pickTarget(forWrite: boolean): string {
    const all = this.targets(forWrite);
    const existing = all.filter((p) => present(this.allowed(p)).length > 0);
    return this.pick(existing.length > 0 && this.random() < 0.8 ? existing : all);
  }

  private newContent(): Bytes {
    const r = this.random();
    // Mostly small files, some empty, a fifth over the 1 MiB chunk size.
    const size =
      r < 0.05
        ? 0
        : r < 0.6
          ? 1 + Math.floor(this.random() * 64 * 1024)
          : r < 0.8
            ? 64 * 1024 + Math.floor(this.random() * (MiB - 64 * 1024))
            : MiB + Math.floor(this.random() * 3 * MiB);
    if (size === 0) return EMPTY;
    this.seeds++;
    return { seed: (this.index + 1) * 1_000_003 + this.seeds * 7_777_777, size };
  }

  async http(
    label: string,
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body?: Buffer | Readable | string,
  ): Promise<Reply> {
    const started = performance.now();
    let reply: Reply;
    try {
      const res = await request(`${this.base}${path.slice(1)}`, {
        method: method as "GET",
        headers,
        body,
        dispatcher: this.agent,
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const chunks: Buffer[] = [];
      for await (const chunk of res.body as AsyncIterable<Buffer>) chunks.push(chunk);
      reply = { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
    } catch (err) {
      const e = err as { code?: string; name?: string; message?: string };
      const error = e.name === "TimeoutError" ? "timeout" : (e.code ?? e.message ?? String(err));
      reply = { status: 0, error, headers: {}, body: Buffer.alloc(0) };
    }
    this.tally.time(label, performance.now() - started);
    return reply;
  }

  /** True when the status is one the model allows; flags it otherwise. */
  private expect(
    label: string,
    method: string,
    path: string,
    reply: Reply,
    expected: Set<number>,
  ): boolean {
    if (expected.has(reply.status)) return true;
    this.tally.flag(label, method, path, reply, [...expected].join("/"));
    return false;
  }

  /** One operation of the mixed workload. */
  async step(): Promise<void> {
    // A failed MKCOL or DELETE of the subfolder is settled before anything else.
    if (this.subExists === undefined) return this.observeSub();
    const r = this.random();
    if (r < 0.12) return this.propfindFile(this.pickTarget(false));
    if (r < 0.22)
      return this.propfindFolder(
        this.subExists && this.random() < 0.3 ? this.subFolder : this.folder,
      );
    if (r < 0.37) {
      await this.getWhole(this.pickTarget(false));
      return;
    }
    if (r < 0.47) return this.getRange(this.pickTarget(false));
    if (r < 0.67) return this.put(this.pick(this.targets(true)));
    if (r < 0.74) return this.moveOrCopy("MOVE");
    if (r < 0.81) return this.moveOrCopy("COPY");
    if (r < 0.87) return this.deleteFile(this.pickTarget(true));
    if (r < 0.93) return this.lockedPut(this.pick(this.targets(true)));
    if (r < 0.97) return this.mkcolSub();
    return this.deleteSub();
  }

  async setUp(): Promise<void> {
    const reply = await this.http("MKCOL", "MKCOL", this.folder);
    if (reply.status !== 201) throw new Error(`MKCOL ${this.folder}: ${reply.status}`);
  }

  private async observeSub(): Promise<void> {
    const reply = await this.http("PROPFIND D0", "PROPFIND", this.subFolder, { depth: "0" });
    if (!this.expect("PROPFIND D0", "PROPFIND", this.subFolder, reply, new Set([207, 404]))) return;
    this.subExists = reply.status === 207;
    if (!this.subExists)
      for (const name of SUB_FILES) this.files.set(this.subFolder + name, [null]);
  }

  private async propfindFile(path: string): Promise<void> {
    const allowed = this.allowed(path);
    const reply = await this.http("PROPFIND D0", "PROPFIND", path, { depth: "0" });
    const expected = statusesOf(allowed, (c) => (c ? 207 : 404));
    if (!this.expect("PROPFIND D0", "PROPFIND", path, reply, expected) || reply.status !== 207)
      return;
    const size = parseMultistatus(reply.body.toString("utf8"))[0]?.size;
    const sizes = present(allowed).map((c) => c.size);
    if (size === undefined || !sizes.includes(size)) {
      this.tally.flag("PROPFIND D0", "PROPFIND", path, reply, "207", {
        kind: "wrong size",
        detail: `getcontentlength ${size}, allowed ${sizes.join(" or ")}`,
      });
    }
  }

  /** A Depth 1 listing must show every file that surely exists and nothing that cannot. */
  async propfindFolder(folder: string, label = "PROPFIND D1"): Promise<void> {
    const reply = await this.http(label, "PROPFIND", folder, { depth: "1" });
    if (!this.expect(label, "PROPFIND", folder, reply, new Set([207]))) return;
    const own = folder.replace(/\/$/, "");
    const listed = parseMultistatus(reply.body.toString("utf8")).filter((e) => e.path !== own);
    const children = new Map<string, Content[]>();
    for (const [path, allowed] of this.files) {
      const rest = path.slice(folder.length);
      if (path.startsWith(folder) && !rest.includes("/")) children.set(rest, allowed);
    }
    const problems: Problem[] = [];
    for (const entry of listed) {
      if (folder === this.folder && entry.name === SUB && entry.folder) {
        if (this.subExists === false) problems.push({ kind: "unexpected name", detail: SUB });
        continue;
      }
      const allowed = present(children.get(entry.name) ?? []);
      if (allowed.length === 0) {
        const stray = `${folder}${entry.name}`;
        if (label === "PROPFIND D1" && this.strayNames.has(stray)) continue;
        this.strayNames.add(stray);
        problems.push({ kind: "unexpected name", detail: entry.name });
      } else if (!allowed.some((c) => c.size === entry.size)) {
        const sizes = allowed.map((c) => c.size).join(" or ");
        const detail = `${entry.name}: getcontentlength ${entry.size}, allowed ${sizes}`;
        problems.push({ kind: "wrong size", detail });
      }
    }
    const names = new Set(listed.map((e) => e.name));
    for (const [name, allowed] of children) {
      if (!mayBeMissing(allowed) && !names.has(name))
        problems.push({ kind: "missing name", detail: name });
    }
    if (folder === this.folder && this.subExists === true && !names.has(SUB))
      problems.push({ kind: "missing name", detail: SUB });
    for (const problem of problems)
      this.tally.flag(label, "PROPFIND", folder, reply, "207", problem);
  }

  /** GET of a whole file; true when what came back is one of the allowed states. */
  async getWhole(path: string, label = "GET"): Promise<boolean> {
    const allowed = this.allowed(path);
    const reply = await this.http(label, "GET", path);
    const expected = statusesOf(allowed, (c) => (c ? 200 : 404));
    if (!this.expect(label, "GET", path, reply, expected)) return false;
    if (reply.status === 404) {
      this.files.set(path, [null]);
      return true;
    }
    const matching = present(allowed).filter(
      (c) => c.size === reply.body.length && contentBytes(c).equals(reply.body),
    );
    if (matching.length === 0) {
      const sizes = present(allowed).map((c) => c.size);
      this.tally.flag(label, "GET", path, reply, "200", {
        kind: "wrong content",
        detail: `${reply.body.length} bytes, none of the allowed contents (sizes ${sizes.join(" or ")})`,
      });
      return false;
    }
    this.files.set(path, matching);
    return true;
  }

  private async getRange(path: string): Promise<void> {
    const allowed = this.allowed(path);
    const size = this.pick(allowed)?.size ?? 1000;
    const r = this.random();
    const spec: RangeSpec =
      r < 0.1
        ? { from: size + 1 + Math.floor(this.random() * 100) }
        : r < 0.3
          ? { suffix: 1 + Math.floor(this.random() * Math.max(1, size)) }
          : r < 0.5
            ? { from: Math.floor(this.random() * Math.max(1, size)) }
            : (() => {
                const from = Math.floor(this.random() * Math.max(1, size));
                return { from, to: from + Math.floor(this.random() * 256 * 1024) };
              })();
    /** What each allowed state answers: status and, for 200/206, the bytes. */
    const predict = (c: Content): { status: number; bytes?: () => Buffer } => {
      if (!c) return { status: 404 };
      // The gateway ignores a range on an empty file (RFC 9110 allows ignoring Range).
      if (c.size === 0) return { status: 200, bytes: () => Buffer.alloc(0) };
      const span = resolveRange(spec, c.size);
      if (!span) return { status: 416 };
      return { status: 206, bytes: () => contentBytes(c).subarray(span.start, span.end + 1) };
    };
    const reply = await this.http("GET range", "GET", path, { range: rangeHeader(spec) });
    const expected = statusesOf(allowed, (c) => predict(c).status);
    if (!this.expect("GET range", "GET", path, reply, expected)) return;
    const matching = allowed.filter((c) => {
      const p = predict(c);
      return p.status === reply.status && (!p.bytes || p.bytes().equals(reply.body));
    });
    if (matching.length === 0) {
      this.tally.flag("GET range", "GET", path, reply, [...expected].join("/"), {
        kind: "wrong content",
        detail: `${reply.body.length} bytes for ${rangeHeader(spec)}, none of the allowed contents`,
      });
      return;
    }
    this.files.set(path, matching);
  }

  private async put(path: string, lockToken?: string): Promise<void> {
    const allowed = this.allowed(path);
    const content = this.newContent();
    const bytes = contentBytes(content);
    const chunked = lockToken === undefined && this.random() < 0.3;
    const label = lockToken ? "PUT locked" : chunked ? "PUT chunked" : "PUT";
    const headers: Record<string, string> = lockToken ? { if: `(<${lockToken}>)` } : {};
    const body = chunked ? Readable.from(slices(bytes, 64 * 1024)) : bytes;
    const reply = await this.http(label, "PUT", path, headers, body);
    this.expect(
      label,
      "PUT",
      path,
      reply,
      statusesOf(allowed, (c) => (c ? 204 : 201)),
    );
    this.files.set(path, ok(reply) ? [content] : union(allowed, [content]));
  }

  private async moveOrCopy(method: "MOVE" | "COPY"): Promise<void> {
    const writable = this.targets(true);
    if (writable.length < 2) return this.propfindFolder(this.folder);
    const from = this.pickTarget(true);
    const to = this.pick(writable.filter((p) => p !== from));
    const overwrite = this.pick([undefined, "T", "F"]);
    const label = `${method}${overwrite ? ` Overwrite ${overwrite}` : ""}`;
    const src = this.allowed(from);
    const dst = this.allowed(to);
    const expected = new Set<number>();
    for (const s of src) {
      if (!s) expected.add(404);
      else for (const d of dst) expected.add(d ? (overwrite === "F" ? 412 : 204) : 201);
    }
    const headers: Record<string, string> = { destination: `${this.base}${to.slice(1)}` };
    if (overwrite) headers.overwrite = overwrite;
    const reply = await this.http(label, method, from, headers);
    const wanted = this.expect(label, method, from, reply, expected);
    const moved = present(src);
    if (ok(reply) && moved.length > 0) {
      this.files.set(to, moved);
      this.files.set(from, method === "MOVE" ? [null] : moved);
    } else if (wanted && reply.status === 404) {
      this.files.set(from, [null]);
    } else if (wanted && reply.status === 412) {
      this.files.set(to, present(dst));
      this.files.set(from, moved);
    } else {
      this.files.set(to, union(dst, moved));
      if (method === "MOVE") this.files.set(from, union(src, [null]));
    }
  }

  private async deleteFile(path: string): Promise<void> {
    const allowed = this.allowed(path);
    const reply = await this.http("DELETE", "DELETE", path);
    const wanted = this.expect(
      "DELETE",
      "DELETE",
      path,
      reply,
      statusesOf(allowed, (c) => (c ? 204 : 404)),
    );
    this.files.set(
      path,
      ok(reply) || (wanted && reply.status === 404) ? [null] : union(allowed, [null]),
    );
  }

  /** LOCK (creating an empty file when there is none), PUT with the token in If, UNLOCK. */
  private async lockedPut(path: string): Promise<void> {
    const allowed = this.allowed(path);
    const lockBody =
      '<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:">' +
      "<D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>" +
      "<D:owner>soak</D:owner></D:lockinfo>";
    const headers = { "content-type": "application/xml", timeout: "Second-120", depth: "0" };
    const reply = await this.http("LOCK", "LOCK", path, headers, lockBody);
    const expected = statusesOf(allowed, (c) => (c ? 200 : 201));
    const wanted = this.expect("LOCK", "LOCK", path, reply, expected);
    if (!ok(reply)) {
      // A LOCK that failed on the way may have created the empty file.
      if (mayBeMissing(allowed)) this.files.set(path, union(allowed, [EMPTY]));
      return;
    }
    if (wanted && reply.status === 201) this.files.set(path, [EMPTY]);
    else if (wanted) this.files.set(path, present(allowed));
    else this.files.set(path, union(allowed, [EMPTY]));
    const token = /<([^>]+)>/.exec(String(reply.headers["lock-token"] ?? ""))?.[1];
    if (!token) {
      this.tally.flag("LOCK", "LOCK", path, reply, String(reply.status), {
        kind: "no Lock-Token",
        detail: "a 2xx LOCK without a Lock-Token header",
      });
      return;
    }
    await this.put(path, token);
    // The lock lives in the gateway alone, so an UNLOCK should not fail; if it does, a few
    // tries, then the path is left alone rather than collecting 423s until the lock expires.
    for (let attempt = 0; attempt < 3; attempt++) {
      const unlock = await this.http("UNLOCK", "UNLOCK", path, { "lock-token": `<${token}>` });
      if (this.expect("UNLOCK", "UNLOCK", path, unlock, new Set([204]))) return;
    }
    this.stuckLocks.add(path);
  }

  private async mkcolSub(): Promise<void> {
    const reply = await this.http("MKCOL", "MKCOL", this.subFolder);
    const expected = new Set([this.subExists ? 405 : 201]);
    const wanted = this.expect("MKCOL", "MKCOL", this.subFolder, reply, expected);
    this.subExists = ok(reply) || (wanted && reply.status === 405) ? true : undefined;
  }

  private async deleteSub(): Promise<void> {
    if (!this.subExists || SUB_FILES.some((n) => this.stuckLocks.has(this.subFolder + n)))
      return this.mkcolSub();
    const reply = await this.http("DELETE folder", "DELETE", this.subFolder);
    this.expect("DELETE folder", "DELETE", this.subFolder, reply, new Set([204]));
    this.subExists = ok(reply) ? false : undefined;
    for (const name of SUB_FILES) {
      const path = this.subFolder + name;
      this.files.set(path, ok(reply) ? [null] : union(this.allowed(path), [null]));
    }
  }

  /** With faults cleared: both listings, then every file that may exist, byte for byte. */
  async verify(): Promise<{ files: number; verified: number }> {
    if (this.subExists === undefined) await this.observeSub();
    await this.propfindFolder(this.folder, "verify PROPFIND D1");
    if (this.subExists) await this.propfindFolder(this.subFolder, "verify PROPFIND D1");
    let files = 0;
    let verified = 0;
    for (const [path, allowed] of this.files) {
      if (present(allowed).length === 0) continue;
      if (path.startsWith(this.subFolder) && !this.subExists) continue;
      files++;
      if (await this.getWhole(path, "verify GET")) verified++;
    }
    return { files, verified };
  }
}

const ok = (reply: Reply) => reply.status >= 200 && reply.status < 300;

function* slices(bytes: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

// ---------------------------------------------------------------------------------------------
// The run

async function emulatorControl(url: string, path: string, body: unknown): Promise<void> {
  const res = await request(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${path}: ${res.statusCode} ${text}`);
}

/** Upstream files under the soak folder that still carry an upload placeholder. */
async function countPlaceholders(
  api: CloudreveApi,
): Promise<{ files: number; placeholders: number }> {
  let files = 0;
  let placeholders = 0;
  const folders = [`cloudreve://my${TOP.replace(/\/$/, "")}`];
  for (let uri = folders.pop(); uri !== undefined; uri = folders.pop()) {
    for await (const page of api.list(uri)) {
      for (const file of page.files) {
        if (file.type === FILE_TYPE_FOLDER) {
          folders.push(`${uri}/${encodeURIComponent(file.name)}`);
          continue;
        }
        files++;
        if (file.metadata?.["sys:upload_session_id"] !== undefined) placeholders++;
      }
    }
  }
  return { files, placeholders };
}

/** VmRSS every few seconds, tagged with the phase it was taken in. */
class RssSampler {
  readonly samples: { phase: string; mb: number }[] = [];
  phase = "idle before";
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly rss: PeakRss) {}

  async sample(): Promise<void> {
    const mb = await this.rss.currentMB().catch(() => NaN);
    if (Number.isFinite(mb)) this.samples.push({ phase: this.phase, mb });
  }

  start(): void {
    this.timer = setInterval(() => void this.sample(), RSS_SAMPLE_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  of(phase: string): number[] {
    return this.samples.filter((s) => s.phase === phase).map((s) => s.mb);
  }
}

const percentile = (sorted: readonly number[], p: number) =>
  sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
const mean = (values: readonly number[]) =>
  values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;

export async function runSoak(settings: SoakSettings): Promise<void> {
  const started = Date.now();
  const dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-soak-"));
  log(`soak: work directory ${dir}`);
  const children: Child[] = [];
  const agent = new Agent({ keepAliveTimeout: 30_000 });
  let api: CloudreveApi | undefined;
  try {
    const emuPort = await freePort();
    const emuUrl = `http://127.0.0.1:${emuPort}`;
    children.push(
      await startChild(
        "emulator",
        process.execPath,
        [
          join(settings.root, "dist/emulator/cli.js"),
          ...["--port", String(emuPort), "--email", EMAIL, "--password", PASSWORD],
          ...["--chunk-size", String(CHUNK_SIZE), "--capacity", String(1024 * GiB)],
        ],
        join(dir, "emulator.log"),
        () => answers(`${emuUrl}/__emulator/stats`),
      ),
    );
    const gwPort = await freePort();
    const gwUrl = `http://127.0.0.1:${gwPort}/`;
    const gateway = await startChild(
      "gateway",
      process.execPath,
      [
        join(settings.root, "dist/cli.js"),
        ...["--upstream", emuUrl, "--email", EMAIL, "--password", PASSWORD],
        ...["--port", String(gwPort), "--state-dir", join(dir, "state")],
        ...["--log-level", settings.logLevel],
      ],
      join(dir, "gateway.log"),
      () => answers(gwUrl),
    );
    children.push(gateway);
    api = new CloudreveApi({
      baseUrl: emuUrl,
      email: EMAIL,
      password: PASSWORD,
      stateFile: join(dir, "bench-client-state.json"),
    });

    const workload = new Tally();
    const clients = Array.from(
      { length: settings.clients },
      (_, i) => new SoakClient(i, gwUrl, agent, workload),
    );
    // Folders are made before the faults start: the soak is about the workload, not set-up.
    const top = await clients[0]!.http("MKCOL", "MKCOL", TOP);
    if (top.status !== 201) throw new Error(`MKCOL ${TOP}: ${top.status}`);
    for (const client of clients) await client.setUp();
    workload.latencies.clear();

    const sampler = new RssSampler(new PeakRss(gateway.pid));
    await sampler.sample();
    sampler.start();
    const faults = FAILURE_KINDS.map((failWith) => ({
      failWith,
      failRate: settings.faultRate / FAILURE_KINDS.length,
    }));
    await emulatorControl(emuUrl, "/__emulator/faults", { rules: faults });
    log(
      `soak: ${settings.clients} clients for ${settings.seconds} s, upstream fault rate ${settings.faultRate}`,
    );
    const loadStarted = Date.now();
    const deadline = loadStarted + settings.seconds * 1000;
    sampler.phase = "load";
    const progress = setInterval(
      () =>
        log(
          `  ${fmt((Date.now() - loadStarted) / 1000)} s: ${fmt(workload.operations)} operations, ${workload.unexpectedCount} unexpected`,
        ),
      10_000,
    );
    await Promise.all(
      clients.map(async (client) => {
        while (Date.now() < deadline) await client.step();
      }),
    );
    clearInterval(progress);
    const loadSeconds = (Date.now() - loadStarted) / 1000;
    await sampler.sample();
    sampler.phase = "verify";

    await emulatorControl(emuUrl, "/__emulator/faults", { rules: [] });
    log("soak: verifying every file");
    const verification = new Tally();
    let files = 0;
    let verified = 0;
    for (const client of clients) {
      client.tally = verification;
      const r = await client.verify();
      files += r.files;
      verified += r.verified;
    }
    const upstream = await countPlaceholders(api);
    await sleep(RSS_SAMPLE_MS);
    sampler.phase = "idle after";
    await sampler.sample();
    sampler.stop();

    const load = sampler.of("load");
    const quarter = Math.max(1, Math.floor(load.length / 4));
    const rss = {
      before: sampler.of("idle before")[0] ?? NaN,
      start: mean(load.slice(0, quarter)),
      peak: Math.max(...sampler.samples.map((s) => s.mb)),
      end: mean(load.slice(-quarter)),
      after: sampler.of("idle after").at(-1) ?? NaN,
    };
    const listingProblems = verification.unexpectedOf("verify PROPFIND D1", "PROPFIND D0");
    const section = report({
      settings,
      workload,
      verification,
      loadSeconds,
      files,
      verified,
      listingProblems,
      upstream,
      rss,
      minutes: (Date.now() - started) / 60_000,
    });
    process.stdout.write(`${section}\n`);
    if (settings.resultsFile) {
      await writeSection(
        settings.resultsFile,
        settings.keptMarker,
        { begin: SECTION_BEGIN, end: SECTION_END },
        section,
      );
      log(`wrote the soak section of ${settings.resultsFile}`);
    }
  } finally {
    await api?.close().catch(() => undefined);
    await agent.close().catch(() => undefined);
    for (const child of children.reverse()) await child.stop().catch(() => undefined);
    if (settings.keep) log(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

function report(r: {
  settings: SoakSettings;
  workload: Tally;
  verification: Tally;
  loadSeconds: number;
  files: number;
  verified: number;
  listingProblems: number;
  upstream: { files: number; placeholders: number };
  rss: { before: number; start: number; peak: number; end: number; after: number };
  minutes: number;
}): string {
  const { settings, workload, verification, rss } = r;
  const ops = workload.operations;
  const unexpected = workload.unexpectedCount;
  const flat = rss.end <= rss.start * 1.2;
  const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/`/g, "'");
  const lines = [
    SECTION_BEGIN,
    "",
    "## Soak",
    "",
    `Written by \`npm run bench\` (${settings.commandLine}) on ${new Date().toISOString()}; took ${fmt(r.minutes, 1)} min. ` +
      `${settings.clients} clients, each in its own folder, for ${fmt(r.loadSeconds)} s against the gateway (\`node dist/cli.js\`, log level ${settings.logLevel}), ` +
      `upstream: the emulator with 1 MiB upload chunks and a fault rate of ${settings.faultRate} on every API route ` +
      `(${FAILURE_KINDS.join(", ")} in equal shares). Workload: PROPFIND Depth 0/1, GET whole and ranged, PUT of 0 B to 4 MiB with a length and chunked, ` +
      "MOVE and COPY with Overwrite absent/T/F, DELETE of files and a folder, MKCOL, LOCK + PUT with the token in If + UNLOCK. " +
      "Unexpected: any answer other than the one(s) the client's model of its folder allows (5xx included: the gateway should absorb upstream faults). " +
      "Verification runs with the faults cleared.",
    "",
    "| metric | value | goal | met |",
    "|---|---|---|---|",
    `| operations | ${fmt(ops)} (${fmt(ops / r.loadSeconds)}/s) | reported | — |`,
    `| unexpected answers during the load | ${fmt(unexpected)} (${fmt((100 * unexpected) / Math.max(1, ops), 2)} %) | 0 | ${yes(unexpected === 0)} |`,
    `| files verified byte for byte after the load | ${fmt(r.verified)} / ${fmt(r.files)} | all | ${yes(r.verified === r.files)} |`,
    `| listing problems after the load (names, sizes, statuses) | ${fmt(r.listingProblems)} | 0 | ${yes(r.listingProblems === 0)} |`,
    `| upload placeholders left upstream | ${fmt(r.upstream.placeholders)} (of ${fmt(r.upstream.files)} files) | 0 | ${yes(r.upstream.placeholders === 0)} |`,
    `| gateway RSS, MB: idle before / load start / peak / load end / idle after | ${fmt(rss.before)} / ${fmt(rss.start)} / ${fmt(rss.peak)} / ${fmt(rss.end)} / ${fmt(rss.after)} | flat: load end ≤ 1.2 × load start | ${yes(flat)} |`,
    "",
    "Load start and end: the mean of the samples (every 2 s) in the first and last quarter of the load.",
    "",
    "| operation | count | unexpected | p50 ms | p99 ms |",
    "|---|---|---|---|---|",
  ];
  for (const tally of [workload, verification]) {
    for (const [label, list] of [...tally.latencies].sort(([a], [b]) => a.localeCompare(b))) {
      const sorted = [...list].sort((a, b) => a - b);
      lines.push(
        `| ${label} | ${fmt(list.length)} | ${fmt(tally.unexpectedOf(label))} | ${fmt(percentile(sorted, 0.5), 1)} | ${fmt(percentile(sorted, 0.99), 1)} |`,
      );
    }
  }
  const breakdown = [...workload.unexpected, ...verification.unexpected].sort(
    (a, b) => b[1] - a[1],
  );
  if (breakdown.length > 0) {
    lines.push("", "| unexpected: operation, status, problem | count |", "|---|---|");
    for (const [what, count] of breakdown) lines.push(`| ${cell(what)} | ${fmt(count)} |`);
    lines.push("", "Examples:", "");
    for (const e of [...workload.examples, ...verification.examples]) {
      lines.push(`- ${e.what}: ${e.method} ${e.path}: ${cell(e.note)}`);
    }
  }
  lines.push("", SECTION_END);
  return lines.join("\n");
}
