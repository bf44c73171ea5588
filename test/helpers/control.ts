/**
 * The emulator's control routes (src/emulator/README.md): upstream call counts, faults, clock
 * and seeding, for any suite that runs against an emulator.
 */

async function control(base: string, method: string, path: string, body?: unknown) {
  const res = await fetch(new URL(path, base), {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`${method} ${path}: HTTP ${res.status}`);
  return (await res.json()) as Record<string, unknown>;
}

/** Requests by route or operation, and body bytes. */
export interface Counts {
  requests: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
}

/** Cloudreve's API counts, and the storage origin's on a site with a storage policy. */
export interface EmulatorStats extends Counts {
  storage?: Counts;
}

/** The stats of an emulator whose policy has a storage origin. */
export interface StorageSiteStats extends Counts {
  storage: Counts;
}

/** The emulator's upstream call counts since the last reset. */
export async function stats(base: string): Promise<EmulatorStats> {
  return (await control(base, "GET", "/__emulator/stats")) as unknown as EmulatorStats;
}

/** Calls of one route (`"POST /api/v4/session/token"`) since the last reset; 0 when none. */
export async function calls(base: string, route: string): Promise<number> {
  return (await stats(base)).requests[route] ?? 0;
}

/** Calls of every route since the last reset. */
export async function totalCalls(base: string): Promise<number> {
  return Object.values((await stats(base)).requests).reduce((a, b) => a + b, 0);
}

export async function resetStats(base: string): Promise<void> {
  await control(base, "POST", "/__emulator/stats/reset");
}

export interface FaultRule {
  route?: string;
  /** An HTTP status (a proxy's answer), a connection reset, or no answer at all. */
  failWith?: number | "reset" | "hang";
  /** With "reset" or "hang": the request is processed and this many reply body bytes go out first. */
  afterBytes?: number;
  times?: number;
  failRate?: number;
  latencyMs?: number;
}

export async function setFaults(base: string, rules: FaultRule[]): Promise<void> {
  await control(base, "POST", "/__emulator/faults", { rules });
}

/** Moves the emulator's clock forward; resolves to its new time in epoch milliseconds. */
export async function advanceClock(base: string, seconds: number): Promise<number> {
  const r = await control(base, "POST", "/__emulator/clock", { advanceSeconds: seconds });
  return Date.parse(String(r.now));
}

/**
 * A clock for the client (`auth.now`, Downloader's `now`) that reads the emulator's time, so
 * the client sees expiry coming the way it would against a server in step with it. `advance`
 * moves both clocks.
 */
export async function emulatorClock(base: string) {
  let offsetMs = (await advanceClock(base, 0)) - Date.now();
  return {
    now: () => Date.now() + offsetMs,
    async advance(seconds: number) {
      offsetMs = (await advanceClock(base, seconds)) - Date.now();
    },
  };
}

/** The answer to the captcha image the emulator handed out last (to a client the test spawned). */
export async function newestCaptchaAnswer(base: string): Promise<string> {
  return String((await control(base, "GET", "/__emulator/captcha")).answer);
}

export async function seed(
  base: string,
  body: { uri: string; files?: number; folders?: number; size?: number },
): Promise<void> {
  await control(base, "POST", "/__emulator/seed", body);
}

/** Byte i is i % 251, as the emulator seeds files. */
export function seedBytes(size: number, from = 0): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = (from + i) % 251;
  return buf;
}

/** Emulator routes as counted in the stats. */
export const R = {
  login: "POST /api/v4/session/token",
  refresh: "POST /api/v4/session/token/refresh",
  signOut: "DELETE /api/v4/session/token",
  me: "GET /api/v4/user/me",
  info: "GET /api/v4/file/info",
  list: "GET /api/v4/file",
  rename: "POST /api/v4/file/rename",
  move: "POST /api/v4/file/move",
  remove: "DELETE /api/v4/file",
  explorerConfig: "GET /api/v4/site/config/:section",
  putContent: "PUT /api/v4/file/content",
  createSession: "PUT /api/v4/file/upload",
  chunk: "POST /api/v4/file/upload/:sessionId/:index",
  cancel: "DELETE /api/v4/file/upload",
  url: "POST /api/v4/file/url",
  content: "GET /api/v4/file/content/:id/:speed/:name",
} as const;
