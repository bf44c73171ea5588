import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Auth } from "./auth.js";
import { Clock } from "./clock.js";
import { answerFault, handleControl, Faults, Stats } from "./control.js";
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
import { registerEventRoute } from "./routes/events.js";
import { registerListingRoute } from "./routes/listing.js";
import { registerLockRoutes } from "./routes/lock.js";
import { registerManageRoutes } from "./routes/manage.js";
import { registerMetadataRoutes } from "./routes/metadata.js";
import { callbackUrl, registerUploadRoutes, sweepAbandonedUploads } from "./routes/upload.js";
import { EmulatorState, resolveSettings } from "./state.js";
import { createStorage } from "./storage/index.js";

export type { EmulatorOptions, RunningEmulator } from "./options.js";

/** Starts a Cloudreve v4 emulator; see README.md for its routes and control routes. */
export async function startEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  const settings = resolveSettings(options);
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "cloudreve-emulator-")));
  await mkdir(join(dataDir, "blobs"), { recursive: true });
  await mkdir(join(dataDir, "tmp"), { recursive: true });

  const clock = new Clock();
  const faults = new Faults();
  const storage =
    settings.policy === "local"
      ? undefined
      : await createStorage(
          settings.policy,
          dataDir,
          clock,
          faults,
          (session): string => callbackUrl(state.siteUrl, settings.policy, session),
          options.s3Backend,
        );
  const state: EmulatorState = new EmulatorState(settings, dataDir, clock, storage);
  state.addUser(settings.email, settings.password, settings.capacity, settings.otpSecret);
  for (const u of options.extraUsers ?? [])
    state.addUser(u.email, u.password, u.capacity ?? settings.capacity);
  const auth = new Auth(state);
  const stats = new Stats();
  const router = new Router();
  registerAccountRoutes(router, state, auth);
  registerListingRoute(router, state);
  registerManageRoutes(router, state);
  registerMetadataRoutes(router, state);
  registerLockRoutes(router, state);
  registerContentRoutes(router, state);
  registerUploadRoutes(router, state);
  registerEventRoute(router, state);

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
    await sweepAbandonedUploads(state);
    if (await answerFault(req, res, faults.decide(key, "api"), settings.latencyMs)) return;

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

  const server = await listen(handle, settings.host, settings.port);
  state.siteUrl = options.siteUrl ?? server.url;
  const redirect = settings.storageRedirect;
  const storageServer =
    storage &&
    (await listen((req, res) => storage.origin.handle(req, res, !redirect), "127.0.0.1", 0));
  const readsServer =
    storage && redirect
      ? await listen((req, res) => storage.origin.handle(req, res), "127.0.0.1", 0)
      : undefined;
  if (storage && storageServer) storage.objects.url = storageServer.url;
  if (storage) storage.origin.readsAt = readsServer?.url;

  return {
    url: server.url,
    storageUrl: storageServer?.url,
    async close() {
      await Promise.all([server.close(), storageServer?.close(), readsServer?.close()]);
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function listen(
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  host: string,
  port: number,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => void handle(req, res));
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
