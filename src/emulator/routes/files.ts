import { aggregate, ApiError, Code, errors, paramError } from "../errors.js";
import { decodeId, encodeId, IdType } from "../hashid.js";
import { readJson, type Router } from "../http.js";
import { optBool, optObject, optString, reqString, reqStrings } from "../bind.js";
import {
  attach,
  copyTree,
  detach,
  elementsOf,
  isAncestorOrSelf,
  newNode,
  newTrashKey,
  purge,
  treeSize,
  validateName,
  walk,
  type FileNode,
  type User,
} from "../model.js";
import type { EmulatorState, Target } from "../state.js";
import { parseUri } from "../uri.js";
import { requireUser } from "./account.js";

const COLOR = /^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/;
const EMOJI_PRESETS = ["😀", "😁", "😂", "🤣", "😊", "😍", "👍", "🎉", "📁", "⭐", "🔥", "❤️"];
const MAX_METADATA_LEN = 65_535;

export interface MetadataPatch {
  key: string;
  value: string;
  remove: boolean;
}

/** Metadata validation of pkg/filemanager/manager/metadata.go (§5.7). */
export function validatePatches(raw: unknown): MetadataPatch[] {
  if (!Array.isArray(raw)) throw paramError("JSON marshall error");
  return raw.map((p: unknown) => {
    if (typeof p !== "object" || p === null) throw paramError("JSON marshall error");
    const patch = p as Record<string, unknown>;
    const key = reqString(patch, "key", "Key");
    const value = optString(patch, "value") ?? "";
    const remove = optBool(patch, "remove");
    if (optBool(patch, "private")) throw paramError();
    const colon = key.indexOf(":");
    const category = colon > 0 ? key.slice(0, colon) : "";
    const name = key.slice(colon + 1);
    const invalid = () => new ApiError(Code.ParamErr, "Invalid metadata patch");
    switch (category) {
      case "dav":
      case "thumb":
        break;
      case "sys":
        if (remove || (name !== "shared_owner" && name !== "shared_redirect")) throw invalid();
        break;
      case "customize":
        if (name === "icon_color" && (remove || COLOR.test(value))) break;
        if (name === "emoji" && (remove || EMOJI_PRESETS.includes(value))) break;
        throw invalid();
      case "tag":
        if (name === "" || !(remove || value === "" || COLOR.test(value))) throw invalid();
        break;
      default:
        // props:<id> would be checked against the admin's custom props; none are configured.
        throw invalid();
    }
    return { key, value, remove };
  });
}

/** Patches outside `dav:` and `thumb:` bump updated_at (§4.4). */
function applyPatches(node: FileNode, patches: MetadataPatch[], now: number): void {
  for (const p of patches) {
    if (p.remove) node.metadata.delete(p.key);
    else node.metadata.set(p.key, p.value);
  }
  if (patches.some((p) => !p.key.startsWith("dav:") && !p.key.startsWith("thumb:"))) {
    node.updatedAt = now;
  }
}

