/**
 * Properties of the If header parser: headers generated from the RFC 4918 §10.4 grammar parse
 * back to what was generated, and no input makes it throw anything but its own syntax error.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  IfHeaderSyntaxError,
  NO_LOCK,
  parseIfHeader,
  type IfCondition,
  type IfHeader,
  type IfList,
} from "../../src/dav/if-header.js";

const NUM_RUNS = 300;

/** Optional linear white space, including an obsolete line fold. */
const ws = fc.constantFrom("", "", " ", "  ", "\t", " \t", "\r\n ");

const pctEncoded = fc.integer({ min: 0, max: 255 }).map(
  (byte) =>
    `%${byte
      .toString(16)
      .padStart(2, "0")
      .replace(/[a-f]/g, (c) => (byte % 2 === 0 ? c.toUpperCase() : c))}`,
);
/** URI characters (RFC 3986 unreserved, sub-delims, ":" "@" "/" "?"), and percent-escapes. */
const uriChars = (maxLength: number) =>
  fc
    .array(
      fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(..."abcXYZ019-._~!$&'()*+,;=:@/?") },
        { weight: 1, arbitrary: pctEncoded },
      ),
      { maxLength },
    )
    .map((parts) => parts.join(""));

/** A Coded-URL's absolute URI: lock tokens as servers issue them, DAV:no-lock, or any URI. */
const stateToken = fc.oneof(
  fc.uuid().map((id) => `opaquelocktoken:${id}`),
  fc.uuid().map((id) => `urn:uuid:${id}`),
  fc.constant(NO_LOCK),
  fc
    .tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9+.-]{0,6}$/), uriChars(16))
    .map(([scheme, rest]) => `${scheme}:${rest}`),
);

/**
 * An entity-tag as RFC 2616 defines it (which RFC 4918 cites): optional W/, then a quoted string
 * of qdtext and quoted-pairs. Brackets, parentheses, commas and spaces are all legal inside.
 */
const entityTag = fc
  .tuple(
    fc.boolean(),
    fc.array(
      fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom(..."aZ09 ,;()[]<>/=W-_é日") },
        { weight: 1, arbitrary: fc.constantFrom(...'"\\ab]').map((ch) => `\\${ch}`) },
      ),
      { maxLength: 12 },
    ),
  )
  .map(([weak, chars]) => `${weak ? "W/" : ""}"${chars.join("")}"`);

/** A Resource-Tag: an absolute URL, or an absolute path with percent-escapes and a query. */
const resourceTag = fc.oneof(
  fc.webUrl({ withQueryParameters: true, withFragments: false }),
  fc
    .tuple(
      fc.array(fc.string({ unit: "binary", minLength: 1, maxLength: 6 }), { maxLength: 4 }),
      fc.boolean(),
      fc.option(uriChars(8), { nil: undefined }),
    )
    .map(
      ([segments, slash, query]) =>
        `/${segments.map(encodeURIComponent).join("/")}${slash && segments.length ? "/" : ""}` +
        (query === undefined ? "" : `?${query}`),
    ),
);

interface Rendered<T> {
  value: T;
  text: string;
}

const condition: fc.Arbitrary<Rendered<IfCondition>> = fc
  .tuple(
    fc.boolean(),
    fc.mixedCase(fc.constant("Not")),
    ws,
    fc.oneof(
      stateToken.map((token) => ({ kind: "token" as const, token })),
      entityTag.map((etag) => ({ kind: "etag" as const, etag })),
    ),
    ws,
    ws,
  )
  .map(([not, word, afterNot, body, open, close]) => {
    const operand = body.kind === "token" ? `<${body.token}>` : `[${open}${body.etag}${close}]`;
    return {
      value: { ...body, not },
      text: not ? `${word}${afterNot}${operand}` : operand,
    };
  });

/** "(" 1*Condition ")", white space anywhere between the parts. */
const list = fc
  .tuple(fc.array(fc.tuple(ws, condition), { minLength: 1, maxLength: 4 }), ws)
  .map(([parts, end]) => ({
    conditions: parts.map(([, c]) => c.value),
    text: `(${parts.map(([space, c]) => space + c.text).join("")}${end})`,
  }));

/** Between lists: white space, and commas where a repeated header may have been joined. */
const joiner = fc.constantFrom("", " ", ", ", ",", " , ", "\t,\t");

const untaggedHeader: fc.Arbitrary<Rendered<IfHeader>> = fc
  .tuple(ws, fc.array(fc.tuple(joiner, list), { minLength: 1, maxLength: 4 }), ws)
  .map(([lead, lists, trail]) => ({
    value: { lists: lists.map(([, l]) => ({ conditions: l.conditions })) },
    text: lead + lists.map(([sep, l], i) => (i === 0 ? "" : sep) + l.text).join("") + trail,
  }));

const taggedHeader: fc.Arbitrary<Rendered<IfHeader>> = fc
  .tuple(
    ws,
    fc.array(
      fc.tuple(joiner, resourceTag, fc.array(fc.tuple(ws, list), { minLength: 1, maxLength: 3 })),
      { minLength: 1, maxLength: 3 },
    ),
    ws,
  )
  .map(([lead, groups, trail]) => ({
    value: {
      lists: groups.flatMap(([, tag, lists]) =>
        lists.map(([, l]) => ({ resourceTag: tag, conditions: l.conditions })),
      ),
    },
    text:
      lead +
      groups
        .map(
          ([sep, tag, lists], i) =>
            (i === 0 ? "" : sep) + `<${tag}>` + lists.map(([space, l]) => space + l.text).join(""),
        )
        .join("") +
      trail,
  }));

