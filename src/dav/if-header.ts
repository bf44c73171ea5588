/**
 * The WebDAV `If` request header (RFC 4918 §10.4): parsing and evaluation.
 *
 *   If           = ( 1*No-tag-list | 1*Tagged-list )
 *   No-tag-list  = List
 *   Tagged-list  = Resource-Tag 1*List
 *   List         = "(" 1*Condition ")"
 *   Condition    = ["Not"] ( State-token | "[" entity-tag "]" )
 *
 * Several lists are alternatives (OR); the conditions of one list must all hold (AND). This module
 * knows neither locks nor the drive: the caller supplies each resource's state through a resolver,
 * so the same code serves PUT, DELETE, MOVE, LOCK refresh and the rest.
 */

/** The state token that no resource ever has: `(Not <DAV:no-lock>)` is always true. */
export const NO_LOCK = "DAV:no-lock";

export type IfCondition =
  | { readonly kind: "token"; readonly not: boolean; readonly token: string }
  /** `etag` is kept as sent, quotes and any `W/` prefix included, e.g. `"abc"` or `W/"abc"`. */
  | { readonly kind: "etag"; readonly not: boolean; readonly etag: string };

export interface IfList {
  /** The Resource-Tag as sent (absolute URL or absolute path); absent on an untagged list. */
  readonly resourceTag?: string;
  readonly conditions: readonly IfCondition[];
}

export interface IfHeader {
  readonly lists: readonly IfList[];
}

/** A malformed `If` header: the server answers 400 Bad Request. */
export class IfHeaderSyntaxError extends Error {
  constructor(
    message: string,
    /** Offset in the header value where parsing stopped. */
    readonly position: number,
  ) {
    super(`malformed If header at ${position}: ${message}`);
    this.name = "IfHeaderSyntaxError";
  }
}

/** What the evaluation needs to know about one resource. */
export interface IfResourceState {
  /** The current entity tag, quoted as in the ETag header; absent for collections without one. */
  readonly etag?: string;
  /** Tokens of the locks that cover the resource (its own and depth-infinity ancestors'). */
  readonly lockTokens: readonly string[];
}

/** Returns the state of a gateway path, or undefined when nothing is mapped there. */
export type IfResolver = (resourcePath: string) => IfResourceState | undefined;

/** Maps a Resource-Tag to a gateway path, or undefined when it names a resource elsewhere. */
export type IfTagMapper = (resourceTag: string) => string | undefined;

// ---------------------------------------------------------------------------------------------
// Parsing

/** Parses an `If` header value; throws IfHeaderSyntaxError when it does not follow §10.4.2. */
export function parseIfHeader(value: string): IfHeader {
  const scanner = new Scanner(value);
  scanner.skipSeparators();
  if (scanner.atEnd()) scanner.fail("empty header");
  // The grammar allows either only untagged or only tagged lists; the first one decides.
  const tagged = scanner.peek() === "<";
  const lists: IfList[] = [];
  while (!scanner.atEnd()) {
    if (tagged) {
      // One by one: spreading a tag's lists into push() overflows the stack when there are many.
      for (const list of readTaggedLists(scanner)) lists.push(list);
    } else lists.push(readUntaggedList(scanner));
    scanner.skipSeparators();
  }
  return { lists };
}

function readUntaggedList(scanner: Scanner): IfList {
  if (scanner.peek() === "<") scanner.fail("a resource tag cannot follow untagged lists");
  return { conditions: readList(scanner) };
}

function readTaggedLists(scanner: Scanner): IfList[] {
  if (scanner.peek() !== "<") scanner.fail("an untagged list cannot follow a resource tag list");
  const resourceTag = readAngled(scanner, "resource tag");
  const lists: IfList[] = [];
  do {
    scanner.skipSpace();
    lists.push({ resourceTag, conditions: readList(scanner) });
    scanner.skipSpace();
  } while (scanner.peek() === "(");
  return lists;
}

function readList(scanner: Scanner): IfCondition[] {
  scanner.expect("(");
  const conditions: IfCondition[] = [];
  for (;;) {
    scanner.skipSpace();
    if (scanner.peek() === ")") break;
    if (scanner.atEnd()) scanner.fail("unterminated list");
    conditions.push(readCondition(scanner));
  }
  if (conditions.length === 0) scanner.fail("empty list");
  scanner.expect(")");
  return conditions;
}

function readCondition(scanner: Scanner): IfCondition {
  const not = scanner.takeWord("Not");
  if (not) scanner.skipSpace();
  const next = scanner.peek();
  if (next === "<") {
    const token = readAngled(scanner, "state token");
    // A Coded-URL holds an absolute URI, so it must start with a scheme.
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:/.test(token)) scanner.fail(`state token without a scheme`);
    return { kind: "token", not, token };
  }
  if (next === "[") return { kind: "etag", not, etag: readBracketedEtag(scanner) };
  return scanner.fail(`expected a state token or an entity tag`);
}

/** Reads `<...>`: a Coded-URL or a Resource-Tag. Neither may hold whitespace or angle brackets. */
function readAngled(scanner: Scanner, what: string): string {
  scanner.expect("<");
  const start = scanner.pos;
  while (!scanner.atEnd() && !/[<>\s]/.test(scanner.peek() ?? "")) scanner.pos++;
  const text = scanner.text.slice(start, scanner.pos);
  if (scanner.peek() !== ">") scanner.fail(`unterminated ${what}`);
  if (text === "") scanner.fail(`empty ${what}`);
  scanner.expect(">");
  return text;
}

