/**
 * The live properties, as a table (the role of x/net/webdav's prop.go): one row per
 * property, saying where it applies, whether PROPPATCH may touch it, whether allprop shows it,
 * and how to render it from an Entry. Everything else is a dead property and lives in the drive.
 */
import mime from "mime";
import type { Entry, Quota } from "../drive/types.js";
import { httpDate, quoteEtag } from "./headers.js";
import { remembered } from "./memo.js";
import {
  DAV_NS,
  escapeXml,
  lockDiscoveryXml,
  supportedLockXml,
  type ActiveLockXml,
  type QName,
} from "./xml.js";

/** A lock as the property layer needs it; `root` is a gateway path like Entry.path. */
export interface LockView {
  token: string;
  root: string;
  scope: "exclusive" | "shared";
  depth: 0 | "infinity";
  ownerXml: string;
  /** When it expires, ms since the epoch; Infinity for a lock without timeout. */
  expiresAt: number;
}

export interface PropContext {
  entry: Entry;
  /** Present when quota may be shown (not to macOS 15.4+ Finder, which stalls on it). */
  quota?: Quota;
  /** Locks covering the entry, its own and inherited ones. */
  locks?: readonly LockView[];
  /** The time the answer describes, for the seconds a lock has left. */
  now?: number;
  contentType(name: string): string;
  /** The href of a drive path (lock roots in lockdiscovery); plain hrefOf when absent. */
  href?(path: string, isDir: boolean): string;
}

export interface LiveProp {
  /** Namespace; DAV: when absent. */
  ns?: string;
  name: string;
  files: boolean;
  folders: boolean;
  /** PROPPATCH answers 403 cannot-modify-protected-property. */
  protected: boolean;
  /** Listed for allprop (RFC 4918 §9.1; RFC 4331 keeps quota out). */
  allprop: boolean;
  /** Inner XML, or undefined when the value is unknown here (reported as 404). */
  render(ctx: PropContext): string | undefined;
}

/** Creation dates by second, formatted once, as httpDate does for modification times. */
const isoDates = new Map<number, string>();

/** RFC 3339 in UTC without fractions (`2026-01-01T10:00:00Z`), which Windows parses. */
export function rfc3339(ms: number): string | undefined {
  if (!Number.isFinite(ms)) return undefined;
  const format = (seconds: number) => new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
  return remembered(isoDates, Math.floor(ms / 1000), format);
}

/** Types by extension, remembered: mime's look-up was ~5 % of a warm 10,000-entry PROPFIND. */
const contentTypes = new Map<string, string>();

/** MIME type from the name's extension; application/octet-stream when unknown. */
export function contentTypeOf(name: string): string {
  const dot = name.lastIndexOf(".");
  // Only a real extension counts: mime would read a bare "js" or ".txt" as an extension.
  if (dot <= 0) return "application/octet-stream";
  const typeOf = (ext: string) => mime.getType(ext) ?? "application/octet-stream";
  return remembered(contentTypes, name.slice(dot + 1), typeOf);
}

