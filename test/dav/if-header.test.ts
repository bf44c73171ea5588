import { describe, expect, it } from "vitest";
import {
  IfHeaderSyntaxError,
  NO_LOCK,
  evaluateIf,
  ifResourcePaths,
  parseIfHeader,
  submittedTokens,
  tagToPath,
} from "../../src/dav/if-header.js";
import type { IfResourceState, IfTagMapper } from "../../src/dav/if-header.js";

const TOKEN = "opaquelocktoken:f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
const OTHER = "urn:uuid:181d4fae-7dec-11d0-a765-00a0c91e6bf2";

/** A resolver over a fixed table of gateway paths; unlisted paths are unmapped. */
function states(table: Record<string, IfResourceState>) {
  const asked: string[] = [];
  const resolve = (path: string) => {
    asked.push(path);
    return table[path];
  };
  return { resolve, asked };
}

function holds(
  header: string,
  table: Record<string, IfResourceState>,
  requestPath = "/file",
  mapTag?: IfTagMapper,
): boolean {
  return evaluateIf(parseIfHeader(header), states(table).resolve, requestPath, mapTag);
}

describe("parseIfHeader", () => {
  it("parses an untagged list with a token and an etag (RFC 4918 §10.4.6)", () => {
    expect(parseIfHeader(`(<${TOKEN}> ["I am an ETag"])`)).toEqual({
      lists: [
        {
          conditions: [
            { kind: "token", not: false, token: TOKEN },
            { kind: "etag", not: false, etag: '"I am an ETag"' },
          ],
        },
      ],
    });
  });

  it("parses several untagged lists and Not (§10.4.7, §10.4.8)", () => {
    const header = parseIfHeader(
      `(Not <urn:uuid:181d4fae-7dec-11d0-a765-00a0c91e6bf2> <${OTHER}>) (["I am another ETag"])`,
    );
    expect(header.lists).toHaveLength(2);
    expect(header.lists[0]?.conditions).toEqual([
      { kind: "token", not: true, token: OTHER },
      { kind: "token", not: false, token: OTHER },
    ]);
    expect(header.lists[1]?.conditions).toEqual([
      { kind: "etag", not: false, etag: '"I am another ETag"' },
    ]);
  });

  it("parses tagged lists, one tag with several lists and several tags (§10.4.9, §10.4.10)", () => {
    const header = parseIfHeader(
      `<http://www.example.com/specs/> (<${TOKEN}>) (["etag"]) </a/b> (Not <DAV:no-lock>)`,
    );
    expect(header.lists).toEqual([
      {
        resourceTag: "http://www.example.com/specs/",
        conditions: [{ kind: "token", not: false, token: TOKEN }],
      },
      {
        resourceTag: "http://www.example.com/specs/",
        conditions: [{ kind: "etag", not: false, etag: '"etag"' }],
      },
      { resourceTag: "/a/b", conditions: [{ kind: "token", not: true, token: NO_LOCK }] },
    ]);
  });

  it("parses the §9.10.8 refresh example", () => {
    const header = parseIfHeader(`(<opaquelocktoken:e71d4fae-5dec-22d6-fea5-00a0c91e6be4>)`);
    expect(submittedTokens(header)).toEqual([
      "opaquelocktoken:e71d4fae-5dec-22d6-fea5-00a0c91e6be4",
    ]);
  });

  it("keeps weak etags and etags holding commas, spaces, brackets and escapes", () => {
    const header = parseIfHeader(
      String.raw`([W/"weak, tag"] ["a b, c"] ["x)]("] ["q\"uote"] [ "padded" ])`,
    );
    expect(header.lists[0]?.conditions.map((c) => (c.kind === "etag" ? c.etag : c.token))).toEqual([
      'W/"weak, tag"',
      '"a b, c"',
      '"x)]("',
      String.raw`"q\"uote"`,
      '"padded"',
    ]);
  });

  it("tolerates spacing, line folding, a lowercase Not and commas between lists", () => {
    const header = parseIfHeader(` \t(  not\t<${TOKEN}>\r\n  ) , (<${OTHER}>)  `);
    expect(header.lists.map((l) => l.conditions)).toEqual([
      [{ kind: "token", not: true, token: TOKEN }],
      [{ kind: "token", not: false, token: OTHER }],
    ]);
  });

  it("accepts Not directly followed by the condition", () => {
    expect(parseIfHeader(`(Not<DAV:no-lock>)`).lists[0]?.conditions).toEqual([
      { kind: "token", not: true, token: NO_LOCK },
    ]);
  });

  it.each([
    ["an empty value", ""],
    ["only spaces", "   "],
    ["an empty list", "()"],
    ["an unterminated list", `(<${TOKEN}>`],
    ["an unterminated token", `(<${TOKEN})`],
    ["an empty token", "(<>)"],
    ["a token without a scheme", "(<locktoken>)"],
    ["a token with a space", "(<opaquelocktoken:a b>)"],
    ["a bare word", "(foo)"],
    ["Not without a condition", "(Not)"],
    ["Not followed by a space and nothing", "(Not )"],
    ["an unquoted etag", "([abc])"],
    ["an unterminated etag", '(["abc)'],
    ["an etag without its bracket", '(["abc")'],
    ["a tag without a list", "</a>"],
    ["a tag followed by a tag", "</a> </b> (<DAV:no-lock>)"],
    ["an untagged list followed by a tag", "(<DAV:no-lock>) </a> (<DAV:no-lock>)"],
    ["a tagged list followed by an untagged one", "</a> (<DAV:no-lock>), , x"],
    ["trailing garbage", "(<DAV:no-lock>) garbage"],
    ["a bare token", `<${TOKEN}>`],
    ["a header name in the value", `If: (<${TOKEN}>)`],
  ])("rejects %s", (_name, value) => {
    expect(() => parseIfHeader(value)).toThrow(IfHeaderSyntaxError);
  });

  it("reports where parsing stopped", () => {
    try {
      parseIfHeader("(<DAV:no-lock>) x");
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(IfHeaderSyntaxError);
      expect((error as IfHeaderSyntaxError).position).toBe(16);
      expect((error as Error).message).toMatch(/malformed If header/);
    }
  });
});