/** File management routes (§5.1–§5.7, §5.11). */
export function registerFileRoutes(router: Router, state: EmulatorState): void {
  const api = "/api/v4/file";
  const now = () => state.clock.now();

  /** Parses every URI of a batch up front: a malformed one fails the whole call. */
  function resolveAll(user: User, uris: string[]): Target[] {
    state.checkBatch(uris);
    return uris.map((u) => state.resolve(user, u));
  }

  router.add("GET", `${api}/info`, async (ctx) => {
    const user = requireUser(ctx);
    const rawUri = ctx.query.get("uri");
    const rawId = ctx.query.get("id");
    let node: FileNode | undefined;
    if (rawUri) {
      const t = state.resolve(user, rawUri);
      if (t.fs === "my" && t.uri.elements.length === 0) throw errors.notSupported();
      node = t.node;
    } else if (rawId) {
      const id = decodeId(rawId, IdType.file) ?? decodeId(rawId, IdType.folder);
      if (id === undefined) throw paramError();
      node = [...walk(user.root)].find((n) => n.id === id && n.parent);
    } else {
      throw new ApiError(Code.ParamErr, "uri is required");
    }
    if (!node) throw errors.pathNotExist();
    const json = state.fileJson(node, { metadataObject: true });
    if (ctx.query.get("extended") === "true") {
      const policy = state.policyJson();
      const info: Record<string, unknown> = {
        storage_policy: policy,
        storage_used: node.entity?.size ?? 0,
      };
      // entities is omitempty: absent for folders and never-written files.
      if (node.entity) {
        info.entities = [
          {
            id: encodeId(node.entity.id, IdType.entity),
            size: node.entity.size,
            type: 0,
            created_at: state.time(node.entity.createdAt),
            storage_policy: policy,
          },
        ];
      }
      json.extended_info = info;
    }
    if (ctx.query.get("folder_summary") === "true" && node.type === 1) {
      let files = 0;
      let folders = 0;
      for (const n of walk(node)) {
        if (n === node) continue;
        if (n.type === 1) folders++;
        else files++;
      }
      json.folder_summary = {
        size: treeSize(node),
        files,
        folders,
        completed: true,
        calculated_at: state.time(now()),
      };
    }
    return json;
  });

  router.add("POST", `${api}/create`, async (ctx) => {
    const user = requireUser(ctx);
    const body = await readJson(ctx);
    const raw = reqString(body, "uri", "Uri");
    const typeName = reqString(body, "type", "Type");
    if (typeName !== "file" && typeName !== "folder") throw paramError();
    const type = typeName === "folder" ? 1 : 0;
    const metadata =
      body.metadata === undefined ? [] : metadataMapToPatches(optObject(body, "metadata"));
    const errOnConflict = optBool(body, "err_on_conflict");
    const t = state.resolve(user, raw);
    if (t.fs !== "my" || t.uri.elements.length === 0) throw errors.notSupported();

    const names = t.uri.elements;
    let folder = user.root;
    for (const [i, name] of names.entries()) {
      const child = folder.children!.get(name);
      const last = i === names.length - 1;
      if (child && !last) {
        if (child.type !== 1) throw errors.notSupported();
        folder = child;
        continue;
      }
      if (child) {
        if (child.type !== type || errOnConflict) throw errors.exists();
        return state.fileJson(child);
      }
      // Every element still to create must be a valid name before anything is created.
      for (const n of names.slice(i)) validateName(n);
      let parent = folder;
      for (const n of names.slice(i, -1)) parent = newNode(state.ids, user, parent, n, 1, now());
      const created = newNode(state.ids, user, parent, names.at(-1)!, type, now());
      applyPatches(created, metadata, created.updatedAt);
      return state.fileJson(created);
    }
    throw errors.notSupported();
  });

  router.add("POST", `${api}/rename`, async (ctx) => {
    const user = requireUser(ctx);
    const body = await readJson(ctx);
    const raw = reqString(body, "uri", "Uri");
    const newName = reqString(body, "new_name", "NewName");
    if ([...newName].length > 255) throw paramError("NewName too long");
    const t = state.existing(user, raw);
    const node = t.node;
    if (t.fs !== "my" || !node.parent) throw errors.notSupported();
    validateName(newName);
    state.locks.check(user, elementsOf(node), true);
    const clash = node.parent.children!.get(newName);
    if (clash && clash !== node) throw errors.exists();
    const parent = node.parent;
    // A new extension (compared case-insensitively) may make a thumbnail possible again.
    const extension = (name: string) =>
      name.includes(".") ? name.slice(name.lastIndexOf(".")).toLowerCase() : "";
    if (node.type === 0 && extension(node.name) !== extension(newName)) {
      node.metadata.delete("thumb:disabled");
    }
    detach(node);
    attach(node, parent, newName);
    node.updatedAt = now();
    return state.fileJson(node);
  });

  router.add("POST", `${api}/move`, async (ctx) => {
    const user = requireUser(ctx);
    const body = await readJson(ctx);
    const uris = reqStrings(body, "uris", "Uris");
    const dstRaw = reqString(body, "dst", "Dst");
    const copy = optBool(body, "copy");
    const sources = resolveAll(user, uris);
    const dstT = state.resolve(user, dstRaw);
    // Moving into the trash is allowed by canMoveOrCopyTo but unverified (spec §12.7): DELETE is the way.
    if (dstT.fs !== "my") throw errors.notSupported();
    const dst = dstT.node;
    if (!dst) throw errors.pathNotExist();
    if (dst.type !== 1) throw errors.notSupported();

    const failures = new Map<string, ApiError>();
    const valid: { node: FileNode; name: string }[] = [];
    for (const src of sources) {
      const node = src.node;
      let failure: ApiError | undefined;
      if (!node) failure = errors.pathNotExist();
      else if (src.fs === "my" && !node.parent) failure = errors.notSupported();
      else if (src.fs === "shared_with_me" || (src.fs === "trash" && copy))
        failure = errors.notSupported();
      else if (node.type === 1 && isAncestorOrSelf(node, dst)) failure = errors.notSupported();
      if (failure || !node) failures.set(src.uri.key, failure!);
      else valid.push({ node, name: state.displayName(node) });
    }
    // Locking the batch and committing it fail the whole call, not single items.
    for (const { node } of valid)
      if (!node.trashKey) state.locks.check(user, elementsOf(node), true);
    const names = new Set<string>();
    for (const { node, name } of valid) {
      const clash = dst.children!.get(name);
      if ((clash && (copy || clash !== node)) || names.has(name)) throw errors.exists();
      names.add(name);
    }
    if (copy) {
      const extra = valid.reduce((sum, { node }) => sum + treeSize(node), 0);
      if (extra > 0 && state.used(user) + extra > user.capacity)
        throw errors.insufficientCapacity();
    }
    for (const { node, name } of valid) {
      if (copy) {
        copyTree(state.ids, node, dst, now());
        continue;
      }
      if (node.trashKey) {
        // Restore by move: the original name comes back and the trash metadata goes.
        user.trash.delete(node.trashKey);
        delete node.trashKey;
        node.metadata.delete("sys:restore_uri");
        node.metadata.delete("sys:expected_collect_time");
      } else {
        detach(node);
      }
      attach(node, dst, name);
      node.updatedAt = now();
    }
    if (failures.size > 0) throw aggregate(failures);
    return undefined;
  });

  router.add("DELETE", api, async (ctx) => {
    const user = requireUser(ctx);
    const body = await readJson(ctx);
    const uris = reqStrings(body, "uris", "Uris");
    const hard = optBool(body, "skip_soft_delete");
    const targets = resolveAll(user, uris);
    if (optBool(body, "unlink")) throw errors.permissionDenied(); // group lacks advance_delete

    const failures = new Map<string, ApiError>();
    const valid: FileNode[] = [];
    for (const t of targets) {
      let failure: ApiError | undefined;
      if (!t.node) failure = errors.pathNotExist();
      else if (t.fs === "shared_with_me" || (t.fs === "my" && !t.node.parent))
        failure = errors.notSupported();
      else if (t.fs === "trash" && !hard) failure = errors.notSupported();
      if (failure || !t.node) failures.set(t.uri.key, failure!);
      else valid.push(t.node);
    }
    for (const node of valid) if (!node.trashKey) state.locks.check(user, elementsOf(node), true);
    for (const node of valid) {
      if (hard) {
        if (node.trashKey) user.trash.delete(node.trashKey);
        else detach(node);
        purge(node);
        continue;
      }
      const restoreUri = state.uriOf(node);
      const key = newTrashKey();
      detach(node);
      node.name = key;
      node.trashKey = key;
      node.metadata.set("sys:restore_uri", restoreUri);
      node.metadata.set(
        "sys:expected_collect_time",
        String(state.clock.nowSeconds() + state.settings.trashRetention),
      );
      user.trash.set(key, node);
    }
    if (failures.size > 0) throw aggregate(failures);
    return undefined;
  });

  router.add("POST", `${api}/restore`, async (ctx) => {
    const user = requireUser(ctx);
    const body = await readJson(ctx);
    const targets = resolveAll(user, reqStrings(body, "uris", "Uris"));
    const failures = new Map<string, ApiError>();
    for (const t of targets) {
      const node = t.node;
      try {
        if (t.fs !== "trash" || !node?.trashKey) throw errors.pathNotExist();
        const restore = parseUri(node.metadata.get("sys:restore_uri") ?? "");
        const name = restore.elements.at(-1)!;
        const parent = state.resolve(
          user,
          `cloudreve://my/${restore.elements.slice(0, -1).map(encodeURIComponent).join("/")}`,
        ).node;
        if (!parent || parent.type !== 1) throw errors.pathNotExist();
        if (parent.children!.has(name)) throw errors.exists();
        user.trash.delete(node.trashKey);
        delete node.trashKey;
        node.metadata.delete("sys:restore_uri");
        node.metadata.delete("sys:expected_collect_time");
        attach(node, parent, name);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        failures.set(t.uri.key, err);
      }
    }
    if (failures.size > 0) throw aggregate(failures);
    return undefined;
  });

  router.add("DELETE", `${api}/trash`, async (ctx) => {
    const user = requireUser(ctx);
    for (const node of user.trash.values()) purge(node);
    user.trash.clear();
    return undefined;
  });

  router.add("PATCH", `${api}/metadata`, async (ctx) => {
    const user = requireUser(ctx);
    const body = await readJson(ctx);
    const uris = reqStrings(body, "uris", "Uris");
    if (body.patches === undefined) throw paramError("Patches cannot be empty");
    const patches = validatePatches(body.patches);
    const targets = resolveAll(user, uris);
    for (const p of patches) {
      if (Buffer.byteLength(p.value) > MAX_METADATA_LEN) throw new ApiError(Code.NotSet, "");
    }
    const failures = new Map<string, ApiError>();
    const valid: FileNode[] = [];
    for (const t of targets) {
      if (!t.node) failures.set(t.uri.key, errors.pathNotExist());
      else if (t.fs !== "my" || !t.node.parent) failures.set(t.uri.key, errors.notSupported());
      else valid.push(t.node);
    }
    for (const node of valid) state.locks.check(user, elementsOf(node), false);
    for (const node of valid) applyPatches(node, patches, now());
    if (failures.size > 0) throw aggregate(failures);
    return undefined;
  });

  router.add("DELETE", `${api}/lock`, async (ctx) => {
    requireUser(ctx);
    const body = await readJson(ctx);
    for (const token of reqStrings(body, "tokens", "Tokens")) state.locks.release(token);
    return undefined;
  });
}

/** Create and upload requests carry metadata as a map, validated like patches. */
export function metadataMapToPatches(map: Record<string, unknown> | undefined): MetadataPatch[] {
  if (!map) return [];
  return validatePatches(Object.entries(map).map(([key, value]) => ({ key, value })));
}
