import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Auth } from "./auth.js";
import { handleControl, Faults, Stats } from "./control.js";
import { ApiError } from "./errors.js";
import {
  correlationIdOf,
  Envelope,
  errorEnvelope,
  RAW,
  Router,
  sendJson,
  type Ctx,
} from "./http.js";
import type { EmulatorOptions, RunningEmulator } from "./options.js";
import { registerAccountRoutes } from "./routes/account.js";
import { registerContentRoutes } from "./routes/content.js";
import { registerListingRoute } from "./routes/listing.js";
import { registerLockRoutes } from "./routes/lock.js";
import { registerManageRoutes } from "./routes/manage.js";
import { registerMetadataRoutes } from "./routes/metadata.js";
import { registerUploadRoutes } from "./routes/upload.js";
import { EmulatorState, resolveSettings } from "./state.js";

export type { EmulatorOptions, RunningEmulator } from "./options.js";

/** Starts a Cloudreve v4 emulator; see README.md for its routes and control routes. */
export async function startEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  const settings = resolveSettings(options);
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "cloudreve-emulator-")));
  await mkdir(join(dataDir, "blobs"), { recursive: true });
  await mkdir(join(dataDir, "tmp"), { recursive: true });

  const state = new EmulatorState(settings, dataDir);
  state.addUser(settings.email, settings.password, settings.capacity, settings.otpSecret);
  for (const u of options.extraUsers ?? [])
    state.addUser(u.email, u.password, u.capacity ?? settings.capacity);
  const auth = new Auth(state);
  const stats = new Stats();
  const faults = new Faults();
  const router = new Router();
  registerAccountRoutes(router, state, auth);
  registerListingRoute(router, state);
  registerManageRoutes(router, state);
  registerMetadataRoutes(router, state);
  registerLockRoutes(router, state);
  registerContentRoutes(router, state);
  registerUploadRoutes(router, state);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://emulator");
    const path = url.pathname;
    if (path.startsWith("/__emulator/"))
      return handleControl(req, res, path, url.searchParams, { state, auth, stats, faults });

    const method = req.method ?? "GET";
    const match = router.match(method, path);
    if (!match) {
      res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found");
      return;
    }
    const key = `${method} ${match.route.pattern}`;
    stats.count(key);
    const fault = faults.decide(key);
    const latency = settings.latencyMs + fault.latencyMs;
    if (latency > 0) await sleep(latency);
    if (fault.fail !== undefined && fault.afterBytes !== undefined) {
      cutReply(res, fault.fail, fault.afterBytes);
    } else if (fault.fail === "reset") {
      req.socket.destroy();
      return;
    } else if (fault.fail === "hang") {
      return; // no answer, ever: the client's own timeout has to end it
    } else if (fault.fail !== undefined) {
      // As a proxy in front of the server answers (e.g. nginx's 413): unread body, then close.
      const text = `${fault.fail} ${STATUS_CODES[fault.fail] ?? "Error"}`;
      res
        .writeHead(fault.fail, {
          "content-type": "text/plain",
          "content-length": Buffer.byteLength(text),
          connection: "close",
        })
        .end(text);
      return;
    }

    const ctx: Ctx = {
      req,
      res,
      params: match.params,
      query: url.searchParams,
      user: null,
      correlationId: correlationIdOf(req),
      countIn: (n) => (stats.bytesIn += n),
      countOut: (n) => (stats.bytesOut += n),
    };
    res.setHeader("cache-control", "private, no-cache");
    try {
      ctx.user = await auth.caller(req.headers.authorization);
      const result = await match.route.handler(ctx);
      if (result === RAW) return;
      if (result instanceof Envelope)
        sendJson(ctx, { code: result.code, data: result.data, msg: "" });
      else sendJson(ctx, { code: 0, data: result, msg: "" });
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof ApiError) sendJson(ctx, errorEnvelope(err, ctx.correlationId));
      else {
        process.stderr.write(`emulator: ${key} failed: ${String((err as Error)?.stack ?? err)}\n`);
        res.writeHead(500, { "content-type": "text/plain" }).end("Internal Server Error");
      }
    }
  }

  const server = createServer((req, res) => void handle(req, res));
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(settings.port, settings.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : settings.port;
  const url = `http://${settings.host.includes(":") ? `[${settings.host}]` : settings.host}:${port}`;
  state.siteUrl = options.siteUrl ?? url;

  return {
    url,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
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
