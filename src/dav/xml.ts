/**
 * All WebDAV XML in and out (the role of x/net/webdav's xml.go).
 *
 * In: request bodies are parsed with saxes because it is namespace-aware, small, streaming and
 * never expands DTDs: it reports a DOCTYPE as one event (which we refuse at once) and fails on
 * any entity other than the five predefined ones, so entity bombs and external entities cannot
 * get anywhere. Bodies are small (callers cap their size), so they are read into a tiny tree.
 *
 * Out: multistatus and lock bodies are built as strings, without a DOM, as lean as possible:
 * Windows Explorer drops a folder whose PROPFIND answer exceeds 1 MB.
 */
import { STATUS_CODES } from "node:http";
import { SaxesParser, type SaxesAttributeNS, type SaxesTagNS } from "saxes";
import type { DeadProp } from "../drive/types.js";

export const DAV_NS = "DAV:";
const XML_NS = "http://www.w3.org/XML/1998/namespace";
const XMLNS_NS = "http://www.w3.org/2000/xmlns/";
const XML_DECL = '<?xml version="1.0" encoding="utf-8"?>';
const MAX_DEPTH = 100;

/** A qualified XML name; `ns` is "" for an element in no namespace. */
export interface QName {
  ns: string;
  name: string;
}

/** A request body we will not process; the server answers 400. */
export class XmlRejected extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "XmlRejected";
  }
}

// ---------------------------------------------------------------------------------------------
// Escaping

// Characters XML 1.0 cannot carry at all, even as references: C0 controls other than tab, LF and
// CR, U+FFFE/U+FFFF and lone surrogates. A file name holding one must not break a whole listing.
const INVALID_CHARS =
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
/** Anything escapeXml would change; most names hold none, and one test is cheaper than two replaces. */
const TEXT_CHANGES =
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  /[&<>\u0000-\u0008\u000B-\u001F\uD800-\uDFFF\uFFFE\uFFFF]/;
const TEXT_SPECIALS = /[&<>\r]/g;
const ATTR_SPECIALS = /[&<>"\t\n\r]/g;
const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  // Written as references so that parsers do not normalise them away (CR in text, all three in
  // attribute values).
  "\t": "&#9;",
  "\n": "&#10;",
  "\r": "&#13;",
};

function replaceInvalid(text: string): string {
  INVALID_CHARS.lastIndex = 0;
  return INVALID_CHARS.test(text) ? text.replace(INVALID_CHARS, "\uFFFD") : text;
}

const escapeChar = (ch: string): string => ESCAPES[ch] ?? ch;

/** Escapes character data; characters XML cannot carry become U+FFFD. */
export function escapeXml(text: string): string {
  if (!TEXT_CHANGES.test(text)) return text;
  return replaceInvalid(text).replace(TEXT_SPECIALS, escapeChar);
}

/** Escapes an attribute value for double quotes. */
export function escapeAttr(text: string): string {
  return replaceInvalid(text).replace(ATTR_SPECIALS, escapeChar);
}

// ---------------------------------------------------------------------------------------------
// Parsing into a small tree

interface XElement {
  kind: "element";
  uri: string;
  local: string;
  prefix: string;
  /** Namespace declarations written on this element (prefix "" is the default namespace). */
  decls: Record<string, string>;
  /** Attributes other than namespace declarations, in document order. */
  attrs: SaxesAttributeNS[];
  /** xml:lang in scope, inherited from ancestors; undefined when none. */
  lang: string | undefined;
  children: XNode[];
}

type XNode =
  | XElement
  | { kind: "text"; text: string }
  | { kind: "comment"; text: string }
  | { kind: "pi"; target: string; body: string };

