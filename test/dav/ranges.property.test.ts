/**
 * Properties of range handling: `localRead` (ranges the gateway answers itself) and the range
 * math of GET, driven through handleGet with an in-memory file. The expected bytes always come
 * from `Buffer.subarray` on bounds worked out here from RFC 9110 §14, never from the code.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DavContext } from "../../src/dav/context.js";
import { handleGet } from "../../src/dav/get.js";
import { localRead } from "../../src/drive/ranges.js";
import type { Entry, FileSystem } from "../../src/drive/types.js";
import { createLogger } from "../../src/log.js";

const NUM_RUNS = 200;
const log = createLogger("silent");

/** File content of 0 to 300 bytes; the length drawn first so that large files come up too. */
const content = fc
  .integer({ min: 0, max: 300 })
  .chain((length) => fc.uint8Array({ minLength: length, maxLength: length }))
  .map((bytes) => Buffer.from(bytes));

/** A byte position near the interesting edges of a file of `size` bytes. */
const position = (size: number) =>
  fc.oneof(fc.nat({ max: size + 5 }), fc.constantFrom(0, Math.max(size - 1, 0), size));

/** Reads through localRead the way the drive serves small files, noting the part opened. */
function readLocally(all: Buffer, range: { start: number; end: number } | undefined) {
  let opened: { start: number; end: number } | undefined;
  const result = localRead(all.length, range, (part) => {
    opened = part;
    const bytes = part ? all.subarray(part.start, part.end + 1) : all;
    return { body: Readable.from([bytes]), bytes };
  });
  return { ...result, opened };
}

