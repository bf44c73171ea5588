/**
 * uploadFile (src/cloudreve/upload.ts) against the emulator over HTTP: which route each kind
 * of write takes, byte-exact multi-chunk uploads, failures that cancel the session and leave
 * nothing behind, and the memory of a 1 GiB upload.
 */
import { createHash } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { CloudreveApi } from "../../src/cloudreve/api.js";
import { Downloader } from "../../src/cloudreve/download.js";
import { timestampToEpochMs, type File } from "../../src/cloudreve/types.js";
import { uploadFile, type UploadRequest } from "../../src/cloudreve/upload.js";
import { BadRequest, Exists, NotFound, UpstreamError } from "../../src/errors.js";
import { myUri, useEmulator } from "../helpers/emulator.js";
import { newClient, patternBytes, sourceOf } from "./client-helpers.js";
import { advanceClock, calls, R, resetStats, setFaults, stats } from "../helpers/control.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;

/** The whole current content of a file, read through the Downloader. */
async function download(api: CloudreveApi, file: File): Promise<Buffer> {
  expect(file.path).toMatch(/^cloudreve:\/\/my\//);
  const d = await new Downloader(api).open({ uri: file.path!, entity: file.primary_entity });
  expect(d.statusCode).toBe(200);
  return d.readAll();
}

/**
 * Uploads `data`. A call with a modification time takes the session path, as the gateway's
 * writes above its direct-upload limit do (a direct write cannot carry the time).
 */
function upload(api: CloudreveApi, r: Omit<UploadRequest, "source"> & { data: Buffer }) {
  const { data, ...rest } = r;
  const directMaxBytes = rest.directMaxBytes ?? (rest.mtimeMs === undefined ? undefined : 0);
  return uploadFile(api, { ...rest, directMaxBytes, source: sourceOf(data) });
}

/** Byte equality without a slow element-wise diff of large buffers. */
function expectBytes(got: Buffer, want: Buffer): void {
  expect(got.length).toBe(want.length);
  expect(got.equals(want)).toBe(true);
}

/** Names in a folder, to check for leftover placeholders. */
async function names(api: CloudreveApi, folder: string): Promise<string[]> {
  const out: string[] = [];
  for await (const page of api.list(folder)) out.push(...page.files.map((f) => f.name));
  return out.sort();
}

describe("uploadFile", () => {
  const ctx = useEmulator({ chunkSize: CHUNK });
  let api: CloudreveApi;
  beforeAll(() => {
    api = newClient(ctx.emu.url);
  });
  beforeEach(async () => {
    await setFaults(ctx.emu.url, []);
    await api.me(); // logged in before the counting starts
    await resetStats(ctx.emu.url);
  });
  afterAll(async () => {
    await setFaults(ctx.emu.url, []);
    await api.close();
  });

  it("a small file without mtime, replacing allowed: exactly one PUT /file/content", async () => {
    const data = patternBytes(100 * KiB, 1);
    const file = await upload(api, {
      uri: myUri("up/small.bin"),
      size: data.length,
      replace: true,
      data,
    });
    expect(file.size).toBe(data.length);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.putContent]).toBe(1);
    expect(s.requests[R.createSession]).toBeUndefined();
    expect(s.requests[R.chunk]).toBeUndefined();
    expect(Object.values(s.requests).reduce((a, b) => a + b, 0)).toBe(1);
    expect(s.bytesIn).toBe(data.length);
    expectBytes(await download(api, file), data);
  });

  it("a small file without mtime that must not replace: one session, one chunk (PUT /file/content would overwrite)", async () => {
    const data = patternBytes(10 * KiB, 2);
    const file = await upload(api, {
      uri: myUri("up/small-new.bin"),
      size: data.length,
      replace: false,
      data,
    });
    expect(file.size).toBe(data.length);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.putContent]).toBeUndefined();
    expect(s.requests[R.createSession]).toBe(1);
    expect(s.requests[R.chunk]).toBe(1);
    expect(s.requests[R.info]).toBe(1);
    expectBytes(await download(api, file), data);
  });

  it("with mtime: the session path, and updated_at equals the mtime", async () => {
    const mtimeMs = Date.UTC(2021, 4, 6, 7, 8, 9, 123);
    const data = patternBytes(1000, 3);
    const file = await upload(api, {
      uri: myUri("up/dated.txt"),
      size: data.length,
      mtimeMs,
      replace: true,
      data,
    });
    expect(timestampToEpochMs(file.updated_at)).toBe(mtimeMs);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.putContent]).toBeUndefined();
    expect(s.requests[R.createSession]).toBe(1);
    expect(s.requests[R.chunk]).toBe(1);
    expect(timestampToEpochMs((await api.info(myUri("up/dated.txt"))).updated_at)).toBe(mtimeMs);
  });

  it("a 0-byte file with mtime: one empty chunk completes it", async () => {
    const mtimeMs = Date.UTC(2019, 0, 1, 0, 0, 0);
    const file = await upload(api, {
      uri: myUri("up/empty.txt"),
      size: 0,
      mtimeMs,
      replace: false,
      data: Buffer.alloc(0),
    });
    expect(file.size).toBe(0);
    expect(timestampToEpochMs(file.updated_at)).toBe(mtimeMs);
    expect(file.metadata?.["sys:upload_session_id"]).toBeUndefined();
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.createSession]).toBe(1);
    expect(s.requests[R.chunk]).toBe(1);
    expect(s.requests[R.cancel]).toBeUndefined();
  });

  it("a 0-byte file without mtime, replacing allowed: one PUT /file/content", async () => {
    const file = await upload(api, {
      uri: myUri("up/empty2.txt"),
      size: 0,
      replace: true,
      data: Buffer.alloc(0),
    });
    expect(file.size).toBe(0);
    expect(await calls(ctx.emu.url, R.putContent)).toBe(1);
  });

  it("several chunks and a short last one arrive byte-identical", async () => {
    const data = patternBytes(5 * CHUNK + 12_345, 4);
    const mtimeMs = Date.UTC(2022, 1, 2, 3, 4, 5);
    const file = await upload(api, {
      uri: myUri("up/multi.bin"),
      size: data.length,
      mtimeMs,
      replace: false,
      data,
    });
    expect(file.size).toBe(data.length);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.chunk]).toBe(6);
    expect(s.bytesIn).toBeGreaterThanOrEqual(data.length);
    expectBytes(await download(api, file), data);
  });

  it("a file of exactly n chunks is n chunk calls", async () => {
    const data = patternBytes(3 * CHUNK, 5);
    const file = await upload(api, {
      uri: myUri("up/exact.bin"),
      size: data.length,
      mtimeMs: 1,
      replace: false,
      data,
    });
    expect(await calls(ctx.emu.url, R.chunk)).toBe(3);
    expectBytes(await download(api, file), data);
  });

  /** Makes chunk `n` (0-based) fail `times` times with `failWith`, set just before it is sent. */
  function failChunk(n: number, failWith: 503 | "reset", times: number) {
    const original = api.uploadChunk.bind(api);
    return vi
      .spyOn(api, "uploadChunk")
      .mockImplementation(async (sessionId, index, length, body, signal) => {
        if (index === n) await setFaults(ctx.emu.url, [{ route: R.chunk, failWith, times }]);
        return original(sessionId, index, length, body, signal);
      });
  }

  for (const failWith of [503, "reset"] as const) {
    it(`${failWith} on chunk 2 beyond the retries, replacing a file: cancelled, old content intact, no lock`, async () => {
      const uri = myUri(`up/replace-${failWith}.bin`);
      const old = patternBytes(2 * CHUNK + 7, 6);
      const before = await upload(api, {
        uri,
        size: old.length,
        mtimeMs: 1000,
        replace: false,
        data: old,
      });
      await resetStats(ctx.emu.url);

      const spy = failChunk(2, failWith, 5); // the first try and 4 retries
      const data = patternBytes(4 * CHUNK + 99, 7);
      const err = await upload(api, {
        uri,
        size: data.length,
        mtimeMs: 2000,
        replace: true,
        data,
      }).catch((e: unknown) => e);
      spy.mockRestore();
      await setFaults(ctx.emu.url, []);
      expect(err).toBeInstanceOf(UpstreamError);
      const s = await stats(ctx.emu.url);
      expect(s.requests[R.chunk]).toBe(2 + 5); // chunks 0 and 1, then chunk 2 five times
      expect(s.requests[R.cancel]).toBe(1);

      const now = await api.info(uri);
      expect(now.primary_entity).toBe(before.primary_entity);
      expect(now.size).toBe(old.length);
      expect(timestampToEpochMs(now.updated_at)).toBe(1000);
      expectBytes(await download(api, now), old);

      // No lock left behind: the same upload goes through now.
      const again = await upload(api, {
        uri,
        size: data.length,
        mtimeMs: 2000,
        replace: true,
        data,
      });
      expectBytes(await download(api, again), data);
    });

    it(`${failWith} on chunk 1 beyond the retries, new file: cancelled, no placeholder, no lock`, async () => {
      const uri = myUri(`up/fresh-${failWith}/new.bin`);
      await api.create(myUri(`up/fresh-${failWith}/other.txt`), "file", false);
      await resetStats(ctx.emu.url);
      const spy = failChunk(1, failWith, 5);
      const data = patternBytes(3 * CHUNK, 8);
      const err = await upload(api, {
        uri,
        size: data.length,
        mtimeMs: 5,
        replace: false,
        data,
      }).catch((e: unknown) => e);
      spy.mockRestore();
      await setFaults(ctx.emu.url, []);
      expect(err).toBeInstanceOf(UpstreamError);
      expect(await calls(ctx.emu.url, R.cancel)).toBe(1);
      await expect(api.info(uri)).rejects.toBeInstanceOf(NotFound);
      expect(await names(api, myUri(`up/fresh-${failWith}`))).toEqual(["other.txt"]);

      const again = await upload(api, { uri, size: data.length, mtimeMs: 5, replace: false, data });
      expectBytes(await download(api, again), data);
    });
  }

  it("a 503 on a chunk within the retries is retried and the upload succeeds", async () => {
    const spy = failChunk(1, 503, 2);
    const data = patternBytes(3 * CHUNK + 1, 9);
    const file = await upload(api, {
      uri: myUri("up/retried.bin"),
      size: data.length,
      mtimeMs: 5,
      replace: false,
      data,
    });
    spy.mockRestore();
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.chunk]).toBe(4 + 2);
    expect(s.requests[R.cancel]).toBeUndefined();
    expectBytes(await download(api, file), data);
  });

  it("an access token expiring in the middle of an upload costs one refresh, no failed chunk", async () => {
    const original = api.uploadChunk.bind(api);
    const spy = vi
      .spyOn(api, "uploadChunk")
      .mockImplementation(async (sessionId, index, length, body, signal) => {
        if (index === 2) await advanceClock(ctx.emu.url, 3700); // past the 3600 s access TTL
        return original(sessionId, index, length, body, signal);
      });
    const data = patternBytes(4 * CHUNK + 3, 13);
    const file = await upload(api, {
      uri: myUri("up/long.bin"),
      size: data.length,
      mtimeMs: 5,
      replace: false,
      data,
    });
    spy.mockRestore();
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.refresh]).toBe(1);
    expect(s.requests[R.chunk]).toBe(5 + 1); // chunk 2 was refused once (401) and repeated
    expect(s.requests[R.cancel]).toBeUndefined();
    expectBytes(await download(api, file), data);
  });

  it("a source that ends early: BadRequest, the session cancelled, nothing left", async () => {
    const uri = myUri("up/short/short.bin");
    await api.create(myUri("up/short/keep.txt"), "file", false);
    await resetStats(ctx.emu.url);
    const data = patternBytes(2 * CHUNK + 500, 10);
    const err = await uploadFile(api, {
      uri,
      source: sourceOf(data),
      size: data.length + CHUNK, // declared longer than delivered
      mtimeMs: 5,
      replace: false,
      directMaxBytes: 0,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequest);
    expect((err as Error).message).toMatch(/ended before/);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.chunk]).toBe(2); // the two full chunks; the short third is never sent
    expect(s.requests[R.cancel]).toBe(1);
    await expect(api.info(uri)).rejects.toBeInstanceOf(NotFound);
    expect(await names(api, myUri("up/short"))).toEqual(["keep.txt"]);
    const again = await upload(api, { uri, size: data.length, mtimeMs: 5, replace: false, data });
    expect(again.size).toBe(data.length);
  });

  it("a source that fails while a chunk waits for its retry: nothing is left waiting", async () => {
    const uri = myUri("up/broken-retry.bin");
    await setFaults(ctx.emu.url, [{ route: R.chunk, failWith: 503, times: 1 }]);
    let failNow: (err: Error) => void = () => undefined;
    async function* halfThenFail() {
      yield patternBytes(CHUNK / 2, 12);
      // The first try has failed with the 503 and the retry waits for the rest of the chunk.
      await new Promise<void>((_, reject) => (failNow = reject));
    }
    const pending = uploadFile(api, {
      uri,
      source: Readable.from(halfThenFail()),
      size: 2 * CHUNK,
      mtimeMs: 5,
      replace: false,
      directMaxBytes: 0,
    }).catch((e: unknown) => e);
    await vi.waitFor(async () => expect(await calls(ctx.emu.url, R.chunk)).toBe(1));
    failNow(new Error("client went away"));
    expect(((await pending) as Error).message).toBe("client went away");
    await setFaults(ctx.emu.url, []);
    expect(await calls(ctx.emu.url, R.cancel)).toBe(1);
    // The retry gave up too: no call is left holding a slot of the queue.
    await vi.waitFor(() => expect(api.transport.queue.stats).toEqual({ running: 0, queued: 0 }));
  });

  it("a source that fails: the error passes, the session is cancelled", async () => {
    const uri = myUri("up/broken.bin");
    async function* broken() {
      yield patternBytes(CHUNK + 10, 11);
      throw new Error("disk on fire");
    }
    const err = await uploadFile(api, {
      uri,
      source: Readable.from(broken()),
      size: 3 * CHUNK,
      mtimeMs: 5,
      replace: false,
      directMaxBytes: 0,
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe("disk on fire");
    expect(await calls(ctx.emu.url, R.cancel)).toBe(1);
    await expect(api.info(uri)).rejects.toBeInstanceOf(NotFound);
  });

  it("replace:false onto an existing file is Exists and leaves it alone (both paths)", async () => {
    const uri = myUri("up/taken.bin");
    const old = patternBytes(3000, 12);
    const first = await upload(api, { uri, size: old.length, replace: true, data: old });
    for (const mtimeMs of [undefined, 12345]) {
      const err = await upload(api, {
        uri,
        size: 10,
        mtimeMs,
        replace: false,
        data: patternBytes(10),
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Exists);
    }
    expect(await calls(ctx.emu.url, R.chunk)).toBe(0);
    const now = await api.info(uri);
    expect(now.primary_entity).toBe(first.primary_entity);
    expectBytes(await download(api, now), old);
  });
});

// Relay mode (chunk_size 0) sends the whole file as one chunk: it waits for a retry on disk,
// so memory stays as bounded as with small chunks.
describe.each([
  ["8 MiB chunks", 8 * MiB],
  ["one chunk of the whole file (relay)", 0],
])("uploadFile memory: 1 GiB through %s", (_kind, chunkSize) => {
  const SIZE = 1024 * MiB;
  const BIG_CHUNK = chunkSize || SIZE;
  /** Bytes a chunk may hold in memory at once: the chunk, or nothing when it is spooled. */
  const HELD = chunkSize || 0;
  const ctx = useEmulator({ chunkSize, capacity: 4 * 1024 * MiB });

  /** 1 MiB pieces made on demand (piece i filled from i), hashed as they are produced. */
  function lazySource(hash: ReturnType<typeof createHash>): Readable {
    let i = 0;
    return new Readable({
      read() {
        if (i * MiB >= SIZE) {
          this.push(null);
          return;
        }
        const piece = Buffer.allocUnsafe(MiB);
        piece.fill(i % 251);
        piece.writeUInt32BE(i, 0);
        i++;
        hash.update(piece);
        this.push(piece);
      },
    });
  }

  it(
    "peak RSS growth stays under 2 × the chunk held in memory + 150 MB; the bytes arrive intact",
    { timeout: 120_000 },
    async () => {
      const api = newClient(ctx.emu.url);
      try {
        await api.me();
        await resetStats(ctx.emu.url);
        const sent = createHash("sha256");
        const baseline = process.memoryUsage().rss;
        let peak = baseline;
        const sampler = setInterval(() => {
          peak = Math.max(peak, process.memoryUsage().rss);
        }, 10);
        const started = process.hrtime.bigint();
        let file: File;
        try {
          file = await uploadFile(api, {
            uri: myUri("big/one-gib.bin"),
            source: lazySource(sent),
            size: SIZE,
            mtimeMs: Date.UTC(2024, 0, 1),
            replace: false,
          });
        } finally {
          clearInterval(sampler);
        }
        peak = Math.max(peak, process.memoryUsage().rss);
        const uploadMs = Number(process.hrtime.bigint() - started) / 1e6;
        const growth = peak - baseline;
        console.log(
          `1 GiB upload: ${uploadMs.toFixed(0)} ms, RSS baseline ${(baseline / MiB).toFixed(0)} MiB, ` +
            `peak growth ${(growth / MiB).toFixed(1)} MiB`,
        );
        expect(growth).toBeLessThan(2 * HELD + 150 * 1000 * 1000);
        expect(file.size).toBe(SIZE);
        const s = await stats(ctx.emu.url);
        expect(s.requests[R.chunk]).toBe(SIZE / BIG_CHUNK);
        // The chunks, plus the session request's small JSON body.
        expect(s.bytesIn).toBeGreaterThanOrEqual(SIZE);
        expect(s.bytesIn).toBeLessThan(SIZE + 4096);

        // Stream the download back and compare hashes.
        const got = createHash("sha256");
        const d = await new Downloader(api).open({
          uri: myUri("big/one-gib.bin"),
          entity: file.primary_entity,
          size: SIZE,
        });
        expect(d.statusCode).toBe(200);
        let length = 0;
        await d.pipeTo(
          new Writable({
            write(piece: Buffer, _encoding, done) {
              got.update(piece);
              length += piece.length;
              done();
            },
          }),
        );
        expect(length).toBe(SIZE);
        expect(got.digest("hex")).toBe(sent.digest("hex"));
      } finally {
        await api.close();
      }
    },
  );
});
