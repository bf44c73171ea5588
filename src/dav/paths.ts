import { hrefOf } from "./props.js";
import { HttpError } from "./status.js";

/**
 * Request paths to gateway paths. A URL path is split on "/" and each segment percent-decoded
 * once; segments that would mean something else upstream or on disk (`.`, `..`, NUL, `\`) are
 * refused here, before anything reaches the drive.
 */
export interface DavPath {
  /** "/" or "/a/b": decoded, no trailing slash. */
  path: string;
  /** The request named a collection (trailing slash). */
  slash: boolean;
}

export function decodePath(rawPath: string): DavPath {
  const segments: string[] = [];
  for (const raw of rawPath.split("/")) {
    if (raw === "") continue;
    let segment = raw;
    // Most segments have nothing encoded (and the HTTP parser lets no control character in).
    if (raw.includes("%")) {
      try {
        segment = decodeURIComponent(raw);
      } catch {
        throw new HttpError(400, "malformed percent-encoding in the path");
      }
    }
    if (segment === "." || segment === ".." || segment.includes("\0") || /[/\\]/.test(segment)) {
      throw new HttpError(400, `refused path segment ${JSON.stringify(segment)}`);
    }
    // UTF-8 takes at most three bytes per UTF-16 unit: only a long segment needs counting.
    if (segment.length > 85 && Buffer.byteLength(segment) > 255)
      throw new HttpError(400, "a path segment is longer than 255 bytes");
    segments.push(segment);
  }
  return { path: `/${segments.join("/")}`, slash: rawPath.endsWith("/") };
}

const CONTROL = /\p{Cc}/u;

/**
 * A request URL's path as a person reads it in the log: percent-decoded, without the query.
 * Control characters stay encoded, so that a name cannot forge log lines; a malformed encoding
 * is shown as sent.
 */
export function readablePath(url: string): string {
  const path = url.split("?", 1)[0]!;
  if (!path.includes("%") && !CONTROL.test(path)) return path;
  try {
    return decodeURIComponent(path).replace(/\p{Cc}/gu, encodeURIComponent);
  } catch {
    return path;
  }
}

/**
 * Where the drive's paths appear in URLs: under the base URL (`--base-url`), and seen from the
 * user's root folder (a user whose root is "/Family/kim" sees it as "/"). The WebDAV layer works
 * with drive paths; requests come in through `pathOf` and hrefs go out through `href`.
 */
export class UrlSpace {
  private readonly base: string;
  private readonly baseHref: string;

  constructor(
    base: string,
    /** The drive path the user sees as "/". */
    readonly root = "/",
  ) {
    this.base = decodePath(base).path;
    this.baseHref = this.base === "/" ? "" : hrefOf(this.base, false);
  }

  /** The drive path a URL path names; undefined when it lies outside the base URL. */
  pathOf(rawPath: string): DavPath | undefined {
    return this.place(decodePath(rawPath));
  }

  /** The drive path of a decoded URL path. */
  place({ path, slash }: DavPath): DavPath | undefined {
    let seen = path;
    if (this.base !== "/") {
      if (path !== this.base && !path.startsWith(`${this.base}/`)) return undefined;
      seen = path.slice(this.base.length) || "/";
    }
    if (this.root === "/") return { path: seen, slash };
    return { path: seen === "/" ? this.root : `${this.root}${seen}`, slash };
  }

  /** The href of a drive path; a path above the user's root (a lock's) shows as their root. */
  href(path: string, isDir: boolean): string {
    let seen = path;
    if (this.root !== "/") {
      seen = path.startsWith(`${this.root}/`) ? path.slice(this.root.length) : "/";
      if (seen === "/") isDir = true;
    }
    return `${this.baseHref}${hrefOf(seen, isDir)}`;
  }
}

/**
 * The Destination header of COPY/MOVE: an absolute URL on this server or an absolute path.
 * Another host → 502 (RFC 4918 §9.8.5: the server will not act as a proxy); `hostHeader` is
 * the authority the client addressed.
 */
export function destinationOf(header: string | undefined, hostHeader: string | undefined): DavPath {
  if (!header) throw new HttpError(400, "Destination header missing");
  let pathname: string;
  if (header.startsWith("/")) {
    pathname = header.split(/[?#]/)[0]!;
  } else {
    let url: URL;
    try {
      url = new URL(header);
    } catch {
      throw new HttpError(400, "Destination is not a URL");
    }
    if (hostHeader && !sameAuthority(url, hostHeader)) {
      throw new HttpError(502, "Destination is on another server");
    }
    // The path as written, not url.pathname: the URL parser resolves "%2e%2e" and ".." segments,
    // which would silently turn a refused path into another, valid one. The authority ends at a
    // backslash too, as the parser ends it; what the parser repairs into a URL with a host
    // ("http:/h/x", "http:///h/x") is refused rather than read with another path.
    const written = /^[a-z][a-z0-9+.-]*:\/\/[^/?#\\]+([^?#]*)/i.exec(header);
    if (!written) throw new HttpError(400, "Destination is not an absolute URL");
    pathname = written[1] || "/";
  }
  return decodePath(pathname);
}

const DEFAULT_PORTS: Record<string, string> = { "http:": "80", "https:": "443" };

/**
 * The URL names the authority of the Host header. The URL parser drops a default port that the
 * Host header may still carry: a client configured with `https://host:443/` sends it in both.
 */
function sameAuthority(url: URL, hostHeader: string): boolean {
  const host = url.host.toLowerCase();
  const claimed = hostHeader.toLowerCase();
  const defaultPort = DEFAULT_PORTS[url.protocol];
  return claimed === host || (defaultPort !== undefined && claimed === `${host}:${defaultPort}`);
}
