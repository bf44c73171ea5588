import { ApiError, Code, paramError } from "../errors.js";
import { optBool, optString, reqString } from "../bind.js";
import type { FileNode, User } from "../model.js";
import type { EmulatorState, Target } from "../state.js";

// What the /file route groups (manage, metadata, upload) share.

const COLOR = /^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/;
const EMOJI_PRESETS = ["😀", "😁", "😂", "🤣", "😊", "😍", "👍", "🎉", "📁", "⭐", "🔥", "❤️"];

/** Parses every URI of a batch up front: a malformed one fails the whole call. */
export function resolveAll(state: EmulatorState, user: User, uris: string[]): Target[] {
  state.checkBatch(uris);
  return uris.map((u) => state.resolve(user, u));
}

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

/** Create and upload requests carry metadata as a map, validated like patches. */
export function metadataMapToPatches(map: Record<string, unknown> | undefined): MetadataPatch[] {
  if (!map) return [];
  return validatePatches(Object.entries(map).map(([key, value]) => ({ key, value })));
}

/** Patches outside `dav:` and `thumb:` bump updated_at (§4.4). */
export function applyPatches(node: FileNode, patches: MetadataPatch[], now: number): void {
  for (const p of patches) {
    if (p.remove) node.metadata.delete(p.key);
    else node.metadata.set(p.key, p.value);
  }
  if (patches.some((p) => !p.key.startsWith("dav:") && !p.key.startsWith("thumb:"))) {
    node.updatedAt = now;
  }
}
