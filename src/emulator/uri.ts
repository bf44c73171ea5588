import { errors } from "./errors.js";

/**
 * `cloudreve://` URIs as the real server reads them (pkg/filemanager/fs/uri.go on top of Go's
 * url.Parse): lowercased scheme and filesystem, percent-decoded and cleaned path, one trailing
 * slash trimmed, `?` starting search parameters, `#` a fragment.
 */
export interface CloudreveUri {
  /** The filesystem (URI host), lowercased: my, trash, share, shared_with_me. */
  fs: string;
  /** Userinfo name (`<uid>@my`), undefined when absent. */
  user: string | undefined;
  /** Decoded, cleaned path elements; the root has none. */
  elements: string[];
  /** Search parameters; null when the URI has no query. */
  search: URLSearchParams | null;
  /** The URI as Go re-serialises it: the key of per-item batch errors. */
  key: string;
}

const hex = (char: number) =>
  (char >= 0x30 && char <= 0x39) ||
  (char >= 0x41 && char <= 0x46) ||
  (char >= 0x61 && char <= 0x66);

/** Go's url unescape: `%` must be followed by two hex digits; `+` stays a plus in paths. */
function unescape(s: string): string {
  if (!s.includes("%")) return s;
  const bytes: number[] = [];
  const raw = Buffer.from(s, "utf8");
  for (let i = 0; i < raw.length; i++) {
    const char = raw[i]!;
    if (char === 0x25) {
      if (i + 2 >= raw.length || !hex(raw[i + 1]!) || !hex(raw[i + 2]!)) throw errors.unknownUri();
      bytes.push(parseInt(String.fromCharCode(raw[i + 1]!, raw[i + 2]!), 16));
      i += 2;
    } else {
      bytes.push(char);
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

// Characters Go leaves alone when escaping a path (shouldEscape, encodePath mode).
const PATH_SAFE = /[A-Za-z0-9\-_.~$&+,/:;=@]/;
// Characters Go accepts as already-encoded in a raw path (validEncoded).
const VALID_ENCODED = /^[A-Za-z0-9\-_.~!$&'()*+,;=:@[\]/%]*$/;

function goEscapePath(p: string): string {
  let out = "";
  for (const ch of p) {
    if (PATH_SAFE.test(ch)) out += ch;
    else
      for (const b of Buffer.from(ch, "utf8"))
        out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Go's path.Clean, for absolute paths. */
function cleanElements(decoded: string): string[] {
  const out: string[] = [];
  for (const seg of decoded.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  return out;
}

export function parseUri(input: string): CloudreveUri {
  // Go's url.Parse refuses control characters.
  for (const ch of input) if (ch < " " || ch === "\x7f") throw errors.unknownUri();
  const hash = input.indexOf("#");
  const beforeFragment = hash >= 0 ? input.slice(0, hash) : input;
  if (hash >= 0) unescape(input.slice(hash + 1));
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(beforeFragment);
  if (!scheme || scheme[1]!.toLowerCase() !== "cloudreve") throw errors.unknownUri();
  let rest = beforeFragment.slice(scheme[0].length);
  let search: URLSearchParams | null = null;
  const q = rest.indexOf("?");
  let rawQuery = "";
  if (q >= 0) {
    rawQuery = rest.slice(q + 1);
    rest = rest.slice(0, q);
    if (rawQuery !== "") search = new URLSearchParams(rawQuery);
  }
  if (!rest.startsWith("//")) throw errors.unknownUri();
  rest = rest.slice(2);
  const slash = rest.indexOf("/");
  const authority = slash >= 0 ? rest.slice(0, slash) : rest;
  const rawPath = slash >= 0 ? rest.slice(slash) : "";
  const at = authority.lastIndexOf("@");
  const userinfo = at >= 0 ? authority.slice(0, at) : undefined;
  const host = unescape(at >= 0 ? authority.slice(at + 1) : authority);
  const user = userinfo === undefined ? undefined : unescape(userinfo.split(":")[0]!);
  const path = unescape(rawPath);
  const trimmed = path.endsWith("/") ? path.slice(0, -1) : path;

  // Go keeps the raw path when it is a valid encoding of the (trimmed) path, else re-escapes.
  const escaped =
    VALID_ENCODED.test(rawPath) && safeUnescape(rawPath) === trimmed
      ? rawPath
      : goEscapePath(trimmed);
  const key =
    `cloudreve://${userinfo !== undefined ? userinfo + "@" : ""}${authority.slice(at + 1)}${escaped}` +
    (rawQuery ? `?${rawQuery}` : "");

  return { fs: host.toLowerCase(), user, elements: cleanElements(trimmed), search, key };
}

function safeUnescape(s: string): string | undefined {
  try {
    return unescape(s);
  } catch {
    return undefined;
  }
}

/** The server's PathEscape mimics encodeURIComponent: only A-Z a-z 0-9 - _ . ~ ! * ' ( ) stay. */
export const escapeName = encodeURIComponent;

/** A URI as the server writes it back: the root keeps its trailing slash. */
export function formatUri(fs: string, elements: readonly string[]): string {
  return `cloudreve://${fs}/${elements.map(escapeName).join("/")}`;
}