describe("localRead", () => {
  it("serves exactly the bytes of a range, the end capped at the last byte", () => {
    const request = content
      .filter((all) => all.length > 0)
      .chain((all) =>
        fc.tuple(
          fc.constant(all),
          fc.nat({ max: all.length - 1 }),
          fc.nat({ max: all.length + 10 }),
        ),
      )
      .map(([all, start, span]) => ({ all, start, end: start + span }));
    fc.assert(
      fc.property(request, ({ all, start, end }) => {
        const read = readLocally(all, { start, end });
        const last = Math.min(end, all.length - 1);
        expect(read.range).toEqual({ start, end: last });
        expect(read.opened).toEqual({ start, end: last });
        expect(read.bytes).toEqual(all.subarray(start, end + 1));
        expect(read.length).toBe(last - start + 1);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("reads the whole for anything else, and never reports an impossible range", () => {
    const range = (size: number) =>
      fc.option(
        fc.tuple(position(size), position(size)).map(([start, end]) => ({ start, end })),
        { nil: undefined },
      );
    const request = content.chain((all) => fc.tuple(fc.constant(all), range(all.length)));
    fc.assert(
      fc.property(request, ([all, asked]) => {
        const read = readLocally(all, asked);
        if (!read.range) {
          expect(read.opened).toBeUndefined();
          expect(read.bytes).toEqual(all);
          expect(read.length).toBe(all.length);
          return;
        }
        const { start, end } = read.range;
        expect(start).toBeLessThanOrEqual(end);
        expect(end).toBeLessThan(all.length);
        expect(read.length).toBe(end - start + 1);
        expect(read.bytes).toEqual(all.subarray(start, end + 1));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("regression: a range that ends before it starts reads the whole", () => {
    const all = Buffer.from("0123456789");
    const read = readLocally(all, { start: 5, end: 3 });
    expect(read.range).toBeUndefined();
    expect(read.bytes).toEqual(all);
    expect(read.length).toBe(10);
  });
});

// ---------------------------------------------------------------------------------------------
// GET

interface Reply {
  status: number;
  headers: Record<string, string | number>;
  body: Buffer;
}

/** A GET of a file holding `all`, with the drive's small-file read behind it. */
async function get(all: Buffer, range: string): Promise<Reply> {
  const reply: Reply = { status: 0, headers: {}, body: Buffer.alloc(0) };
  const res = {
    writeHead(status: number, headers: Record<string, string | number> = {}) {
      reply.status = status;
      reply.headers = headers;
      return res;
    },
    end(chunk?: Buffer) {
      if (chunk) reply.body = Buffer.from(chunk);
      return res;
    },
  };
  const entry: Entry = {
    path: "/f.bin",
    name: "f.bin",
    isDir: false,
    size: all.length,
    etag: "e1",
    mtimeMs: 0,
    ctimeMs: 0,
    uploading: false,
  };
  const fs: Partial<FileSystem> = {
    stat: async () => entry,
    read: async (_path, options) =>
      localRead(all.length, options?.range, (part) => {
        const bytes = part ? all.subarray(part.start, part.end + 1) : all;
        return { body: Readable.from([bytes]), bytes };
      }),
  };
  const ctx: Partial<DavContext> = {
    req: { method: "GET", headers: { range } } as unknown as IncomingMessage,
    res: res as unknown as ServerResponse,
    path: entry.path,
    slash: false,
    fs: fs as FileSystem,
    options: { downloadMode: "proxy", lockTimeoutMaxSeconds: 60 },
    log,
    signal: new AbortController().signal,
  };
  await handleGet(ctx as DavContext);
  return reply;
}

/** One byte-range-spec (RFC 9110 §14.1.1) and the bytes it selects of a file of `size` bytes. */
type Spec =
  | { kind: "int"; first: number; last: number }
  | { kind: "open"; first: number }
  | { kind: "suffix"; length: number };

function specText(spec: Spec): string {
  if (spec.kind === "int") return `${spec.first}-${spec.last}`;
  if (spec.kind === "open") return `${spec.first}-`;
  return `-${spec.length}`;
}

/** The inclusive bounds a satisfiable spec selects, or undefined when it is unsatisfiable. */
function selected(spec: Spec, size: number): { start: number; end: number } | undefined {
  if (spec.kind === "suffix") {
    if (spec.length === 0) return undefined;
    return { start: size - Math.min(spec.length, size), end: size - 1 };
  }
  if (spec.first >= size) return undefined;
  return { start: spec.first, end: spec.kind === "int" ? Math.min(spec.last, size - 1) : size - 1 };
}

/**
 * Specs around the interesting edges of a file of `size` bytes. Suffixes stay within the file:
 * a longer one is the known GET bug pinned below.
 */
const spec = (size: number): fc.Arbitrary<Spec> =>
  fc.oneof(
    fc
      .tuple(position(size), fc.nat({ max: size + 5 }))
      .map(([first, span]) => ({ kind: "int" as const, first, last: first + span })),
    position(size).map((first) => ({ kind: "open" as const, first })),
    fc.nat({ max: size }).map((length) => ({ kind: "suffix" as const, length })),
  );

const rangeRequest = content.chain((all) =>
  fc.tuple(
    fc.constant(all),
    fc.array(spec(all.length), { minLength: 1, maxLength: 4 }),
    fc.constantFrom(",", ", ", " ,", " , "),
  ),
);

describe("GET with Range", () => {
  it("serves the one satisfiable range, the whole for several, 416 for none", async () => {
    await fc.assert(
      fc.asyncProperty(rangeRequest, async ([all, specs, comma]) => {
        const reply = await get(all, `bytes=${specs.map(specText).join(comma)}`);
        const size = all.length;
        const satisfiable = specs.flatMap((s) => selected(s, size) ?? []);
        if (size === 0 || satisfiable.length > 1) {
          // An empty file has no range to serve; several ranges are served whole (RFC 9110
          // allows ignoring Range), so multipart never happens.
          expect(reply.status).toBe(200);
          expect(reply.body).toEqual(all);
        } else if (satisfiable.length === 0) {
          expect(reply.status).toBe(416);
          expect(reply.headers["content-range"]).toBe(`bytes */${size}`);
          expect(reply.body).toHaveLength(0);
        } else {
          const { start, end } = satisfiable[0]!;
          expect(reply.status).toBe(206);
          expect(reply.body).toEqual(all.subarray(start, end + 1));
          expect(reply.headers["content-range"]).toBe(`bytes ${start}-${end}/${size}`);
          expect(reply.headers["content-length"]).toBe(end - start + 1);
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("answers any Range header with 200, 206 or 416, consistent with its own headers", async () => {
    const garbage = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.stringMatching(/^(bytes|BYTES|items|)=?[-\d, ]{0,20}$/),
      fc.stringMatching(/^bytes=(\d{0,20}-\d{0,20},?){1,3}$/),
    );
    await fc.assert(
      fc.asyncProperty(content, garbage, async (all, range) => {
        const reply = await get(all, range);
        if (reply.status === 416) {
          expect(reply.headers["content-range"]).toBe(`bytes */${all.length}`);
          return;
        }
        if (reply.status === 200) {
          expect(reply.body).toEqual(all);
          return;
        }
        expect(reply.status).toBe(206);
        const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(reply.headers["content-range"]));
        expect(m).not.toBeNull();
        const [start, end] = [Number(m![1]), Number(m![2])];
        expect(Number(m![3])).toBe(all.length);
        expect(start).toBeLessThanOrEqual(end);
        expect(end).toBeLessThan(all.length);
        expect(reply.body).toEqual(all.subarray(start, end + 1));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  // Known bugs in src/dav/get.ts (outside this change): range-parser answers -1 for both, and
  // get.ts turns -1 into 416 before it looks at the unit. These tests fail while the bugs stand.
  it("a suffix longer than the file selects the whole file (RFC 9110 §14.1.2)", async () => {
    const reply = await get(Buffer.from("abc"), "bytes=-5");
    expect(reply.status).toBe(206);
    expect(reply.headers["content-range"]).toBe("bytes 0-2/3");
  });

  it("a Range in a unit the server does not know is ignored (RFC 9110 §14.2)", async () => {
    const reply = await get(Buffer.from("abc"), "items=5-9");
    expect(reply.status).toBe(200);
  });
});
