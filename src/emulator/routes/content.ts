import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createReadStream } from "node:fs";
import { unlink } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import mime from "mime";
import parseRange from "range-parser";
import { aggregate, ApiError, Code, errors, paramError } from "../errors.js";
import { decodeId, encodeId, IdType } from "../hashid.js";
import {
  declaredLength,
  RAW,
  readJson,
  receiveBody,
  sendJson,
  type Ctx,
  type Router,
} from "../http.js";
import { optBool, optString, reqStrings } from "../bind.js";
import { newNode, validateName, type Entity, type FileNode, type User } from "../model.js";
import type { EmulatorState } from "../state.js";
import { requireUser } from "./account.js";

/** Signed URLs are cached server-side until TTL minus this margin (entity_url_cache_margin). */
const URL_CACHE_MARGIN_S = 600;

/** Whole-file writes, signed download URLs and content serving (§5.8, §5.9). */
export function registerContentRoutes(router: Router, state: EmulatorState): void {
  const api = "/api/v4/file";
  const secret = randomBytes(32);
  const now = () => state.clock.now();

  /** sign = base64url(HMAC-SHA256(path ":" expires)) ":" expires, over the decoded path only. */
  const signature = (path: string, expires: number) =>
    createHmac("sha256", secret).update(`${path}:${expires}`).digest("base64url");

  async function signedUrl(
    entityId: number,
    name: string,
    download: boolean,
  ): Promise<{ url: string; expiresAt: number }> {
    const cacheKey = `${entityId}|${download}|${name}`;
    const cached = state.urlCache.get(cacheKey);
    if (cached && cached.expiresAt - URL_CACHE_MARGIN_S * 1000 > now()) return cached;
    const expires = state.clock.nowSeconds() + state.settings.entityUrlTtl;
    // Objects in a provider's storage are fetched from it directly (entitysource.go Url).
    const entity = state.entities.get(entityId);
    const storage = entity?.policy.storage;
    const hash = encodeId(entityId, IdType.entity);
    const sign = `${signature(`/api/v4/file/content/${hash}/0/${name}`, expires)}:${expires}`;
    const url =
      storage && entity.storageKey
        ? await storage.backend.presignGet(entity.storageKey, state.settings.entityUrlTtl)
        : `${state.siteUrl}/api/v4/file/content/${hash}/0/${encodeURIComponent(name)}?` +
          `${download ? "download=true&" : ""}sign=${encodeURIComponent(sign)}`;
    const fresh = { url, expiresAt: expires * 1000 };
    state.urlCache.set(cacheKey, fresh);
    return fresh;
  }

  router.add("PUT", `${api}/content`, async (ctx) => {
    const user = requireUser(ctx);
    const raw = ctx.query.get("uri");
    if (!raw) throw paramError("Uri cannot be empty");
    const previous = ctx.query.get("previous") ?? undefined;
    const length = declaredLength(ctx);
    if (length > state.settings.maxEditSize) throw errors.tooLarge();
    const target = state.resolve(user, raw);
    if (target.fs !== "my" || target.uri.elements.length === 0) throw errors.notSupported();
    const existing = target.node;
    if (existing) {
      if (existing.type === 1) throw errors.exists();
      state.locks.check(user, target.uri.elements, false);
      if (previous && previous !== encodeId(existing.entity?.id ?? 0, IdType.entity)) {
        throw new ApiError(Code.StaleVersion, "File version is stale");
      }
    } else {
      for (const name of target.uri.elements) validateName(name);
    }
    const max = state.settings.policyMaxSize;
    if (max > 0 && length > max) throw errors.tooLarge();
    if (length > 0 && state.used(user) + length > user.capacity)
      throw errors.insufficientCapacity();

    const tmp = state.tmpPath();
    const got = await receiveBody(ctx, tmp, length);
    if (got !== length) {
      await unlink(tmp).catch(() => undefined);
      throw new ApiError(Code.IOFailed, "Failed to upload file");
    }
    const entity = await state.createEntity(tmp, length, user);
    const node = existing ?? createFileAt(ctx, state, user, target.uri.elements);
    state.setVersion(node, entity, now());
    state.events.modified(ctx, node);
    return state.fileJson(node);
  });

  router.add("POST", `${api}/url`, async (ctx) => {
    const user = requireUser(ctx);
    const body = await readJson(ctx);
    const uris = reqStrings(body, "uris", "Uris");
    state.checkBatch(uris);
    const download = optBool(body, "download");
    const skipError = optBool(body, "skip_error");
    const wanted = optString(body, "entity");
    if (optBool(body, "archive")) throw new ApiError(Code.GroupNotAllowed, "Group not allowed");
    if (optBool(body, "no_cache")) state.urlCache.clear();
    const targets = uris.map((u) => state.resolve(user, u));

    const urls: { url: string }[] = [];
    const failures = new Map<string, ApiError>();
    let earliest: number | undefined;
    for (const target of targets) {
      const node = target.node;
      try {
        if (!node) throw errors.pathNotExist();
        if (node.type === 1) throw errors.entityNotExist();
        // `entity` names the current version or an old one kept by retention (§5.9).
        let entityId = node.entity?.id ?? 0;
        if (wanted !== undefined) {
          const id = decodeId(wanted, IdType.entity);
          if (id !== entityId && !node.versions.some((v) => v.id === id))
            throw errors.entityNotExist();
          entityId = id!;
        }
        const signed = await signedUrl(entityId, state.displayName(node), download);
        urls.push({ url: signed.url });
        earliest = Math.min(earliest ?? Infinity, signed.expiresAt);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        if (!skipError) failures.set(target.uri.key, err);
        urls.push({ url: "" });
      }
    }
    if (failures.size > 0) throw aggregate(failures);
    if (optBool(body, "redirect") && uris.length === 1) {
      ctx.res.writeHead(302, { location: urls[0]!.url });
      ctx.res.end();
      return RAW;
    }
    return { urls, expires: earliest === undefined ? null : state.time(earliest) };
  });

  const serve = async (ctx: Ctx) => {
    const { id, speed, name } = ctx.params;
    const sign = ctx.query.get("sign") ?? "";
    const colon = sign.lastIndexOf(":");
    const expires = Number(sign.slice(colon + 1));
    if (colon < 0 || !Number.isInteger(expires))
      throw new ApiError(Code.InvalidSign, "Invalid sign");
    if (expires < state.clock.nowSeconds())
      throw new ApiError(Code.SignExpired, "Signature expired");
    const expected = Buffer.from(signature(`/api/v4/file/content/${id}/${speed}/${name}`, expires));
    const given = Buffer.from(sign.slice(0, colon));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ApiError(Code.InvalidSign, "Invalid sign");
    }
    const entityId = decodeId(id!, IdType.entity);
    const entity = entityId === 0 ? null : state.entities.get(entityId ?? -1);
    if (entityId === undefined || entity?.refs === 0 || entity === undefined) {
      sendJson(ctx, { code: Code.NotFound, msg: "Entity data does not exist." }, 404);
      return RAW;
    }
    serveEntity(ctx, entity, id!, name!, ctx.query.get("download") === "true");
    return RAW;
  };
  router.add("GET", `${api}/content/:id/:speed/:name`, serve);
  router.add("HEAD", `${api}/content/:id/:speed/:name`, serve);
}