describe("evaluateIf", () => {
  const locked = { "/file": { etag: '"e1"', lockTokens: [TOKEN] } };
  const free = { "/file": { etag: '"e1"', lockTokens: [] } };

  it("holds when the submitted token locks the resource (litmus cond_put)", () => {
    expect(holds(`(<${TOKEN}>)`, locked)).toBe(true);
  });

  it("fails with a token the resource does not have (litmus fail_cond_put)", () => {
    expect(holds(`(<${OTHER}>)`, locked)).toBe(false);
    expect(holds(`(<${TOKEN}>)`, free)).toBe(false);
  });

  it("never matches DAV:no-lock, so (Not <DAV:no-lock>) always holds", () => {
    expect(holds(`(<DAV:no-lock>)`, locked)).toBe(false);
    expect(holds(`(Not <DAV:no-lock>)`, locked)).toBe(true);
    expect(holds(`(Not <DAV:no-lock>)`, free)).toBe(true);
    expect(holds(`(Not <DAV:no-lock>)`, {})).toBe(true);
  });

  it("ORs lists: a corrupt token beside (Not <DAV:no-lock>) holds (litmus cond_put_corrupt_token)", () => {
    const header = `(<${TOKEN}x>) (Not <DAV:no-lock>)`;
    expect(holds(header, locked)).toBe(true);
    // The If header holds, yet the corrupt token is all that was submitted: the lock stays shut.
    expect(submittedTokens(parseIfHeader(header))).toEqual([`${TOKEN}x`]);
  });

  it("holds with a token beside (Not <DAV:no-lock>) (litmus cond_put_with_not)", () => {
    expect(holds(`(<${TOKEN}>) (Not <DAV:no-lock>)`, locked)).toBe(true);
  });

  it("ANDs conditions of one list (litmus complex_cond_put / fail_complex_cond_put)", () => {
    expect(holds(`(<${TOKEN}> ["e1"]) (Not <DAV:no-lock> ["e1"])`, locked)).toBe(true);
    expect(holds(`(<${TOKEN}> ["e1x"]) (Not <DAV:no-lock> ["e1x"])`, locked)).toBe(false);
    expect(holds(`(<${TOKEN}> ["e1x"])`, locked)).toBe(false);
  });

  it("compares etags strongly: a weak tag never matches", () => {
    expect(holds(`(["e1"])`, free)).toBe(true);
    expect(holds(`([W/"e1"])`, free)).toBe(false);
    expect(holds(`(["e1"])`, { "/file": { etag: 'W/"e1"', lockTokens: [] } })).toBe(false);
    expect(holds(`(["e2"])`, free)).toBe(false);
    expect(holds(`(Not ["e2"])`, free)).toBe(true);
    expect(holds(`(Not ["e1"])`, free)).toBe(false);
  });

  it("treats an unmapped resource as having no etag and no lock (§10.4.4)", () => {
    expect(holds(`(["e1"])`, {})).toBe(false);
    expect(holds(`(<${TOKEN}>)`, {})).toBe(false);
    expect(holds(`(Not ["e1"])`, {})).toBe(true);
    expect(holds(`(["e1"])`, { "/file": { lockTokens: [] } })).toBe(false);
  });

  it("applies a tagged list to its resource, not to the request path", () => {
    const table = {
      "/file": { etag: '"f"', lockTokens: [] },
      "/dir": { etag: '"d"', lockTokens: [TOKEN] },
    };
    expect(holds(`</dir> (<${TOKEN}>)`, table)).toBe(true);
    expect(holds(`</file> (<${TOKEN}>)`, table)).toBe(false);
    expect(holds(`<http://localhost:8080/dir/> (<${TOKEN}> ["d"])`, table)).toBe(true);
    expect(holds(`<http://localhost:8080/dir> (["f"])`, table)).toBe(false);
  });

  it("evaluates every tagged list, also those naming other resources (§10.4.3)", () => {
    const table = { "/other": { etag: '"o"', lockTokens: [] } };
    expect(holds(`</file> (<${TOKEN}>) </other> (["o"])`, table)).toBe(true);
  });

  it("uses the caller's mapper for tags, and a tag mapped nowhere never holds", () => {
    const mapTag: IfTagMapper = (tag) => {
      const url = new URL(tag, "http://gw.local");
      if (url.host !== "gw.local" || !url.pathname.startsWith("/dav/")) return undefined;
      return decodeURIComponent(url.pathname.slice("/dav".length)).replace(/\/$/, "");
    };
    const table = { "/a b": { etag: '"x"', lockTokens: [TOKEN] } };
    expect(holds(`<http://gw.local/dav/a%20b> (<${TOKEN}>)`, table, "/", mapTag)).toBe(true);
    expect(holds(`</dav/a%20b/> (<${TOKEN}>)`, table, "/", mapTag)).toBe(true);
    expect(holds(`<http://elsewhere/dav/a%20b> (Not <DAV:no-lock>)`, table, "/", mapTag)).toBe(
      false,
    );
    expect(holds(`</outside> (Not <DAV:no-lock>)`, table, "/", mapTag)).toBe(false);
  });

  it("asks the resolver once per resource", () => {
    const { resolve, asked } = states({ "/file": { etag: '"e"', lockTokens: [] } });
    const header = parseIfHeader(`</file> (["x"]) (["y"]) </file/> (["z"]) </b> (["e"])`);
    expect(evaluateIf(header, resolve, "/req")).toBe(false);
    expect(asked).toEqual(["/file", "/b"]);
  });

  it("stops at the first list that holds", () => {
    const { resolve, asked } = states({ "/file": { etag: '"e"', lockTokens: [] } });
    expect(evaluateIf(parseIfHeader(`</file> (["e"]) </b> (["e"])`), resolve, "/x")).toBe(true);
    expect(asked).toEqual(["/file"]);
  });
});

