/**
 * Replaying recorded client sequences (Finder, Windows Explorer) over the raw client of
 * http-raw.ts: a namespace-aware reading of 207 bodies, and deterministic bodies to upload.
 */
import { SaxesParser } from "saxes";

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
