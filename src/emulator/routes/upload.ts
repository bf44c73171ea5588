import { randomBytes, randomUUID } from "node:crypto";
import { open, unlink } from "node:fs/promises";
import { ApiError, Code, errors, paramError } from "../errors.js";
import { decodeId, encodeId, IdType } from "../hashid.js";
import {
  declaredLength,
  errorEnvelope,
  RAW,
  readJson,
  receiveBody,
  sendJson,
  type Ctx,
  type Router,
} from "../http.js";
import { optInt, optObject, optString, reqString } from "../bind.js";
import { detach, validateName, type Entity } from "../model.js";
import type { EmulatorState, UploadSession } from "../state.js";
import type { Storage } from "../storage/index.js";
import { formatUri } from "../uri.js";
import { requireUser } from "./account.js";
import { createFileAt } from "./content.js";
import { metadataMapToPatches } from "./files.js";

/** Where a storage provider (or a client, for some types) reports an upload complete (§6.6). */
export function callbackUrl(siteUrl: string, type: string, session: UploadSession): string {
  return `${siteUrl}/api/v4/callback/${type}/${session.id}/${session.callbackSecret}`;
}

/** Policy types whose client calls Cloudreve back with GET; the other types POST (§6.6). */
const GET_CALLBACKS = new Set(["s3", "ks3", "cos"]);

/** Types whose uploads a sentinel cleans when no callback came (§6.3 UploadSentinelCheckTask). */
const SENTINEL_TYPES = new Set(["s3", "ks3", "cos", "onedrive"]);
const SENTINEL_GRACE_MS = 5 * 60_000;

/**
 * The sentinel: a session of those types still without its callback 5 minutes after it
 * expired is dropped, with whatever reached the storage (the parts, or an object completed
 * but never reported). Its placeholder stays, as on the real server.
 */
export async function sweepAbandonedUploads(
  state: EmulatorState,
  storages: readonly Storage[],
): Promise<void> {
  if (!storages.some((s) => SENTINEL_TYPES.has(s.type))) return;
  const now = state.clock.now();
  for (const session of [...state.uploads.values()]) {
    const storage = session.user.policy.storage;
    if (!session.object || !storage || !SENTINEL_TYPES.has(storage.type)) continue;
    if (session.expiresAt + SENTINEL_GRACE_MS > now) continue;
    state.uploads.delete(session.id);
    await storage.provider.abort(session);
    await storage.backend.deleteObject(session.object.key);
  }
}

/**
 * Upload sessions (§6), each by its owner's policy: the local policy's (and relay's) chunks
 * are POSTed to the server itself; a storage provider's go to its own origin, and the upload
 * completes with a callback from the client or from the provider.
 */
