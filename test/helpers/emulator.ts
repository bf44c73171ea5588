import { afterAll, beforeAll, expect } from "vitest";
import { startEmulator } from "../../src/emulator/index.js";
import type { EmulatorOptions, RunningEmulator } from "../../src/emulator/options.js";

export const EMAIL = "admin@example.com";
export const PASSWORD = "cloudreve-dav";

export interface ApiReply<T = unknown> {
  status: number;
  headers: Headers;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  json: Envelope<T>;
  text: string;
}

export interface Envelope<T = unknown> {
  code: number;
  msg: string;
  data?: T;
  error?: string;
  correlation_id?: string;
  aggregated_error?: Record<string, Envelope>;
}

export interface CallOptions {
  query?: Record<string, string | number | boolean>;
  json?: unknown;
  body?: Uint8Array | string;
  headers?: Record<string, string>;
  /** Send the stored bearer token (default true when one is stored). */
  auth?: boolean;
}

/** A thin HTTP client for the emulator: the raw wire shapes, no interpretation. */
export class Api {
  token: string | undefined;
  refreshToken: string | undefined;

  constructor(readonly base: string) {}

  async call<T = unknown>(
    method: string,
    path: string,
    opts: CallOptions = {},
  ): Promise<ApiReply<T>> {
    const url = new URL(path.startsWith("/__") ? path : `/api/v4${path}`, this.base);
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { ...opts.headers };
    if ((opts.auth ?? true) && this.token) headers["authorization"] = `Bearer ${this.token}`;
    let body: RequestInit["body"];
    if (opts.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
      body = opts.body as RequestInit["body"];
    }
    const res = await fetch(url, { method, headers, body, redirect: "manual" });
    const text = await res.text();
    let json: Envelope<T>;
    try {
      json = JSON.parse(text) as Envelope<T>;
    } catch {
      json = undefined as unknown as Envelope<T>;
    }
    return { status: res.status, headers: res.headers, json, text };
  }

  async login(email = EMAIL, password = PASSWORD): Promise<void> {
    const r = await this.call<{ token: { access_token: string; refresh_token: string } }>(
      "POST",
      "/session/token",
      { json: { email, password }, auth: false },
    );
    if (r.json?.code !== 0) throw new Error(`login failed: ${r.text}`);
    this.token = r.json.data!.token.access_token;
    this.refreshToken = r.json.data!.token.refresh_token;
  }
}

/** `cloudreve://my/` URI of a slash-separated path, each segment encoded like encodeURIComponent. */
export function myUri(path = ""): string {
  const segs = path.split("/").filter(Boolean).map(encodeURIComponent);
  return `cloudreve://my/${segs.join("/")}`;
}

/** Starts an emulator for the enclosing describe block; the returned object fills in beforeAll. */
export function useEmulator(options: EmulatorOptions = {}): { emu: RunningEmulator; api: Api } {
  const ctx = {} as { emu: RunningEmulator; api: Api };
  beforeAll(async () => {
    ctx.emu = await startEmulator({ email: EMAIL, password: PASSWORD, ...options });
    ctx.api = new Api(ctx.emu.url);
    if (!options.otpSecret && !options.captcha) {
      await ctx.api.login(options.email ?? EMAIL, options.password ?? PASSWORD);
    }
  });
  afterAll(async () => {
    await ctx.emu?.close();
  });
  return ctx;
}

// ---------------------------------------------------------------------------------------------
// Shapes and small calls the emulator suites share.

/** A Cloudreve File as the tests read it (§4.4). */
export interface CrFile {
  type: number;
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
  size: number;
  metadata: Record<string, string> | null;
  path?: string;
  primary_entity: string;
  capability: string;
  owned?: boolean;
  folder_summary?: {
    size: number;
    files: number;
    folders: number;
    completed: boolean;
    calculated_at: string;
  };
  extended_info?: {
    storage_policy?: { id: string; name: string; type: string };
    storage_used: number;
    entities?: { id: string; size: number; type: number; created_at: string }[];
  };
}

/** One entry of a 40073 envelope's data (§5.11). */
export interface LockConflict {
  path: string;
  token: string;
  owner: { application: { type: string } };
  type: number;
}

/** Instant of an RFC 3339 timestamp in ms (fractional digits beyond ms dropped). */
export function ms(s: string): number {
  const t = Date.parse(s.replace(/(\.\d{3})\d+/, "$1"));
  expect(Number.isFinite(t), `timestamp ${s}`).toBe(true);
  return t;
}

/** The data of a successful reply; fails the test on any other code. */
export function ok<T>(r: ApiReply<T>): T {
  expect(r.json?.code, r.text).toBe(0);
  return r.json.data as T;
}

export function code(r: ApiReply): number | undefined {
  return r.json?.code;
}

/** Deterministic test bytes; different seeds give different content. */
export function bytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 17 + (i >> 8)) & 0xff;
  return b;
}

/** Whole-file write through `PUT /file/content`. */
export async function put(api: Api, path: string, body: string | Uint8Array): Promise<CrFile> {
  return ok(
    await api.call<CrFile>("PUT", "/file/content", {
      query: { uri: myUri(path) },
      body,
      headers: { "content-type": "application/octet-stream" },
    }),
  );
}

export function info(api: Api, path: string, query: Record<string, string | boolean> = {}) {
  return api.call<CrFile>("GET", "/file/info", { query: { uri: myUri(path), ...query } });
}

export async function used(api: Api): Promise<number> {
  return ok(await api.call<{ total: number; used: number }>("GET", "/user/capacity")).used;
}

/** Moves the emulator's clock; tokens expire by it too, so the session starts afresh. */
export async function advance(api: Api, seconds: number): Promise<void> {
  const r = await api.call("POST", "/__emulator/clock", { json: { advanceSeconds: seconds } });
  expect(r.status, r.text).toBe(200);
  await api.login();
}

/** GET /file/info of a path, upstream; undefined when it does not exist (40016). */
export async function upstreamInfo(api: Api, path: string): Promise<CrFile | undefined> {
  const r = await api.call<CrFile>("GET", "/file/info", { query: { uri: myUri(path) } });
  if (r.json?.code === 40016) return undefined;
  expect(r.json?.code, r.text).toBe(0);
  return r.json.data!;
}

/** The stored bytes, downloaded the way the web UI does: POST /file/url, then GET it. */
export async function upstreamBytes(api: Api, path: string): Promise<Buffer> {
  const r = await api.call<{ urls: { url: string }[] }>("POST", "/file/url", {
    json: { uris: [myUri(path)] },
  });
  expect(r.json?.code, r.text).toBe(0);
  const res = await fetch(r.json.data!.urls[0]!.url);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

/** The file is stored upstream, complete (no upload in progress) and byte for byte `body`. */
export async function expectStored(api: Api, path: string, body: Buffer): Promise<CrFile> {
  const info = await upstreamInfo(api, path);
  expect(info, `${path} upstream`).toBeDefined();
  expect(info!.size).toBe(body.length);
  expect(info!.metadata?.["sys:upload_session_id"]).toBeUndefined();
  if (body.length > 0) {
    const stored = await upstreamBytes(api, path);
    expect(stored.equals(body), `${path}: stored bytes differ`).toBe(true);
  }
  return info!;
}