/** A new file at `elements` under the user's root, creating missing parent folders. */
export function createFileAt(
  ctx: Ctx,
  state: EmulatorState,
  user: User,
  elements: string[],
): FileNode {
  let folder = user.root;
  let existing = folder;
  for (const name of elements.slice(0, -1)) {
    const child = folder.children!.get(name);
    if (child && child.type !== 1) throw errors.notSupported();
    folder = child ?? newNode(state.ids, user, folder, name, 1, state.clock.now());
    if (child) existing = child;
  }
  const node = newNode(state.ids, user, folder, elements.at(-1)!, 0, state.clock.now());
  state.events.created(ctx, node, existing);
  return node;
}

const etagMatches = (header: string, etag: string, weak: boolean) =>
  header
    .split(",")
    .map((target) => target.trim())
    .some((tag) => tag === "*" || (weak ? tag.replace(/^W\//, "") : tag) === etag);

/**
 * Serves a blob the way Go's http.ServeContent does behind entitysource.Serve: If-Match → 412,
 * If-None-Match → 304, If-Range by strong ETag, single ranges 206, several multipart, 416 with
 * an unsatisfied Content-Range when none is satisfiable. There is no Last-Modified.
 */
function serveEntity(
  ctx: Ctx,
  entity: Entity | null,
  hash: string,
  name: string,
  download: boolean,
): void {
  const { req, res } = ctx;
  const size = entity?.size ?? 0;
  const etag = `"${hash}"`;
  const type = mime.getType(name) ?? "application/octet-stream";
  const headers: Record<string, string | number> = {
    "access-control-allow-origin": "*",
    "access-control-expose-headers":
      "Content-Range, Accept-Ranges, Content-Length, Content-Disposition, ETag",
    "cache-control": "public, max-age=86400",
    etag,
    "accept-ranges": "bytes",
  };
  if (req.method === "GET") headers["content-security-policy"] = "sandbox";
  if (download) {
    const ascii = /^[\x20-\x7e]*$/.test(name) && !name.includes('"');
    headers["content-disposition"] = ascii
      ? `attachment; filename="${name}"`
      : `attachment; filename="${encodeURIComponent(name)}"; filename*=UTF-8''${encodeURIComponent(name)}`;
  }

  const ifMatch = req.headers["if-match"];
  if (ifMatch && !etagMatches(ifMatch, etag, false)) {
    res.writeHead(412, headers).end();
    return;
  }
  const ifNoneMatch = req.headers["if-none-match"];
  if (ifNoneMatch && etagMatches(ifNoneMatch, etag, true)) {
    res.writeHead(304, headers).end();
    return;
  }

  let rangeHeader = req.headers.range;
  const ifRange = req.headers["if-range"];
  if (rangeHeader && ifRange && String(ifRange).trim() !== etag) rangeHeader = undefined;
  if (size === 0) rangeHeader = undefined;

  let ranges: { start: number; end: number }[] | undefined;
  if (rangeHeader) {
    const parsed = parseRange(size, rangeHeader);
    if (parsed === -1 || parsed === -2) {
      res.writeHead(416, { ...headers, "content-range": `bytes */${size}` }).end();
      return;
    }
    const total = parsed.reduce((sum, r) => sum + r.end - r.start + 1, 0);
    if (parsed.type === "bytes" && total <= size) ranges = [...parsed];
  }

  const stream = (start: number, end: number) => {
    const rs = createReadStream(entity!.blob!, { start, end, highWaterMark: 1024 * 1024 });
    rs.on("data", (chunk) => ctx.countOut(chunk.length));
    return rs;
  };
  const send = async (
    status: number,
    extra: Record<string, string | number>,
    body: () => Promise<void>,
  ) => {
    res.writeHead(status, { ...headers, ...extra });
    if (req.method === "HEAD" || size === 0) {
      res.end();
      return;
    }
    await body().catch(() => res.destroy());
  };

  if (!ranges) {
    void send(200, { "content-type": type, "content-length": size }, () =>
      pipeline(stream(0, size - 1), res),
    );
    return;
  }
  if (ranges.length === 1) {
    const { start, end } = ranges[0]!;
    void send(
      206,
      {
        "content-type": type,
        "content-length": end - start + 1,
        "content-range": `bytes ${start}-${end}/${size}`,
      },
      () => pipeline(stream(start, end), res),
    );
    return;
  }
  const boundary = randomBytes(12).toString("hex");
  const partHeads = ranges.map(
    (r, i) =>
      `${i === 0 ? "" : "\r\n"}--${boundary}\r\nContent-Type: ${type}\r\nContent-Range: bytes ${r.start}-${r.end}/${size}\r\n\r\n`,
  );
  const tail = `\r\n--${boundary}--\r\n`;
  const length =
    partHeads.reduce((sum, h) => sum + Buffer.byteLength(h), 0) +
    ranges.reduce((sum, r) => sum + r.end - r.start + 1, 0) +
    tail.length;
  void send(
    206,
    { "content-type": `multipart/byteranges; boundary=${boundary}`, "content-length": length },
    async () => {
      for (const [i, r] of ranges.entries()) {
        res.write(partHeads[i]);
        await pipeline(stream(r.start, r.end), res, { end: false });
      }
      res.end(tail);
    },
  );
}