export function registerUploadRoutes(
  router: Router,
  state: EmulatorState,
  storages: readonly Storage[],
): void {
  const api = "/api/v4/file/upload";
  const now = () => state.clock.now();

  router.add("PUT", api, async (ctx) => {
    const user = requireUser(ctx);
    const body = await readJson(ctx);
    const raw = reqString(body, "uri", "Uri");
    const size = optInt(body, "size") ?? 0;
    if (size < 0) throw paramError();
    const policyId = optString(body, "policy_id");
    if (policyId && decodeId(policyId, IdType.policy) === undefined) throw paramError();
    const lastModified = optInt(body, "last_modified");
    const entityType = optString(body, "entity_type") ?? "";
    if (!["", "version", "live_photo"].includes(entityType)) throw paramError();
    const metadataMap = optObject(body, "metadata");
    if (metadataMap && Object.keys(metadataMap).length > 256) throw paramError();
    const patches = metadataMapToPatches(metadataMap);
    const previous = optString(body, "previous") ?? optString(body, "Previous");

    const target = state.resolve(user, raw);
    if (target.fs !== "my" || target.uri.elements.length === 0) throw errors.notSupported();
    for (const name of target.uri.elements) validateName(name);
    const max = state.settings.policyMaxSize;
    if (max > 0 && size > max) throw errors.tooLarge();

    const existing = target.node;
    if (!existing && entityType === "live_photo") throw errors.pathNotExist();
    if (existing) {
      if (existing.type === 1 || entityType === "") throw errors.exists();
      state.locks.check(user, target.uri.elements, false);
      if (previous && previous !== encodeId(existing.entity?.id ?? 0, IdType.entity)) {
        throw new ApiError(Code.StaleVersion, "File version is stale");
      }
    }
    if (size > 0 && state.used(user) + size > user.capacity) throw errors.insufficientCapacity();

    const node = existing ?? createFileAt(ctx, state, user, target.uri.elements);
    const id = randomUUID();
    if (!existing) node.metadata.set("sys:upload_session_id", id);
    // Relay forces a single chunk through Cloudreve (manager/upload.go CreateUploadSession).
    const relay = state.settings.relay;
    const chunkSize = relay ? 0 : state.chunkSize(user.policy.type);
    const expiresAt = now() + state.settings.uploadSessionTtl * 1000;
    const storage = relay ? undefined : user.policy.storage;
    const session: UploadSession = {
      id,
      user,
      node,
      placeholder: !existing,
      size,
      chunkSize,
      chunks: chunkSize === 0 || size === 0 ? 1 : Math.ceil(size / chunkSize),
      received: new Set(),
      lastModified: lastModified && lastModified > 0 ? lastModified : undefined,
      metadata: new Map(patches.filter((p) => !p.remove).map((p) => [p.key, p.value])),
      expiresAt,
      lockToken: state.locks.acquire(user, target.uri.elements, "upload", expiresAt),
      callbackSecret: randomBytes(16).toString("hex"),
      tmpPath: state.tmpPath(),
      previous,
      object: storage && { key: storage.objects.newKey(user.id), uploadId: "" },
    };
    state.uploads.set(id, session);
    const reply = {
      session_id: id,
      upload_id: "",
      chunk_size: chunkSize,
      expires: Math.floor(expiresAt / 1000),
      storage_policy: state.policyJson(user.policy),
      uri: formatUri("my", target.uri.elements),
      callback_secret: session.callbackSecret,
    };
    if (storage) return { ...reply, ...(await storage.provider.open(session, reply.expires)) };
    // The local policy pre-allocates the file, which is what lets chunks arrive out of order.
    const file = await open(session.tmpPath, "w");
    await file.truncate(size);
    await file.close();
    return reply;
  });

  router.add("POST", `${api}/:sessionId/:index`, async (ctx) => {
    const user = requireUser(ctx);
    const session = state.uploads.get(ctx.params.sessionId!);
    if (!session || session.user !== user || session.expiresAt <= now())
      throw errors.sessionExpired();
    if (session.object) throw errors.policyNotAllowed();
    if (!/^\d+$/.test(ctx.params.index!)) throw paramError();
    const index = Number(ctx.params.index);
    const { size, chunkSize } = session;
    const offset = index * chunkSize;
    if ((chunkSize === 0 && index > 0) || (offset >= size && !(size === 0 && index === 0))) {
      throw new ApiError(Code.InvalidChunkIndex, "Chunk index out of range");
    }
    const expected = chunkSize === 0 ? size : Math.min(chunkSize, size - offset);
    if (declaredLength(ctx) !== expected) {
      throw new ApiError(Code.InvalidContentLength, "Invalid content length");
    }
    const got = await receiveBody(ctx, session.tmpPath, expected, { offset });
    if (got !== expected) throw new ApiError(Code.IOFailed, "Failed to upload file");
    session.received.add(index);
    // Completion runs inline in the request that carries the last missing chunk.
    if (session.received.size === session.chunks && state.uploads.get(session.id) === session) {
      state.uploads.delete(session.id);
      complete(ctx, state, session, await state.createEntity(session.tmpPath, size, user));
    }
    return undefined;
  });

  // A completed upload reported by the client or the storage (§6.2, §6.6): the server checks
  // the object's size, then completes as the local flow does. Errors carry HTTP 401, and 400
  // (200 for onedrive and remote) when processing fails.
  for (const storage of state.settings.relay ? [] : storages) {
    const { type } = storage;
    const method = GET_CALLBACKS.has(type) ? "GET" : "POST";
    router.add(method, `/api/v4/callback/${type}/:sessionId/:key`, async (ctx) => {
      const fail = (status: number, err: ApiError) => {
        sendJson(ctx, errorEnvelope(err, ctx.correlationId), status);
        return RAW;
      };
      const session = state.uploads.get(ctx.params.sessionId!);
      if (!session || session.expiresAt <= now()) return fail(401, errors.sessionExpired());
      if (session.callbackSecret !== ctx.params.key)
        return fail(401, new ApiError(Code.CredentialInvalid, "Invalid callback key"));
      if (!session.object || session.user.policy.storage !== storage)
        return fail(401, errors.policyNotAllowed());
      const denied = storage.provider.authorizeCallback?.(
        ctx.req,
        new URL(ctx.req.url!, "http://x"),
      );
      if (denied) return fail(401, denied);
      const { key } = session.object;
      const size = await storage.backend.objectSize(key);
      if (size !== session.size)
        return fail(
          type === "onedrive" || type === "remote" ? 200 : 400,
          new ApiError(Code.MetaMismatch, "File size not match"),
        );
      if (state.uploads.get(session.id) !== session) return fail(401, errors.sessionExpired());
      state.uploads.delete(session.id);
      complete(ctx, state, session, state.objectEntity(key, size, session.user.policy));
      return undefined;
    });
  }

  router.add("DELETE", api, async (ctx) => {
    const user = requireUser(ctx);
    const body = await readJson(ctx);
    const id = reqString(body, "id", "ID");
    const target = state.existing(user, reqString(body, "uri", "Uri"));
    const session = state.uploads.get(id);
    if (!session || session.user !== user || session.node !== target.node) {
      throw new ApiError(Code.NotFound, "Upload session not found");
    }
    state.uploads.delete(id);
    state.locks.release(session.lockToken);
    if (session.object) await session.user.policy.storage!.provider.abort(session);
    // A session whose file was never written (or already completed) has none to remove.
    else await unlink(session.tmpPath).catch(() => undefined);
    // A brand-new file goes with its placeholder; an existing file keeps its current version.
    if (session.placeholder && !session.node.entity) {
      state.events.deleted(ctx, [session.node]);
      detach(session.node);
    } else state.events.modified(ctx, session.node);
    return undefined;
  });
}

/** CompleteUpload: the pending version becomes current, placeholder metadata goes. */
function complete(ctx: Ctx, state: EmulatorState, session: UploadSession, entity: Entity): void {
  const node = session.node;
  node.metadata.delete("sys:upload_session_id");
  node.metadata.delete("thumb:disabled");
  for (const [k, v] of session.metadata) node.metadata.set(k, v);
  state.setVersion(node, entity, session.lastModified ?? state.clock.now());
  state.locks.release(session.lockToken);
  state.events.modified(ctx, node);
}
