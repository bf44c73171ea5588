/**
 * Replaying recorded client sequences (Finder, Windows Explorer): a raw HTTP client that puts
 * headers and bodies on the wire exactly as given, a namespace-aware reading of 207 bodies,
 * for checking what reached the upstream through the emulator's API.
 */
import { request, type IncomingHttpHeaders } from "node:http";
import { SaxesParser } from "saxes";

// ---------------------------------------------------------------------------------------------
// Raw HTTP

export interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

export interface RawOptions {
  headers?: Record<string, string>;
  /** A body sent in one piece (add Content-Length yourself to send one). */
  body?: string | Buffer;
  /** A body written piece by piece (with `Transfer-Encoding: chunked` in `headers`). */
  chunks?: Buffer[];
}

/** One request with exactly the given headers (plus Host), on a connection of its own. */
export function raw(
  base: string,
  method: string,
  path: string,
  opts: RawOptions = {},
): Promise<RawReply> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: opts.headers ?? {},
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const body = Buffer.concat(parts);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            text: body.toString(),
          });
        });
      },
    );
    req.on("error", reject);
    if (opts.chunks) for (const c of opts.chunks) req.write(c);
    else if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// Multistatus

export interface Prop {
  ns: string;
  name: string;
  /** The text of the property and everything inside it. */
  text: string;
  /** `{ns}name` of the direct child elements. */
  children: string[];
}

export interface DavResponse {
  href: string;
  status?: number;
  propstats: { status: number; props: Prop[] }[];
}

export const DAV = "DAV:";

export function statusCode(line: string): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(line.trim());
  if (!m) throw new Error(`bad status line ${JSON.stringify(line)}`);
  return Number(m[1]);
}

/** A namespace-aware reading of a 207 body. */
export function parseMultistatus(xml: string): DavResponse[] {
  const parser = new SaxesParser({ xmlns: true });
  const stack: { ns: string; name: string; text: string }[] = [];
  const out: DavResponse[] = [];
  let response: DavResponse | undefined;
  let propstat: { status: number; props: Prop[] } | undefined;
  let prop: Prop | undefined;
  let propDepth = -1;
  parser.on("opentag", (tag) => {
    const el = { ns: tag.uri ?? "", name: tag.local ?? tag.name, text: "" };
    const parent = stack[stack.length - 1];
    const isDav = (n: string, e: { ns: string; name: string } | undefined) =>
      e?.ns === DAV && e.name === n;
    if (isDav("response", el)) out.push((response = { href: "", propstats: [] }));
    if (isDav("propstat", el) && response)
      response.propstats.push((propstat = { status: 0, props: [] }));
    if (prop && stack.length === propDepth + 1) prop.children.push(`{${el.ns}}${el.name}`);
    if (isDav("prop", parent) && propstat && !prop) {
      prop = { ns: el.ns, name: el.name, text: "", children: [] };
      propDepth = stack.length;
    }
    stack.push(el);
  });
  parser.on("text", (t) => {
    const top = stack[stack.length - 1];
    if (top) top.text += t;
    if (prop) prop.text += t;
  });
  parser.on("closetag", () => {
    const el = stack.pop()!;
    const parent = stack[stack.length - 1];
    if (prop && stack.length === propDepth) {
      propstat!.props.push(prop);
      prop = undefined;
    }
    if (el.ns === DAV && el.name === "href" && parent?.name === "response" && response) {
      response.href = el.text.trim();
    }
    if (el.ns === DAV && el.name === "status") {
      if (parent?.name === "propstat" && propstat) propstat.status = statusCode(el.text);
      else if (parent?.name === "response" && response) response.status = statusCode(el.text);
    }
  });
  parser.write(xml).close();
  return out;
}

/** The property of that name in a propstat of that status, if any. */
export function propIn(r: DavResponse, status: number, ns: string, name: string): Prop | undefined {
  return r.propstats
    .filter((ps) => ps.status === status)
    .flatMap((ps) => ps.props)
    .find((p) => p.ns === ns && p.name === name);
}

/** A deterministic body that is not the emulator's seed pattern. */
export function payload(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