describe("submittedTokens", () => {
  it("collects tokens outside Not from every list, once each, without DAV:no-lock", () => {
    const header = parseIfHeader(
      `</a> (<${TOKEN}> ["e"]) (Not <${OTHER}>) </b> (<${TOKEN}>) (<DAV:no-lock>) (<urn:uuid:3>)`,
    );
    expect(submittedTokens(header)).toEqual([TOKEN, "urn:uuid:3"]);
  });

  it("is empty when only etags or negated tokens are given", () => {
    expect(submittedTokens(parseIfHeader(`(["e"]) (Not <${TOKEN}>)`))).toEqual([]);
  });
});

describe("ifResourcePaths", () => {
  it("lists the request path for untagged lists and mapped tags, once each", () => {
    const header = parseIfHeader(`</a/> (["1"]) (["2"]) <http://h/b> (["3"]) <bad://> (["4"])`);
    expect(ifResourcePaths(header, "/req")).toEqual(["/a", "/b", "/"]);
    expect(ifResourcePaths(parseIfHeader(`(["1"]) (["2"])`), "/req")).toEqual(["/req"]);
    expect(ifResourcePaths(header, "/req", (tag) => (tag === "/a/" ? "/a" : undefined))).toEqual([
      "/a",
    ]);
  });
});

describe("tagToPath", () => {
  it.each([
    ["http://host/a/b", "/a/b"],
    ["https://host:8443/a/b/", "/a/b"],
    ["http://host", "/"],
    ["http://host/", "/"],
    ["/a/b/", "/a/b"],
    ["/a/b?x=1", "/a/b"],
    ["/", "/"],
    ["/a%20b", "/a%20b"],
  ])("maps %s to %s", (tag, path) => {
    expect(tagToPath(tag)).toBe(path);
  });

  it("maps nothing for a relative reference", () => {
    expect(tagToPath("a/b")).toBeUndefined();
  });
});
