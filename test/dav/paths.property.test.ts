/**
 * Properties of request paths and the Destination header: any name the drive can hold survives
 * encoding and decoding, in any legal spelling; the segments that would mean something else
 * (dot segments, encoded slashes, NUL, …) and other hosts are refused, wherever they appear.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodePath, destinationOf } from "../../src/dav/paths.js";
import { hrefOf } from "../../src/dav/props.js";
import { HttpError } from "../../src/dav/status.js";

const NUM_RUNS = 300;

/** A name decodePath must accept: not a dot segment, no NUL, slash or backslash, ≤ 255 bytes. */
const acceptable = (name: string) =>
  name !== "." &&
  name !== ".." &&
  !/[\0/\\]/.test(name) &&
  Buffer.byteLength(name) <= 255 &&
  Buffer.byteLength(name) > 0;

const name = fc
  .oneof(
    { weight: 3, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 10 }) },
    {
      weight: 3,
      arbitrary: fc.string({
        unit: fc.constantFrom(..."aZ0 .%#?&=+;:@,'~*!$()[]é日\u00a0\u200b", "\u{1F600}"),
        minLength: 1,
        maxLength: 10,
      }),
    },
    { weight: 1, arbitrary: fc.constantFrom("n".repeat(255), "日".repeat(85), "...", ".a", "a.") },
  )
  .filter(acceptable);

const names = fc.array(name, { maxLength: 5 });
const pathOf = (segments: readonly string[]) => `/${segments.join("/")}`;

/** Every byte percent-encoded, hex digits in either case: a spelling no encoder here produces. */
const encodeAllBytes = (segment: string, upper: boolean) =>
  [...Buffer.from(segment)]
    .map((b) => `%${b.toString(16).padStart(2, "0")}`)
    .map((e) => (upper ? e.toUpperCase() : e))
    .join("");

/** The segments spelled by one of several encoders, joined into a URL path. */
const spelled = (segments: readonly string[]) =>
  fc
    .constantFrom("href", "component", "bytes-lower", "bytes-upper")
    .map((how) =>
      segments
        .map((s) =>
          how === "component"
            ? encodeURIComponent(s)
            : how === "href"
              ? hrefOf(`/${s}`, false).slice(1)
              : encodeAllBytes(s, how === "bytes-upper"),
        )
        .join("/"),
    );

/** How decodePath or destinationOf answered: the path, or the status of its HttpError. */
function outcome(run: () => { path: string }): string | { status: number } {
  try {
    return run().path;
  } catch (err) {
    if (err instanceof HttpError) return { status: err.status };
    throw err;
  }
}

const DOT = fc.constantFrom(".", "%2e", "%2E");
/** Segments that must be refused however they are spelled. */
const refused = fc.oneof(
  DOT,
  fc.tuple(DOT, DOT).map(([a, b]) => a + b),
  fc
    .tuple(name, fc.constantFrom("%2F", "%2f", "%5C", "%5c", "\\", "%00"), name)
    .map(([a, bad, b]) => encodeURIComponent(a) + bad + encodeURIComponent(b)),
  // Malformed or overlong UTF-8, and stray percent signs.
  fc.constantFrom("%", "%G0", "a%2", "%E6%97", "%C0%AF", "%FF", "100%"),
  fc
    .tuple(fc.constantFrom("n", "é", "日", "\u{1F600}"), fc.integer({ min: 1, max: 30 }))
    .map(([ch, extra]) => ch.repeat(Math.floor(255 / Buffer.byteLength(ch)) + extra))
    .map(encodeURIComponent),
);

interface Server {
  scheme: "http" | "https";
  hostname: string;
  port: number | undefined;
}

const DEFAULT_PORT = { http: 80, https: 443 };

const server: fc.Arbitrary<Server> = fc.record({
  scheme: fc.constantFrom("http" as const, "https" as const),
  hostname: fc.oneof(
    // An xn-- label would have to be valid punycode, which fc.domain does not promise.
    fc.domain().filter((d) => !/(^|\.)xn--/.test(d)),
    fc.constantFrom("127.0.0.1", "[::1]", "localhost"),
  ),
  port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
});

/** One way to write the server's authority: any letter case, the default port written or not. */
const authorityOf = (s: Server) =>
  fc.tuple(fc.mixedCase(fc.constant(s.hostname)), fc.boolean()).map(([hostname, writeDefault]) => {
    const port = s.port ?? (writeDefault ? DEFAULT_PORT[s.scheme] : undefined);
    return port === undefined ? hostname : `${hostname}:${port}`;
  });

/** The authority as URLs compare it: lower case, no default port. */
const canonicalAuthority = (s: Server) =>
  new URL(`${s.scheme}://${s.hostname}${s.port === undefined ? "" : `:${s.port}`}`).host;

