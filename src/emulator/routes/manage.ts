import { aggregate, ApiError, errors, paramError } from "../errors.js";
import { readJson, type Ctx, type Router } from "../http.js";
import { optBool, optObject, reqString, reqStrings } from "../bind.js";
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
  type FileNode,
} from "../model.js";
import type { EmulatorState } from "../state.js";
import { parseUri } from "../uri.js";
import { requireUser } from "./account.js";
import { applyPatches, metadataMapToPatches, resolveAll } from "./files.js";

/** Create, rename, move or copy, delete, restore and empty the trash (§5.2–§5.6). */
export function registerManageRoutes(router: Router, state: EmulatorState): void {
  const api = "/api/v4/file";
  router.add("POST", `${api}/create`, (ctx) => createFile(state, ctx));
  router.add("POST", `${api}/rename`, (ctx) => renameFile(state, ctx));
  router.add("POST", `${api}/move`, (ctx) => moveFiles(state, ctx));
  router.add("DELETE", api, (ctx) => deleteFiles(state, ctx));
  router.add("POST", `${api}/restore`, (ctx) => restoreFiles(state, ctx));
  router.add("DELETE", `${api}/trash`, emptyTrash);
}

async function createFile(state: EmulatorState, ctx: Ctx) {
  const user = requireUser(ctx);
  const body = await readJson(ctx);
  const raw = reqString(body, "uri", "Uri");
  const typeName = reqString(body, "type", "Type");
  if (typeName !== "file" && typeName !== "folder") throw paramError();
  const type = typeName === "folder" ? 1 : 0;
  const metadata =
    body.metadata === undefined ? [] : metadataMapToPatches(optObject(body, "metadata"));
  const errOnConflict = optBool(body, "err_on_conflict");
  const target = state.resolve(user, raw);
  if (target.fs !== "my" || target.uri.elements.length === 0) throw errors.notSupported();

  const names = target.uri.elements;
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
    for (const n of names.slice(i, -1))
      parent = newNode(state.ids, user, parent, n, 1, state.clock.now());
    const created = newNode(state.ids, user, parent, names.at(-1)!, type, state.clock.now());
    applyPatches(created, metadata, created.updatedAt);
    state.events.created(ctx, created, folder);
    return state.fileJson(created);
  }
  throw errors.notSupported();
}

async function renameFile(state: EmulatorState, ctx: Ctx) {
  const user = requireUser(ctx);
  const body = await readJson(ctx);
  const raw = reqString(body, "uri", "Uri");
  const newName = reqString(body, "new_name", "NewName");
  if ([...newName].length > 255) throw paramError("NewName too long");
  const target = state.existing(user, raw);
  const node = target.node;
  if (target.fs !== "my" || !node.parent) throw errors.notSupported();
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
  state.events.renamed(ctx, node, newName);
  detach(node);
  attach(node, parent, newName);
  node.updatedAt = state.clock.now();
  return state.fileJson(node);
}

async function moveFiles(state: EmulatorState, ctx: Ctx) {
  const user = requireUser(ctx);
  const body = await readJson(ctx);
  const uris = reqStrings(body, "uris", "Uris");
  const dstRaw = reqString(body, "dst", "Dst");
  const copy = optBool(body, "copy");
  const sources = resolveAll(state, user, uris);
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
  for (const { node } of valid) if (!node.trashKey) state.locks.check(user, elementsOf(node), true);
  const names = new Set<string>();
  for (const { node, name } of valid) {
    const clash = dst.children!.get(name);
    if ((clash && (copy || clash !== node)) || names.has(name)) throw errors.exists();
    names.add(name);
  }
  if (copy) {
    const extra = valid.reduce((sum, { node }) => sum + treeSize(node), 0);
    if (extra > 0 && state.used(user) + extra > user.capacity) throw errors.insufficientCapacity();
  }
  for (const { node, name } of valid) {
    if (copy) {
      state.events.created(ctx, copyTree(state.ids, node, dst, state.clock.now()));
      continue;
    }
    state.events.moved(ctx, node, dst);
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
    node.updatedAt = state.clock.now();
  }
  if (failures.size > 0) throw aggregate(failures);
  return undefined;
}

async function deleteFiles(state: EmulatorState, ctx: Ctx) {
  const user = requireUser(ctx);
  const body = await readJson(ctx);
  const uris = reqStrings(body, "uris", "Uris");
  const hard = optBool(body, "skip_soft_delete");
  const targets = resolveAll(state, user, uris);
  if (optBool(body, "unlink")) throw errors.permissionDenied(); // group lacks advance_delete

  const failures = new Map<string, ApiError>();
  const valid: FileNode[] = [];
  for (const target of targets) {
    let failure: ApiError | undefined;
    if (!target.node) failure = errors.pathNotExist();
    else if (target.fs === "shared_with_me" || (target.fs === "my" && !target.node.parent))
      failure = errors.notSupported();
    else if (target.fs === "trash" && !hard) failure = errors.notSupported();
    if (failure || !target.node) failures.set(target.uri.key, failure!);
    else valid.push(target.node);
  }
  for (const node of valid) if (!node.trashKey) state.locks.check(user, elementsOf(node), true);
  state.events.deleted(ctx, valid);
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
}

async function restoreFiles(state: EmulatorState, ctx: Ctx) {
  const user = requireUser(ctx);
  const body = await readJson(ctx);
  const targets = resolveAll(state, user, reqStrings(body, "uris", "Uris"));
  const failures = new Map<string, ApiError>();
  for (const target of targets) {
    const node = target.node;
    try {
      if (target.fs !== "trash" || !node?.trashKey) throw errors.pathNotExist();
      const restore = parseUri(node.metadata.get("sys:restore_uri") ?? "");
      const name = restore.elements.at(-1)!;
      const parent = state.resolve(
        user,
        `cloudreve://my/${restore.elements.slice(0, -1).map(encodeURIComponent).join("/")}`,
      ).node;
      if (!parent || parent.type !== 1) throw errors.pathNotExist();
      if (parent.children!.has(name)) throw errors.exists();
      // A restore is a move from the trash (manage.go Restore).
      state.events.moved(ctx, node, parent);
      user.trash.delete(node.trashKey);
      delete node.trashKey;
      node.metadata.delete("sys:restore_uri");
      node.metadata.delete("sys:expected_collect_time");
      attach(node, parent, name);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      failures.set(target.uri.key, err);
    }
  }
  if (failures.size > 0) throw aggregate(failures);
  return undefined;
}

async function emptyTrash(ctx: Ctx) {
  const user = requireUser(ctx);
  for (const node of user.trash.values()) purge(node);
  user.trash.clear();
  return undefined;
}
