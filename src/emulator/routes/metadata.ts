import { aggregate, ApiError, Code, errors, paramError } from "../errors.js";
import { decodeId, encodeId, IdType } from "../hashid.js";
import { readJson, type Ctx, type Router } from "../http.js";
import { reqStrings } from "../bind.js";
import { elementsOf, treeSize, walk, type FileNode } from "../model.js";
import type { EmulatorState } from "../state.js";
import { requireUser } from "./account.js";
import { applyPatches, resolveAll, validatePatches } from "./files.js";

const MAX_METADATA_LEN = 65_535;

/** File info and metadata patches (§5.1, §5.7). */
export function registerMetadataRoutes(router: Router, state: EmulatorState): void {
  const api = "/api/v4/file";
  router.add("GET", `${api}/info`, (ctx) => fileInfo(state, ctx));
  router.add("PATCH", `${api}/metadata`, (ctx) => patchMetadata(state, ctx));
}

async function fileInfo(state: EmulatorState, ctx: Ctx) {
  const user = requireUser(ctx);
  const rawUri = ctx.query.get("uri");
  const rawId = ctx.query.get("id");
  let node: FileNode | undefined;
  if (rawUri) {
    const target = state.resolve(user, rawUri);
    if (target.fs === "my" && target.uri.elements.length === 0) throw errors.notSupported();
    node = target.node;
  } else if (rawId) {
    const id = decodeId(rawId, IdType.file) ?? decodeId(rawId, IdType.folder);
    if (id === undefined) throw paramError();
    node = [...walk(user.root)].find((n) => n.id === id && n.parent);
  } else {
    throw new ApiError(Code.ParamErr, "uri is required");
  }
  if (!node) throw errors.pathNotExist();
  const json = state.fileJson(node, { metadataObject: true });
  if (ctx.query.get("extended") === "true") json.extended_info = extendedInfo(state, node);
  if (ctx.query.get("folder_summary") === "true" && node.type === 1) {
    json.folder_summary = folderSummary(state, node);
  }
  return json;
}

function extendedInfo(state: EmulatorState, node: FileNode): Record<string, unknown> {
  const info: Record<string, unknown> = {
    storage_policy: state.policyJson(node.owner.policy),
    storage_used: node.versions.reduce((sum, e) => sum + e.size, node.entity?.size ?? 0),
  };
  // entities is omitempty: absent for folders and never-written files.
  if (node.entity) {
    info.entities = [node.entity, ...node.versions].map((entity) => ({
      id: encodeId(entity.id, IdType.entity),
      size: entity.size,
      type: 0,
      created_at: state.time(entity.createdAt),
      storage_policy: state.policyJson(entity.policy),
    }));
  }
  return info;
}

function folderSummary(state: EmulatorState, folder: FileNode): Record<string, unknown> {
  let files = 0;
  let folders = 0;
  for (const n of walk(folder)) {
    if (n === folder) continue;
    if (n.type === 1) folders++;
    else files++;
  }
  return {
    size: treeSize(folder),
    files,
    folders,
    completed: true,
    calculated_at: state.time(state.clock.now()),
  };
}

async function patchMetadata(state: EmulatorState, ctx: Ctx) {
  const user = requireUser(ctx);
  const body = await readJson(ctx);
  const uris = reqStrings(body, "uris", "Uris");
  if (body.patches === undefined) throw paramError("Patches cannot be empty");
  const patches = validatePatches(body.patches);
  const targets = resolveAll(state, user, uris);
  for (const p of patches) {
    if (Buffer.byteLength(p.value) > MAX_METADATA_LEN) throw new ApiError(Code.NotSet, "");
  }
  const failures = new Map<string, ApiError>();
  const valid: FileNode[] = [];
  for (const target of targets) {
    if (!target.node) failures.set(target.uri.key, errors.pathNotExist());
    else if (target.fs !== "my" || !target.node.parent)
      failures.set(target.uri.key, errors.notSupported());
    else valid.push(target.node);
  }
  for (const node of valid) state.locks.check(user, elementsOf(node), false);
  for (const node of valid) applyPatches(node, patches, state.clock.now());
  if (failures.size > 0) throw aggregate(failures);
  return undefined;
}