describe("decodePath", () => {
  it("decodes every spelling of a path back to it, collection or not", () => {
    fc.assert(
      fc.property(
        names.chain((segments) => fc.tuple(fc.constant(segments), spelled(segments))),
        fc.boolean(),
        ([segments, encoded], slash) => {
          const raw = `/${encoded}${slash && segments.length > 0 ? "/" : ""}`;
          expect(decodePath(raw)).toEqual({
            path: pathOf(segments),
            slash: slash || segments.length === 0,
          });
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("reads hrefOf's output back to the same path", () => {
    fc.assert(
      fc.property(names, fc.boolean(), (segments, isDir) => {
        const path = pathOf(segments);
        expect(decodePath(hrefOf(path, isDir)).path).toBe(path);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("ignores empty segments", () => {
    fc.assert(
      fc.property(names, fc.array(fc.nat({ max: 3 }), { maxLength: 6 }), (segments, extra) => {
        const encoded = segments.map(encodeURIComponent);
        const doubled = encoded.map((s, i) => "/".repeat(1 + (extra[i] ?? 0)) + s).join("");
        expect(decodePath(`${doubled}/`).path).toBe(pathOf(segments));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("refuses a bad segment anywhere in the path with 400", () => {
    fc.assert(
      fc.property(names, fc.nat(), refused, fc.boolean(), (segments, at, bad, slash) => {
        const encoded = segments.map(encodeURIComponent);
        encoded.splice(at % (encoded.length + 1), 0, bad);
        expect(outcome(() => decodePath(`/${encoded.join("/")}${slash ? "/" : ""}`))).toEqual({
          status: 400,
        });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("answers any string with a path or a 400, nothing else", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), (raw) => {
        const result = outcome(() => decodePath(raw));
        if (typeof result === "string") expect(result).toMatch(/^\/(?:[^/]+(?:\/[^/]+)*)?$/);
        else expect(result).toEqual({ status: 400 });
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

describe("destinationOf", () => {
  it("takes an absolute path, with or without a query or fragment", () => {
    fc.assert(
      fc.property(
        names.chain((segments) => fc.tuple(fc.constant(segments), spelled(segments))),
        fc.constantFrom("", "?a=1", "#frag", "?q#f"),
        ([segments, encoded], suffix) => {
          expect(destinationOf(`/${encoded}${suffix}`, "h:1").path).toBe(pathOf(segments));
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("takes a URL on this server, however its authority is spelled", () => {
    fc.assert(
      fc.property(
        server.chain((s) =>
          fc.tuple(authorityOf(s), authorityOf(s), fc.mixedCase(fc.constant(s.scheme))),
        ),
        names.chain((segments) => fc.tuple(fc.constant(segments), spelled(segments))),
        ([hostHeader, authority, scheme], [segments, encoded]) => {
          const url = `${scheme}://${authority}/${encoded}`;
          expect(outcome(() => destinationOf(url, hostHeader))).toBe(pathOf(segments));
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("answers 502 for a URL on another host or port", () => {
    fc.assert(
      fc.property(server, server, names, (own, other, segments) => {
        fc.pre(canonicalAuthority(own) !== canonicalAuthority({ ...other, scheme: own.scheme }));
        const authority = `${other.hostname}${other.port === undefined ? "" : `:${other.port}`}`;
        const hostHeader = `${own.hostname}${own.port === undefined ? "" : `:${own.port}`}`;
        const url = `${own.scheme}://${authority}${hrefOf(pathOf(segments), false)}`;
        expect(outcome(() => destinationOf(url, hostHeader))).toEqual({ status: 502 });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("refuses a bad segment with 400, as a path and as a URL on this server", () => {
    fc.assert(
      fc.property(names, fc.nat(), refused, (segments, at, bad) => {
        const encoded = segments.map(encodeURIComponent);
        encoded.splice(at % (encoded.length + 1), 0, bad);
        const path = `/${encoded.join("/")}`;
        expect(outcome(() => destinationOf(path, "h:1"))).toEqual({ status: 400 });
        expect(outcome(() => destinationOf(`http://h:1${path}`, "h:1"))).toEqual({
          status: 400,
        });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("names the resource the URL parser sees, or refuses the URL", () => {
    // Tabs and newlines are left out: the URL parser drops them, the gateway keeps them as written.
    const start = fc.constantFrom(
      "http://h:1",
      "HTTP://H:1",
      "http://u@h:1",
      "http:/h:1",
      "http:h:1",
      "http:\\\\h:1",
      "http:///h:1",
      "http://h:1\\",
    );
    const rest = fc.string({
      unit: fc.constantFrom(..."ab/\\.:@?# é", "%2e", "%2F", "%5c", "%41", "%"),
      maxLength: 12,
    });
    fc.assert(
      fc.property(start, rest, (authority, path) => {
        // As Node hands over a header value: without surrounding white space.
        const value = (authority + path).trim();
        const result = outcome(() => destinationOf(value, "h:1"));
        if (typeof result !== "string") {
          // 502 only for what the URL parser also places on another server.
          if (result.status === 502) expect(new URL(value).host).not.toBe("h:1");
          else expect(result).toEqual({ status: 400 });
          return;
        }
        const url = new URL(value);
        expect(url.host).toBe("h:1");
        expect(result).toBe(decodePath(url.pathname).path);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("regression: a default port written in Host or Destination still names this server", () => {
    expect(destinationOf("https://dav.example:443/a", "dav.example:443").path).toBe("/a");
    expect(destinationOf("http://dav.example/a", "DAV.example:80").path).toBe("/a");
    expect(destinationOf("http://dav.example:80/a", "dav.example").path).toBe("/a");
    expect(outcome(() => destinationOf("http://dav.example/a", "dav.example:443"))).toEqual({
      status: 502,
    });
  });

  it("regression: a backslash or a missing // in a URL is refused, not read as another path", () => {
    for (const value of [
      "http://h:1\\a",
      "http://h:1\\a\\b/c",
      "http:/h:1/a",
      "http:h:1/a",
      "http:///h:1/a",
    ]) {
      expect(
        outcome(() => destinationOf(value, "h:1")),
        value,
      ).toEqual({ status: 400 });
    }
  });

  it("answers any string with a path, a 400 or a 502, nothing else", () => {
    const header = fc.oneof(
      fc.string({ unit: "binary", maxLength: 40 }),
      fc
        .tuple(fc.constantFrom("http://", "HTTPS://h:1", "//", "/", "h:1/"), fc.string())
        .map(([a, b]) => a + b),
    );
    fc.assert(
      fc.property(header, (value) => {
        const result = outcome(() => destinationOf(value, "h:1"));
        if (typeof result !== "string") expect([400, 502]).toContain(result.status);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
