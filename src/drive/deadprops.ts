import type { MetadataPatch } from "../cloudreve/api.js";
import { TooLarge } from "../errors.js";
import type { Checksums, DeadProp, PropPatch } from "./types.js";

/**
 * Dead properties as Cloudreve's own WebDAV server stores them (spec §9.5): metadata key
 * `dav:<namespace>|<localname>`, value JSON `{"l": <xml:lang>, "i": <base64 of the inner XML>}`.
 * Using the same encoding lets both servers see the same properties.
 */
const PREFIX = "dav:";
/** Cloudreve stores metadata values up to this many bytes; longer ones fail the whole call. */
const MAX_VALUE_BYTES = 65_535;

export function deadPropKey(p: Pick<DeadProp, "ns" | "name">): string {
  return `${PREFIX}${p.ns}|${p.name}`;
}

export function encodeDeadProp(p: DeadProp): string {
  return JSON.stringify({ l: p.lang ?? "", i: Buffer.from(p.innerXml, "utf8").toString("base64") });
}

/**
 * The gateway's own properties of one version of a file: stored as `<entity> <value>`, they
 * count only while that entity is the current version, so content written from anywhere else
 * (the web UI, a restored version) leaves them unused rather than wrong. Copies share the
 * entity and the metadata, so they keep them (§5.4).
 */
class VersionProp {
  readonly key: string;

  constructor(private readonly prop: Pick<DeadProp, "ns" | "name">) {
    this.key = deadPropKey(prop);
  }

  patch(entity: string, value: string): MetadataPatch {
    return {
      key: this.key,
      value: encodeDeadProp({ ...this.prop, innerXml: `${entity} ${value}` }),
    };
  }

  /** The value stored for this version, if any. */
  valueFor(dav: Record<string, string>, entity: string): string | undefined {
    const raw = dav[this.key];
    const inner = raw === undefined ? undefined : decodeOne(this.key, raw)?.innerXml;
    const space = inner?.indexOf(" ") ?? -1;
    return space > 0 && inner?.slice(0, space) === entity ? inner.slice(space + 1) : undefined;
  }
}

/**
 * The modification time set through the gateway, for clients that set one after the upload
 * (rclone's PROPPATCH lastmodified, Windows' Win32LastModifiedTime): Cloudreve can only set
 * updated_at when content is uploaded, and bumps it on every rename and move.
 */
const MTIME = new VersionProp({ ns: "urn:cloudreve-dav:", name: "mtime" });

/**
 * The checksums of the bytes the gateway uploaded, as `SHA1:<hex> MD5:<hex>`. Not stored as
 * ownCloud's `oc:checksums` itself: Cloudreve's own WebDAV server would serve that dead
 * property as it is, wrong once the file is written elsewhere.
 */
const CHECKSUMS = new VersionProp({ ns: "urn:cloudreve-dav:", name: "checksums" });
const CHECKSUMS_VALUE = /^SHA1:([0-9a-f]{40}) MD5:([0-9a-f]{32})$/;

/** Shown as getlastmodified and oc:checksums, not as dead properties. */
const OWN_KEYS = new Set([MTIME.key, CHECKSUMS.key]);

export function mtimePatch(entity: string, mtimeMs: number): MetadataPatch {
  return MTIME.patch(entity, String(mtimeMs));
}

/** The modification time set through the gateway for this version, if any. */
export function mtimeOverride(dav: Record<string, string>, entity: string): number | undefined {
  const ms = MTIME.valueFor(dav, entity);
  return ms !== undefined && /^\d+$/.test(ms) ? Number(ms) : undefined;
}

export function checksumsPatch(entity: string, sums: Checksums): MetadataPatch {
  return CHECKSUMS.patch(entity, `SHA1:${sums.sha1} MD5:${sums.md5}`);
}

/** The checksums the gateway stored for this version, if any. */
export function storedChecksums(
  dav: Record<string, string>,
  entity: string,
): Checksums | undefined {
  const match = CHECKSUMS_VALUE.exec(CHECKSUMS.valueFor(dav, entity) ?? "");
  return match ? { sha1: match[1]!, md5: match[2]! } : undefined;
}

/** The `dav:` part of a File's metadata, the raw form kept in the cache. */
export function davMetadata(metadata: Record<string, string> | null): Record<string, string> {
  const dav: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata ?? {})) {
    if (key.startsWith(PREFIX)) dav[key] = value;
  }
  return dav;
}

/**
 * Decodes stored properties; entries that are not in the encoding (written by hand) are
 * skipped, and so are the gateway's own, which show as live properties.
 */
export function decodeDeadProps(dav: Record<string, string>): DeadProp[] {
  return Object.entries(dav).flatMap(([key, value]) => {
    const prop = OWN_KEYS.has(key) ? undefined : decodeOne(key, value);
    return prop ? [prop] : [];
  });
}

function decodeOne(key: string, value: string): DeadProp | undefined {
  // A local name is an XML NCName and cannot hold "|"; a namespace URI could.
  const bar = key.lastIndexOf("|");
  if (!key.startsWith(PREFIX) || bar < 0) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const { l, i } = parsed as { l?: unknown; i?: unknown };
  if (typeof i !== "string") return undefined;
  const prop: DeadProp = {
    ns: key.slice(PREFIX.length, bar),
    name: key.slice(bar + 1),
    innerXml: Buffer.from(i, "base64").toString("utf8"),
  };
  if (typeof l === "string" && l !== "") prop.lang = l;
  return prop;
}

/**
 * One metadata patch list for the whole PROPPATCH: removals first, then sets, so a property
 * both removed and set ends up set. A value Cloudreve would refuse fails here, before any call.
 */
export function metadataPatches(patch: PropPatch): MetadataPatch[] {
  const removals = patch.remove.map((p) => ({ key: deadPropKey(p), remove: true }));
  const sets = patch.set.map((p) => {
    const value = encodeDeadProp(p);
    if (Buffer.byteLength(value) > MAX_VALUE_BYTES) {
      throw new TooLarge(`the property ${p.ns}${p.name} is too large to store`);
    }
    return { key: deadPropKey(p), value };
  });
  return [...removals, ...sets];
}

/** The raw `dav:` metadata after `patches` have been applied, for the cache. */
export function applyPatches(
  dav: Record<string, string>,
  patches: readonly MetadataPatch[],
): Record<string, string> {
  const next = { ...dav };
  for (const p of patches) {
    if (p.remove) delete next[p.key];
    else next[p.key] = p.value ?? "";
  }
  return next;
}
