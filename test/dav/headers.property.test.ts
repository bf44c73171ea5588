/**
 * Properties of the shared request-header parsers: Depth and the LOCK Timeout.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseDepth, parseTimeout, type Depth } from "../../src/dav/headers.js";
import { HttpError } from "../../src/dav/status.js";

const NUM_RUNS = 300;

/** What String.prototype.trim removes: JavaScript's white space and line terminators. */
const whitespace = fc.string({
  unit: fc.constantFrom(" ", "\t", "\r", "\n", "\v", "\f", "\u00a0", "\u2003", "\ufeff"),
  maxLength: 4,
});

const DEPTHS: [string, Depth][] = [
  ["0", 0],
  ["1", 1],
  ["infinity", "infinity"],
];

/** How parseDepth answers: the value, or the status of the HttpError it threw. */
function depthOutcome(value: string): Depth | { status: number } {
  try {
    const depth = parseDepth(value);
    if (depth === undefined) throw new Error(`undefined for a present header ${value}`);
    return depth;
  } catch (err) {
    if (err instanceof HttpError) return { status: err.status };
    throw err;
  }
}

describe("parseDepth", () => {
  it("reads 0, 1 and infinity in any case, with any surrounding whitespace", () => {
    fc.assert(
      fc.property(
        fc
          .constantFrom(...DEPTHS)
          .chain(([text, depth]) => fc.tuple(fc.mixedCase(fc.constant(text)), fc.constant(depth))),
        whitespace,
        whitespace,
        ([spelled, depth], before, after) => {
          expect(parseDepth(`${before}${spelled}${after}`)).toBe(depth);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("answers 400 for every other value, and throws nothing else", () => {
    const nearMisses = fc.constantFrom(
      "",
      "00",
      "01",
      "+1",
      "-0",
      "2",
      "1.0",
      "infinit",
      "infinityy",
      "Infinite",
      "0,1",
      "infinity, 0",
      "0 1",
      "\u0661", // ARABIC-INDIC DIGIT ONE
      "ｉｎｆｉｎｉｔｙ",
      "ınfınıty", // dotless i: toLowerCase must not make it "infinity"
    );
    const arbitrary = fc.oneof(nearMisses, fc.string({ unit: "binary", maxLength: 12 }));
    fc.assert(
      fc.property(arbitrary, whitespace, (value, padding) => {
        const input = `${padding}${value}${padding}`;
        const valid = DEPTHS.some(([text]) => input.trim().toLowerCase() === text);
        fc.pre(!valid);
        expect(depthOutcome(input)).toEqual({ status: 400 });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("leaves an absent header to the method", () => {
    expect(parseDepth(undefined)).toBeUndefined();
  });
});

describe("parseTimeout", () => {
  const max = fc.integer({ min: 1, max: 2 ** 32 });
  const defaultSeconds = fc.integer({ min: 0, max: 2 ** 33 });
  const digits = fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 1, maxLength: 40 });

  /** A list element parseTimeout understands, and the seconds it stands for before capping. */
  const understood: fc.Arbitrary<{ text: string; seconds: (max: number) => number }> = fc.oneof(
    fc
      .tuple(fc.mixedCase(fc.constant("Second-")), fc.integer({ min: 0, max: 2 ** 32 }))
      .map(([word, n]) => ({
        text: `${word}${n}`,
        seconds: (cap: number) => Math.min(Math.max(n, 1), cap),
      })),
    // Digit strings far beyond any integer: still a number of seconds, capped.
    fc.tuple(fc.mixedCase(fc.constant("second-")), digits).map(([word, n]) => ({
      text: `${word}${n}`,
      seconds: (cap: number) => Math.min(Math.max(Number(n), 1), cap),
    })),
    fc.mixedCase(fc.constant("Infinite")).map((text) => ({ text, seconds: (cap: number) => cap })),
  );

  /** A list element parseTimeout must pass over: no comma, and not one of the two forms. */
  const unintelligible = fc
    .oneof(
      fc.constantFrom("Extended", "Second-", "Second-x", "Second--5", "Seconds-5", "Infinity"),
      fc.constantFrom("Second-1.5", "Second- 5", "Second-+5", "Second-0x10", "Second-\u0665"),
      fc.string({ unit: "binary", maxLength: 12 }),
    )
    .filter((text) => !text.includes(",") && !/^\s*(infinite|second-\d+)\s*$/i.test(text));

  const pad = (text: string) =>
    fc
      .tuple(fc.constantFrom("", " ", "  ", "\t"), fc.constantFrom("", " ", "\t"))
      .map(([before, after]) => `${before}${text}${after}`);

  it("takes the first value it understands, capped to [1, max]", () => {
    fc.assert(
      fc.property(
        fc.array(unintelligible.chain(pad), { maxLength: 4 }),
        understood.chain((u) => pad(u.text).map((text) => ({ ...u, text }))),
        fc.array(
          fc.oneof(
            unintelligible,
            understood.map((u) => u.text),
          ),
          { maxLength: 3 },
        ),
        max,
        defaultSeconds,
        (skipped, chosen, rest, cap, fallback) => {
          const header = [...skipped, chosen.text, ...rest].join(",");
          expect(parseTimeout(header, cap, fallback)).toBe(chosen.seconds(cap));
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("falls back to the default, capped to [1, max], when nothing is understood", () => {
    fc.assert(
      fc.property(
        fc.option(fc.array(unintelligible, { maxLength: 4 }), { nil: undefined }),
        max,
        defaultSeconds,
        (parts, cap, fallback) => {
          const header = parts?.join(",");
          expect(parseTimeout(header, cap, fallback)).toBe(Math.min(Math.max(fallback, 1), cap));
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("never leaves [1, max] and never throws, whatever the header", () => {
    const anyHeader = fc.oneof(
      fc.string({ unit: "binary", maxLength: 40 }),
      fc
        .array(
          fc.oneof(
            unintelligible,
            understood.map((u) => u.text),
            digits,
          ),
          { maxLength: 6 },
        )
        .map((parts) => parts.join(",")),
    );
    fc.assert(
      fc.property(anyHeader, max, defaultSeconds, (header, cap, fallback) => {
        const seconds = parseTimeout(header, cap, fallback);
        expect(Number.isInteger(seconds)).toBe(true);
        expect(seconds).toBeGreaterThanOrEqual(1);
        expect(seconds).toBeLessThanOrEqual(cap);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