/** Parses a whole document; anything but plain, well-formed, namespace-valid XML is rejected. */
function parseDocument(body: string): XElement {
  const parser = new SaxesParser({ xmlns: true, position: false });
  const stack: XElement[] = [];
  let root: XElement | undefined;

  const append = (node: XNode): void => {
    const parent = stack[stack.length - 1];
    if (parent === undefined) return; // whitespace, comments and PIs around the root
    const last = parent.children[parent.children.length - 1];
    if (node.kind === "text" && last?.kind === "text") last.text += node.text;
    else parent.children.push(node);
  };

  parser.on("doctype", () => {
    // Refused before anything in it is looked at: DTDs are where entity attacks live.
    throw new XmlRejected("DTDs are not allowed");
  });
  parser.on("opentag", (tag) => {
    // Real bodies are a few levels deep; a deep one would only exhaust the recursive writer.
    if (stack.length >= MAX_DEPTH) throw new XmlRejected("XML nested too deeply");
    const element = toElement(tag, stack[stack.length - 1]?.lang);
    append(element);
    stack.push(element);
    root ??= element;
  });
  parser.on("closetag", () => void stack.pop());
  parser.on("text", (text) => append({ kind: "text", text }));
  parser.on("cdata", (text) => append({ kind: "text", text }));
  parser.on("comment", (text) => append({ kind: "comment", text }));
  parser.on("processinginstruction", (pi) =>
    append({ kind: "pi", target: pi.target, body: pi.body }),
  );

  try {
    parser.write(body.startsWith("\uFEFF") ? body.slice(1) : body).close();
  } catch (error) {
    if (error instanceof XmlRejected) throw error;
    throw new XmlRejected("malformed XML", { cause: error });
  }
  if (root === undefined) throw new XmlRejected("no root element");
  return root;
}

function toElement(tag: SaxesTagNS, inheritedLang: string | undefined): XElement {
  const attrs: SaxesAttributeNS[] = [];
  let lang = inheritedLang;
  for (const attr of Object.values(tag.attributes)) {
    if (attr.uri === XMLNS_NS) continue; // kept in `decls`
    if (attr.uri === XML_NS && attr.local === "lang") lang = attr.value;
    attrs.push(attr);
  }
  return {
    kind: "element",
    uri: tag.uri,
    local: tag.local,
    prefix: tag.prefix,
    decls: { ...tag.ns },
    attrs,
    lang,
    children: [],
  };
}

function isDav(node: XElement, local: string): boolean {
  return node.uri === DAV_NS && node.local === local;
}

/** Child elements of a structural element; stray text there means a malformed request. */
function elementChildren(node: XElement): XElement[] {
  const out: XElement[] = [];
  for (const child of node.children) {
    if (child.kind === "element") out.push(child);
    else if (child.kind === "text" && child.text.trim() !== "") {
      throw new XmlRejected(`unexpected text in ${node.local}`);
    }
  }
  return out;
}

function parseRoot(body: string, local: string): XElement {
  const root = parseDocument(body);
  if (!isDav(root, local)) throw new XmlRejected(`expected DAV:${local}`);
  return root;
}

const isBlank = (body: string): boolean => body.replace(/^\uFEFF/, "").trim() === "";

const qnameOf = (node: XElement): QName => ({ ns: node.uri, name: node.local });