const ifHeader = fc.oneof(untaggedHeader, taggedHeader);

/** One canonical spelling of a parsed header, to check that parsing loses nothing. */
function render(header: IfHeader): string {
  const conditionText = (c: IfCondition) =>
    (c.not ? "Not " : "") + (c.kind === "token" ? `<${c.token}>` : `[${c.etag}]`);
  const listText = (l: IfList) => `(${l.conditions.map(conditionText).join(" ")})`;
  let out = "";
  let previousTag: string | undefined;
  for (const l of header.lists) {
    if (l.resourceTag !== undefined && l.resourceTag !== previousTag) out += ` <${l.resourceTag}>`;
    previousTag = l.resourceTag;
    out += ` ${listText(l)}`;
  }
  return out.trim();
}

/** Parses, or returns the syntax error; any other exception escapes and fails the property. */
function tryParse(value: string): IfHeader | IfHeaderSyntaxError {
  try {
    return parseIfHeader(value);
  } catch (err) {
    if (err instanceof IfHeaderSyntaxError) return err;
    throw err;
  }
}

/** What any successful parse must look like, whatever the input was. */
function expectWellFormed(header: IfHeader): void {
  expect(header.lists.length).toBeGreaterThan(0);
  const tagged = header.lists[0]!.resourceTag !== undefined;
  for (const l of header.lists) {
    expect(l.resourceTag !== undefined).toBe(tagged);
    if (l.resourceTag !== undefined) expect(l.resourceTag).toMatch(/^[^\s<>]+$/);
    expect(l.conditions.length).toBeGreaterThan(0);
    for (const c of l.conditions) {
      if (c.kind === "token") expect(c.token).toMatch(/^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>]*$/);
      else expect(c.etag).toMatch(/^(W\/)?"(?:[^"\\]|\\[^])*"$/);
    }
  }
}

/** Fragments of the grammar, so that random inputs get past the first character often. */
const grammarPiece = fc.oneof(
  fc.constantFrom("(", ")", "<", ">", "[", "]", '"', "\\", "W/", ",", " ", "\t", "\r\n"),
  fc.constantFrom("Not", "not ", "NOT<", "urn:x", "DAV:no-lock", "/a/b", "http://h/x", '"e"'),
  fc.string({ unit: "binary", maxLength: 3 }),
);
const noise = fc.array(grammarPiece, { maxLength: 40 }).map((parts) => parts.join(""));

describe("parseIfHeader properties", () => {
  it("parses every header the grammar generates back to what was generated", () => {
    fc.assert(
      fc.property(ifHeader, ({ value, text }) => {
        expect(parseIfHeader(text)).toEqual(value);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("reads its own canonical rendering back unchanged", () => {
    fc.assert(
      fc.property(ifHeader, ({ value }) => {
        expect(parseIfHeader(render(value))).toEqual(value);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("refuses a tagged list after untagged ones", () => {
    fc.assert(
      fc.property(untaggedHeader, joiner, taggedHeader, (untagged, sep, tagged) => {
        expect(tryParse(`${untagged.text}${sep}${tagged.text}`)).toBeInstanceOf(
          IfHeaderSyntaxError,
        );
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("throws only its syntax error on arbitrary input, and what it accepts is well-formed", () => {
    fc.assert(
      fc.property(fc.oneof(noise, fc.string({ unit: "binary", maxLength: 60 })), (text) => {
        const result = tryParse(text);
        if (result instanceof IfHeaderSyntaxError) {
          expect(result.position).toBeGreaterThanOrEqual(0);
          expect(result.position).toBeLessThanOrEqual(text.length);
          return;
        }
        expectWellFormed(result);
        expect(parseIfHeader(render(result))).toEqual(result);
      }),
      { numRuns: 1000 },
    );
  });

  it("survives any single-character damage to a valid header", () => {
    const damaged = fc
      .tuple(ifHeader, fc.nat(), fc.constantFrom("delete", "insert", "replace"), grammarPiece)
      .map(([{ text }, at, how, piece]) => {
        const i = at % (text.length + 1);
        if (how === "delete") return text.slice(0, i) + text.slice(i + 1);
        if (how === "insert") return text.slice(0, i) + piece + text.slice(i);
        return text.slice(0, i) + piece + text.slice(i + 1);
      });
    fc.assert(
      fc.property(damaged, (text) => {
        const result = tryParse(text);
        if (!(result instanceof IfHeaderSyntaxError)) {
          expectWellFormed(result);
          expect(parseIfHeader(render(result))).toEqual(result);
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("stays linear on long repetitive input (a hang would time the test out)", () => {
    const valid = fc.constantFrom("(<a:b>)", ' (Not ["x"])', "<t:1>(<a:b>)", ", (<DAV:no-lock>)");
    const broken = fc.constantFrom("(", "((", "<", "[", '["', '["\\', "Not ", "(<a:", " ", ",");
    fc.assert(
      fc.property(
        fc.oneof(valid, broken),
        fc.integer({ min: 1_000, max: 20_000 }),
        (piece, times) => {
          const result = tryParse(piece.repeat(times));
          if (!(result instanceof IfHeaderSyntaxError)) expect(result.lists).toHaveLength(times);
        },
      ),
      { numRuns: 30 },
    );
  });

  it("regression: one tag with 200,000 lists parses instead of overflowing the stack", () => {
    const header = parseIfHeader(`<http://h/x>${"(<urn:a>)".repeat(200_000)}`);
    expect(header.lists).toHaveLength(200_000);
    expect(header.lists[199_999]).toEqual({
      resourceTag: "http://h/x",
      conditions: [{ kind: "token", not: false, token: "urn:a" }],
    });
  });
});