// RFC 3986 pchar minus percent-encodings: unreserved, sub-delims, ":" and "@" need no encoding.
// encodeURIComponent leaves unreserved and !'()* alone; these are the ones it encodes needlessly.
const KEEP = /%(?:24|26|2B|2C|3B|3D|3A|40)/g;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
/** A segment of only these stays as it is: one test instead of encoding and two replaces. */
const UNCHANGED = /^[\w.~!$&'()*+,;=:@-]*$/;

/** One path segment as it appears in an href. */
export function encodeSegment(segment: string): string {
  if (UNCHANGED.test(segment)) return segment;
  // encodeURIComponent throws on lone surrogates; they cannot be UTF-8 anyway.
  const wellFormed = segment.replace(LONE_SURROGATE, "\uFFFD");
  return encodeURIComponent(wellFormed).replace(KEEP, decodeURIComponent);
}

/**
 * The href of a gateway path: each segment percent-encoded (space, %, #, ?, non-ASCII as UTF-8,
 * …), collections with a trailing slash.
 */
export function hrefOf(path: string, isDir: boolean): string {
  const segments = path.split("/").filter((s) => s !== "");
  if (segments.length === 0) return "/";
  return `/${segments.map(encodeSegment).join("/")}${isDir ? "/" : ""}`;
}

/** An active lock as lockdiscovery and the LOCK answer show it, with the seconds it has left. */
export function activeLockOf(lock: LockView, rootHref: string, now: number): ActiveLockXml {
  return {
    scope: lock.scope,
    depth: lock.depth,
    ownerXml: lock.ownerXml,
    timeoutSeconds: Number.isFinite(lock.expiresAt)
      ? Math.ceil((lock.expiresAt - now) / 1000)
      : undefined,
    token: lock.token,
    rootHref,
  };
}

function lockXml(ctx: PropContext): string {
  const now = ctx.now ?? Date.now();
  const locks = (ctx.locks ?? []).map((lock) =>
    // A lock rooted elsewhere is inherited from an ancestor, which is a folder.
    activeLockOf(
      lock,
      (ctx.href ?? hrefOf)(lock.root, lock.root === ctx.entry.path ? ctx.entry.isDir : true),
      now,
    ),
  );
  return lockDiscoveryXml(locks);
}

const both = { files: true, folders: true };

/** ownCloud's namespace, where rclone's owncloud and nextcloud vendors look for checksums. */
const OC_NS = "http://owncloud.org/ns";

/**
 * Every live property is protected: displayname and getcontentlanguage may be writable per
 * RFC 4918, but a stored value would diverge from the name and we have no language to keep.
 */
export const LIVE_PROPS: readonly LiveProp[] = [
  {
    name: "resourcetype",
    ...both,
    protected: true,
    allprop: true,
    render: ({ entry }) => (entry.isDir ? "<D:collection/>" : ""),
  },
  {
    name: "displayname",
    ...both,
    protected: true,
    allprop: true,
    render: ({ entry }) => escapeXml(entry.name),
  },
  {
    name: "getcontentlength",
    files: true,
    folders: false,
    protected: true,
    allprop: true,
    render: ({ entry }) => String(entry.size),
  },
  {
    name: "getcontenttype",
    files: true,
    folders: false,
    protected: true,
    allprop: true,
    render: (ctx) => escapeXml(ctx.contentType(ctx.entry.name)),
  },
  {
    name: "getetag",
    ...both,
    protected: true,
    allprop: true,
    render: ({ entry }) => (entry.etag === "" ? undefined : escapeXml(quoteEtag(entry.etag))),
  },
  {
    name: "getlastmodified",
    ...both,
    protected: true,
    allprop: true,
    render: ({ entry }) => httpDate(entry.mtimeMs),
  },
  {
    name: "creationdate",
    ...both,
    protected: true,
    allprop: true,
    render: ({ entry }) => rfc3339(entry.ctimeMs),
  },
  {
    name: "supportedlock",
    ...both,
    protected: true,
    allprop: true,
    render: () => supportedLockXml(),
  },
  {
    name: "lockdiscovery",
    ...both,
    protected: true,
    allprop: true,
    render: lockXml,
  },
  {
    name: "quota-available-bytes",
    files: false,
    folders: true,
    protected: true,
    allprop: false,
    render: ({ quota }) => (quota === undefined ? undefined : String(Math.max(0, quota.available))),
  },
  {
    name: "quota-used-bytes",
    files: false,
    folders: true,
    protected: true,
    allprop: false,
    render: ({ quota }) => (quota === undefined ? undefined : String(Math.max(0, quota.used))),
  },
  {
    // `<oc:checksum>SHA1:… MD5:…</oc:checksum>`, as rclone reads it (backend/webdav/api
    // Prop.Hashes). Not in allprop, which RFC 4918 §9.1 owes only its own live properties: the
    // clients that read checksums ask for them by name.
    ns: OC_NS,
    name: "checksums",
    files: true,
    folders: false,
    protected: true,
    allprop: false,
    render: ({ entry: { checksums } }) =>
      checksums &&
      `<checksum xmlns="${OC_NS}">SHA1:${checksums.sha1} MD5:${checksums.md5}</checksum>`,
  },
  {
    // Known but never present: a PROPFIND for it gets 404, a PROPPATCH 403.
    name: "getcontentlanguage",
    files: false,
    folders: false,
    protected: true,
    allprop: false,
    render: () => undefined,
  },
];

const qkey = (ns: string, name: string) => `${ns}\u0000${name}`;
const BY_NAME = new Map(LIVE_PROPS.map((row) => [qkey(row.ns ?? DAV_NS, row.name), row]));

/** The live-property row for a name, if it is one. */
export function findLiveProp(name: QName): LiveProp | undefined {
  return BY_NAME.get(qkey(name.ns, name.name));
}

export function appliesTo(row: LiveProp, entry: Pick<Entry, "isDir">): boolean {
  return entry.isDir ? row.folders : row.files;
}

/** Inner XML of a live property for this entry; undefined when it does not exist here. */
export function renderLiveProp(row: LiveProp, ctx: PropContext): string | undefined {
  return appliesTo(row, ctx.entry) ? row.render(ctx) : undefined;
}

/** The live rows an entry has: all that apply (propname), or the allprop subset. */
export function livePropsFor(
  entry: Pick<Entry, "isDir">,
  which: "allprop" | "propname",
): LiveProp[] {
  return LIVE_PROPS.filter((row) => appliesTo(row, entry) && (which === "propname" || row.allprop));
}