/** Reads `[ entity-tag ]`; the quoted string may hold spaces, commas, brackets and escapes. */
function readBracketedEtag(scanner: Scanner): string {
  scanner.expect("[");
  scanner.skipSpace();
  const start = scanner.pos;
  if (scanner.text.startsWith("W/", scanner.pos)) scanner.pos += 2;
  scanner.expect('"');
  for (;;) {
    const ch = scanner.peek();
    if (ch === undefined) scanner.fail("unterminated entity tag");
    scanner.pos++;
    if (ch === '"') break;
    if (ch === "\\") scanner.pos++; // quoted-pair: the next character is literal
  }
  const etag = scanner.text.slice(start, scanner.pos);
  scanner.skipSpace();
  scanner.expect("]");
  return etag;
}

class Scanner {
  pos = 0;

  constructor(readonly text: string) {}

  atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  peek(): string | undefined {
    return this.text[this.pos];
  }

  skipSpace(): void {
    while (/[ \t\r\n]/.test(this.peek() ?? "")) this.pos++;
  }

  /** Between lists commas are tolerated too: Node joins repeated `If` headers with ", ". */
  skipSeparators(): void {
    while (/[ \t\r\n,]/.test(this.peek() ?? "")) this.pos++;
  }

  expect(ch: string): void {
    if (this.peek() !== ch) this.fail(`expected '${ch}'`);
    this.pos++;
  }

  /** Consumes `word` (case-insensitive, as ABNF literals are) when a delimiter follows it. */
  takeWord(word: string): boolean {
    const candidate = this.text.slice(this.pos, this.pos + word.length);
    const after = this.text[this.pos + word.length] ?? "";
    if (candidate.toLowerCase() !== word.toLowerCase() || !/[ \t\r\n<[]/.test(after)) return false;
    this.pos += word.length;
    return true;
  }

  fail(message: string): never {
    throw new IfHeaderSyntaxError(message, this.pos);
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/**
 * True when at least one list holds (§10.4.3). An untagged list applies to `requestPath`, a tagged
 * one to the path `mapTag` gives for its tag; a list whose tag maps nowhere (another host, outside
 * the mount) cannot hold. Every list is evaluated, whatever resource it names (RFC 4918 dropped
 * RFC 2518's rule that only lists for the Request-URI count).
 */
export function evaluateIf(
  header: IfHeader,
  resolve: IfResolver,
  requestPath: string,
  mapTag: IfTagMapper = tagToPath,
): boolean {
  const states = new Map<string, IfResourceState | undefined>();
  const stateOf = (path: string): IfResourceState | undefined => {
    if (!states.has(path)) states.set(path, resolve(path));
    return states.get(path);
  };
  return header.lists.some((list) => {
    const path = listPath(list, requestPath, mapTag);
    if (path === undefined) return false;
    const state = stateOf(path);
    return list.conditions.every((condition) => conditionHolds(condition, state));
  });
}

/** The distinct gateway paths the header names, so a caller can fetch their state up front. */
export function ifResourcePaths(
  header: IfHeader,
  requestPath: string,
  mapTag: IfTagMapper = tagToPath,
): string[] {
  const paths = new Set<string>();
  for (const list of header.lists) {
    const path = listPath(list, requestPath, mapTag);
    if (path !== undefined) paths.add(path);
  }
  return [...paths];
}

/**
 * Every state token outside a `Not`, without duplicates or `DAV:no-lock`. §10.4.1: a token that
 * appears in the header has been submitted, whichever list it is in; these are the tokens that let
 * the request write to resources their locks protect.
 */
export function submittedTokens(header: IfHeader): string[] {
  const tokens = new Set<string>();
  for (const list of header.lists) {
    for (const condition of list.conditions) {
      if (condition.kind === "token" && !condition.not && condition.token !== NO_LOCK) {
        tokens.add(condition.token);
      }
    }
  }
  return [...tokens];
}

/**
 * The default tag mapper: the path of an absolute URL (any host) or an absolute path, with the
 * query and any trailing slash removed. It does not percent-decode or strip a mount prefix; a
 * gateway that needs either passes its own mapper.
 */
export function tagToPath(resourceTag: string): string | undefined {
  let path: string;
  if (resourceTag.startsWith("/")) {
    path = resourceTag.replace(/[?#].*$/s, "");
  } else {
    try {
      path = new URL(resourceTag).pathname;
    } catch {
      return undefined;
    }
  }
  const trimmed = path.replace(/\/+$/, "");
  return trimmed === "" ? "/" : trimmed;
}

function listPath(list: IfList, requestPath: string, mapTag: IfTagMapper): string | undefined {
  return list.resourceTag === undefined ? requestPath : mapTag(list.resourceTag);
}

/** An unmapped resource has no etag and no locks, so only `Not` conditions hold on it (§10.4.4). */
function conditionHolds(condition: IfCondition, state: IfResourceState | undefined): boolean {
  const matches =
    condition.kind === "token"
      ? condition.token !== NO_LOCK && (state?.lockTokens.includes(condition.token) ?? false)
      : etagMatches(condition.etag, state?.etag);
  return condition.not ? !matches : matches;
}

/** Strong comparison, as for If-Match: the If header guards writes, so weak tags never match. */
function etagMatches(submitted: string, current: string | undefined): boolean {
  if (current === undefined) return false;
  if (submitted.startsWith("W/") || current.startsWith("W/")) return false;
  return submitted === current;
}
