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
import type { Policy } from "./model.js";
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
  const storageStats = new Stats();
  const extraUsers = options.extraUsers ?? [];
  // One policy per type in use, the primary account's first (the default policy, id 1).
  const types = [
    ...new Set([settings.policy, ...extraUsers.map((u) => u.policy ?? settings.policy)]),
  ];
  const policies: Policy[] = [];
  for (const [i, type] of types.entries()) {
    const storage =
      type === "local"
        ? undefined
        : await createStorage(type, {
            // The primary policy's objects stay where tests of a single policy look for them.
            dir: join(dataDir, type === settings.policy ? "storage" : `storage-${type}`),
            clock,
            faults,
            stats: storageStats,
            callbackUrl: (session): string => callbackUrl(state.siteUrl, type, session),
            s3Backend: options.s3Backend,
          });
    policies.push({ type, id: i + 1, storage });
  }
  const policyOf = (type = settings.policy) => policies.find((p) => p.type === type)!;
  const storages = policies.flatMap((p) => p.storage ?? []);
  if (options.s3Backend && !storages.some((s) => s.backend === options.s3Backend))
    throw new Error("an S3 backend serves the s3, ks3 and cos policies, and none is in use");

  const state: EmulatorState = new EmulatorState(settings, dataDir, clock);
  const { email, password, capacity, otpSecret } = settings;
  state.addUser(email, password, capacity, policyOf(), otpSecret);
  for (const u of extraUsers)
    state.addUser(u.email, u.password, u.capacity ?? capacity, policyOf(u.policy));
  const auth = new Auth(state);
  const stats = new Stats();
  const router = new Router();
  registerAccountRoutes(router, state, auth);
  registerListingRoute(router, state);
  registerManageRoutes(router, state);
  registerMetadataRoutes(router, state);
  registerLockRoutes(router, state);
  registerContentRoutes(router, state);
  registerUploadRoutes(router, state, storages);
  registerEventRoute(router, state);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://emulator");
    const path = url.pathname;
    if (path.startsWith("/__emulator/"))
      return handleControl(req, res, path, url.searchParams, {
        state,
        auth,
        stats,
        faults,
        storageStats: storages.length > 0 ? storageStats : undefined,
      });

    const method = req.method ?? "GET";
    if (path === "/" && (method === "GET" || method === "HEAD")) return sendHome(req, res);
    const match = router.match(method, path);
    if (!match) {
      res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found");
      return;
    }
    const key = `${method} ${match.route.pattern}`;
    stats.count(key);
    await sweepAbandonedUploads(state, storages);
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
  const servers = [server];
  const storageUrls: RunningEmulator["storageUrls"] = {};
  const redirect = settings.storageRedirect;
  for (const { type, objects, origin } of storages) {
    const storageServer = await listen(
      (req, res) => origin.handle(req, res, !redirect),
      "127.0.0.1",
      0,
    );
    servers.push(storageServer);
    objects.url = storageUrls[type] = storageServer.url;
    if (redirect) {
      const readsServer = await listen((req, res) => origin.handle(req, res), "127.0.0.1", 0);
      servers.push(readsServer);
      origin.readsAt = readsServer.url;
    }
  }

  return {
    url: server.url,
    storageUrl: storageUrls[settings.policy],
    storageUrls,
    async close() {
      await Promise.all(servers.map((s) => s.close()));
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The real server answers its site root with its web app; this one has none, so it says what
 * it is and where the API lives (a person opens the printed upstream address in a browser).
 */
function sendHome(req: IncomingMessage, res: ServerResponse): void {
  const html =
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8" />' +
    "<title>Cloudreve v4 emulator</title></head><body><h1>Cloudreve v4 emulator</h1>" +
    "<p>An emulated Cloudreve v4 server (cloudreve-dav's, for tests and demo mode). Its API is " +
    'at <a href="/api/v4/site/ping">/api/v4</a>; it has no web interface. Browse or mount the ' +
    "drive through the WebDAV gateway in front of it.</p></body></html>\n";
  res.writeHead(200, {
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(html),
  });
  res.end(req.method === "HEAD" ? undefined : html);
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
