import { afterAll, beforeAll } from "vitest";
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
    if (!options.otpSecret && !options.captcha) await ctx.api.login();
  });
  afterAll(async () => {
    await ctx.emu?.close();
  });
  return ctx;
}