/** The names listed in a DAV:prop or DAV:include, without repeats, in document order. */
function propNames(node: XElement): QName[] {
  const seen = new Set<string>();
  const out: QName[] = [];
  for (const child of elementChildren(node)) {
    const key = `${child.uri} ${child.local}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(qnameOf(child));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Re-serialising inner XML so that it stands on its own

/** Namespace bindings written so far on the way down; starts with no default namespace. */
type Scope = ReadonlyMap<string, string>;
const EMPTY_SCOPE: Scope = new Map([["", ""]]);

/**
 * The inner XML of an element, with every prefix it uses declared inside it, so the fragment
 * can be stored and later dropped under any element that does not set a default namespace.
 */
function innerXml(node: XElement): string {
  return node.children.map((child) => serializeNode(child, EMPTY_SCOPE)).join("");
}

function serializeNode(node: XNode, scope: Scope): string {
  switch (node.kind) {
    case "text":
      return escapeXml(node.text);
    case "comment":
      return `<!--${node.text}-->`;
    case "pi":
      return `<?${node.target}${node.body === "" ? "" : " " + node.body}?>`;
    case "element":
      return serializeElement(node, scope);
  }
}

function serializeElement(node: XElement, outer: Scope): string {
  const scope = new Map(outer);
  let decls = "";
  const bind = (prefix: string, uri: string): void => {
    if (prefix === "xml" || scope.get(prefix) === uri) return;
    scope.set(prefix, uri);
    decls +=
      prefix === "" ? ` xmlns="${escapeAttr(uri)}"` : ` xmlns:${prefix}="${escapeAttr(uri)}"`;
  };
  // The author's own declarations first: QNames inside values may rely on them.
  for (const [prefix, uri] of Object.entries(node.decls)) bind(prefix, uri);
  // Then whatever was inherited from outside the fragment.
  bind(node.prefix, node.uri);
  for (const attr of node.attrs) if (attr.prefix !== "") bind(attr.prefix, attr.uri);

  const qname = node.prefix === "" ? node.local : `${node.prefix}:${node.local}`;
  const attrs = node.attrs.map((a) => ` ${a.name}="${escapeAttr(a.value)}"`).join("");
  if (node.children.length === 0) return `<${qname}${decls}${attrs}/>`;
  const content = node.children.map((child) => serializeNode(child, scope)).join("");
  return `<${qname}${decls}${attrs}>${content}</${qname}>`;
}

// ---------------------------------------------------------------------------------------------
// Request bodies

export type PropfindRequest =
  { kind: "allprop"; include?: QName[] } | { kind: "propname" } | { kind: "prop"; props: QName[] };

/** PROPFIND body (RFC 4918 §14.20); an empty body means allprop. */
export function parsePropfind(body: string): PropfindRequest {
  if (isBlank(body)) return { kind: "allprop" };
  const root = parseRoot(body, "propfind");
  let allprop = false;
  let propname = false;
  let props: QName[] | undefined;
  let include: QName[] | undefined;
  for (const child of elementChildren(root)) {
    if (isDav(child, "allprop")) allprop = true;
    else if (isDav(child, "propname")) propname = true;
    else if (isDav(child, "prop")) props = [...(props ?? []), ...propNames(child)];
    else if (isDav(child, "include")) include = [...(include ?? []), ...propNames(child)];
    // Unknown elements are ignored (RFC 4918 §17).
  }
  const chosen = Number(allprop) + Number(propname) + Number(props !== undefined);
  if (chosen !== 1) throw new XmlRejected("propfind needs one of allprop, propname, prop");
  if (include !== undefined && !allprop) throw new XmlRejected("include without allprop");
  if (allprop) return include === undefined ? { kind: "allprop" } : { kind: "allprop", include };
  if (propname) return { kind: "propname" };
  return { kind: "prop", props: props ?? [] };
}

export type ProppatchOp = { op: "set"; prop: DeadProp } | { op: "remove"; name: QName };

/** PROPPATCH body (RFC 4918 §14.19): the operations in document order. */
export function parseProppatch(body: string): ProppatchOp[] {
  if (isBlank(body)) throw new XmlRejected("empty propertyupdate");
  const root = parseRoot(body, "propertyupdate");
  const ops: ProppatchOp[] = [];
  let instructions = 0;
  for (const child of elementChildren(root)) {
    const isSet = isDav(child, "set");
    if (!isSet && !isDav(child, "remove")) continue;
    instructions++;
    const propElements = elementChildren(child).filter((e) => isDav(e, "prop"));
    if (propElements.length === 0) throw new XmlRejected(`${child.local} without prop`);
    for (const prop of propElements) {
      for (const el of elementChildren(prop)) ops.push(isSet ? setOp(el) : removeOp(el));
    }
  }
  if (instructions === 0) throw new XmlRejected("propertyupdate needs set or remove");
  return ops;
}

function setOp(el: XElement): ProppatchOp {
  const prop: DeadProp = { ns: el.uri, name: el.local, innerXml: innerXml(el) };
  // xml:lang="" explicitly means "no language".
  if (el.lang !== undefined && el.lang !== "") prop.lang = el.lang;
  return { op: "set", prop };
}

const removeOp = (el: XElement): ProppatchOp => ({ op: "remove", name: qnameOf(el) });

export interface ParsedLockinfo {
  scope: "exclusive" | "shared";
  type: "write";
  /** The owner element's inner XML, self-contained; "" when the client sent none. */
  ownerXml: string;
}

/** LOCK body (RFC 4918 §14.11); undefined for an empty body, which asks for a refresh. */
export function parseLockinfo(body: string): ParsedLockinfo | undefined {
  if (isBlank(body)) return undefined;
  const root = parseRoot(body, "lockinfo");
  let scope: ParsedLockinfo["scope"] | undefined;
  let write = false;
  let ownerXml = "";
  for (const child of elementChildren(root)) {
    if (isDav(child, "lockscope")) scope = lockScope(child);
    else if (isDav(child, "locktype"))
      write = elementChildren(child).some((e) => isDav(e, "write"));
    else if (isDav(child, "owner")) ownerXml = innerXml(child);
  }
  if (scope === undefined) throw new XmlRejected("lockinfo needs lockscope");
  if (!write) throw new XmlRejected("only write locks exist");
  return { scope, type: "write", ownerXml };
}

function lockScope(node: XElement): ParsedLockinfo["scope"] {
  const kinds = elementChildren(node).filter((e) => isDav(e, "exclusive") || isDav(e, "shared"));
  const only = kinds.length === 1 ? kinds[0] : undefined;
  if (only === undefined) throw new XmlRejected("lockscope needs exclusive or shared");
  return only.local === "exclusive" ? "exclusive" : "shared";
}

// ---------------------------------------------------------------------------------------------
// Response bodies

/** A property to write: its name, and its inner XML (self-contained), empty for a bare name. */
export interface PropValue {
  ns: string;
  name: string;
  innerXml?: string;
  lang?: string;
}

export interface PropStat {
  status: number;
  props: readonly PropValue[];
  /** Local name of a DAV: precondition (RFC 4918 §16), e.g. "cannot-modify-protected-property". */
  error?: string;
}

export function statusLine(status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`.trimEnd();
}

function errorXml(propstat: PropStat): string {
  return propstat.error === undefined ? "" : `<D:error><D:${propstat.error}/></D:error>`;
}

/** Responses held as strings before they are encoded to bytes. */
const ENCODE_EVERY = 256;

/**
 * Builds a 207 body. Properties of foreign namespaces get a prefix declared on their own
 * element, so stored inner XML (which declares what it uses) drops in unchanged.
 */
export class MultistatusWriter {
  private chunks: string[] = [`${XML_DECL}<D:multistatus xmlns:D="DAV:">`];
  /**
   * Earlier chunks already encoded: a large listing is turned into bytes every few hundred
   * responses, so its strings die young instead of being carried through garbage collections
   * until the end (in the profile of a 10,000-entry PROPFIND, GC was the largest single cost).
   */
  private encoded: Buffer[] = [];
  private readonly prefixes = new Map<string, string>();

  /** A resource with one propstat per status. */
  propstats(href: string, propstats: readonly PropStat[]): this {
    let out = `<D:response><D:href>${escapeXml(href)}</D:href>`;
    for (const propstat of propstats) {
      out += "<D:propstat><D:prop>";
      for (const prop of propstat.props) out += this.propXml(prop);
      out += `</D:prop><D:status>${statusLine(propstat.status)}</D:status>${errorXml(propstat)}</D:propstat>`;
    }
    this.chunks.push(`${out}</D:response>`);
    if (this.chunks.length >= ENCODE_EVERY) this.encode();
    return this;
  }

  /** The whole body, closed. */
  end(): string {
    return this.endBytes().toString("utf8");
  }

  /** The whole body, closed, as UTF-8 (what goes on the wire, without another copy). */
  endBytes(): Buffer {
    this.chunks.push("</D:multistatus>");
    this.encode();
    return this.encoded.length === 1 ? this.encoded[0]! : Buffer.concat(this.encoded);
  }

  private encode(): void {
    if (this.chunks.length === 0) return;
    this.encoded.push(Buffer.from(this.chunks.join(""), "utf8"));
    this.chunks = [];
  }

  private propXml(prop: PropValue): string {
    const inner = prop.innerXml ?? "";
    if (prop.ns === DAV_NS && prop.lang === undefined) {
      const tags = davTags(prop.name);
      return inner === "" ? tags.empty : tags.open + inner + tags.close;
    }
    let open: string;
    let close: string;
    if (prop.ns === DAV_NS) {
      open = close = `D:${prop.name}`;
    } else if (prop.ns === "") {
      open = `${prop.name} xmlns=""`;
      close = prop.name;
    } else {
      const prefix = this.prefixOf(prop.ns);
      open = `${prefix}:${prop.name} xmlns:${prefix}="${escapeAttr(prop.ns)}"`;
      close = `${prefix}:${prop.name}`;
    }
    if (prop.lang !== undefined) open += ` xml:lang="${escapeAttr(prop.lang)}"`;
    return inner === "" ? `<${open}/>` : `<${open}>${inner}</${close}>`;
  }

  private prefixOf(ns: string): string {
    let prefix = this.prefixes.get(ns);
    if (prefix === undefined) {
      prefix = `ns${this.prefixes.size + 1}`;
      this.prefixes.set(ns, prefix);
    }
    return prefix;
  }
}

/**
 * The tags of DAV: properties by name, written once: a listing writes the same few thousands of
 * times. Bounded like any table filled from requests, by starting over when full.
 */
const DAV_TAGS = new Map<string, { open: string; close: string; empty: string }>();
const MAX_DAV_TAGS = 1000;

function davTags(name: string): { open: string; close: string; empty: string } {
  let tags = DAV_TAGS.get(name);
  if (tags === undefined) {
    if (DAV_TAGS.size >= MAX_DAV_TAGS) DAV_TAGS.clear();
    tags = { open: `<D:${name}>`, close: `</D:${name}>`, empty: `<D:${name}/>` };
    DAV_TAGS.set(name, tags);
  }
  return tags;
}

/** An active lock as lockdiscovery shows it. */
export interface ActiveLockXml {
  scope: "exclusive" | "shared";
  depth: 0 | "infinity";
  /** Owner inner XML as the client sent it (see parseLockinfo). */
  ownerXml: string;
  /** Seconds left; undefined or Infinity for a lock without timeout. */
  timeoutSeconds?: number;
  /** The lock token URI, e.g. "urn:uuid:…". */
  token: string;
  /** Encoded href of the lock root. */
  rootHref: string;
}

function timeoutValue(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return "Infinite";
  return `Second-${Math.max(0, Math.floor(seconds))}`;
}

/** The content of DAV:lockdiscovery: one activelock per lock. */
export function lockDiscoveryXml(locks: readonly ActiveLockXml[]): string {
  return locks
    .map(
      (lock) =>
        `<D:activelock><D:lockscope><D:${lock.scope}/></D:lockscope>` +
        `<D:locktype><D:write/></D:locktype>` +
        `<D:depth>${lock.depth === 0 ? "0" : "infinity"}</D:depth>` +
        (lock.ownerXml === "" ? "" : `<D:owner>${lock.ownerXml}</D:owner>`) +
        `<D:timeout>${timeoutValue(lock.timeoutSeconds)}</D:timeout>` +
        `<D:locktoken><D:href>${escapeXml(lock.token)}</D:href></D:locktoken>` +
        `<D:lockroot><D:href>${escapeXml(lock.rootHref)}</D:href></D:lockroot></D:activelock>`,
    )
    .join("");
}

const SUPPORTED_LOCK =
  "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>" +
  "<D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>";

/** The content of DAV:supportedlock: exclusive and shared write locks. */
export function supportedLockXml(): string {
  return SUPPORTED_LOCK;
}

/** The body of a successful LOCK (RFC 4918 §9.10.1): the new or refreshed lock. */
export function lockResponseXml(lock: ActiveLockXml): string {
  return (
    `${XML_DECL}<D:prop xmlns:D="DAV:"><D:lockdiscovery>` +
    `${lockDiscoveryXml([lock])}</D:lockdiscovery></D:prop>`
  );
}

/**
 * A precondition/postcondition body (RFC 4918 §16), e.g. `errorBodyXml("propfind-finite-depth")`.
 * `hrefs` fill conditions that name resources, such as lock-token-submitted.
 */
export function errorBodyXml(condition: string, hrefs: readonly string[] = []): string {
  const inner = hrefs.map((h) => `<D:href>${escapeXml(h)}</D:href>`).join("");
  const element = inner === "" ? `<D:${condition}/>` : `<D:${condition}>${inner}</D:${condition}>`;
  return `${XML_DECL}<D:error xmlns:D="DAV:">${element}</D:error>`;
}
