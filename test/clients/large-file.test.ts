import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Api } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { ok, rclone, rcloneEnv, requireTool, sha256File, upstreamTree } from "./tools.js";

/**
 * A 2 GiB file up and down through rclone, byte-exact (sha256), with the gateway's memory
 * bounded. The gateway (and the emulator) run in this process, so the process's RSS is sampled
 * during each transfer; its peak growth must stay under 2 × chunk size + 200 MiB, i.e. nothing
 * near the file's size may be buffered.
 */

const MiB = 1024 * 1024;
const SIZE = 2 * 1024 * MiB;
const CHUNK = 16 * MiB;
const BLOCK = MiB;
const RSS_BOUND = 2 * CHUNK + 200 * MiB;
const TRANSFER_TIMEOUT = 20 * 60_000;

/**
 * Writes SIZE bytes: a random 1 MiB block repeated, each copy stamped with its index every 4 KiB,
 * so a chunk that is dropped, repeated or misplaced changes the hash. Returns the sha256.
 */
async function generate(path: string): Promise<string> {
  const base = randomBytes(BLOCK);
  const hash = createHash("sha256");
  const fh = await open(path, "w");
  try {
    for (let k = 0; k < SIZE / BLOCK; k++) {
      const block = Buffer.from(base);
      for (let off = 0; off < BLOCK; off += 4096) block.writeUInt32BE(k, off);
      hash.update(block);
      await fh.write(block, 0, BLOCK);
    }
  } finally {
    await fh.close();
  }
  return hash.digest("hex");
}

/** Samples this process's RSS while `work` runs; returns the peak growth over the start. */
async function peakRssGrowth<T>(
  work: () => Promise<T>,
): Promise<{ result: T; growth: number; peak: number }> {
  const start = process.memoryUsage().rss;
  let peak = start;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, growth: peak - start, peak };
  } finally {
    clearInterval(timer);
  }
}

const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

describe("a 2 GiB file through rclone", () => {
  const fx = useGateway({ chunkSize: CHUNK, capacity: 8 * 1024 * MiB });
  let api: Api;
  let work: string;
  let src: string;
  let digest: string;

  beforeAll(async () => {
    requireTool("rclone", "rclone");
    api = new Api(fx.emu.url);
    await api.login();
    work = await mkdtemp(join(tmpdir(), "cloudreve-dav-large-"));
    src = join(work, "big.bin");
    digest = await generate(src);
  }, 5 * 60_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  const env = () => rcloneEnv(fx.url, "other");
  const rcArgs = ["--transfers", "1", "--checkers", "1", "--retries", "1"];

  it(
    "uploads it with rclone copyto in 16 MiB chunks, memory bounded",
    async () => {
      await fx.resetStats();
      const { result, growth, peak } = await peakRssGrowth(() =>
        rclone(env(), ["copyto", src, "X:large/big file.bin", ...rcArgs], TRANSFER_TIMEOUT),
      );
      ok("rclone copyto (upload)", result);
      console.info(
        `upload: peak RSS ${mib(peak)}, growth ${mib(growth)} (bound ${mib(RSS_BOUND)})`,
      );
      expect(growth, `peak RSS growth ${mib(growth)}`).toBeLessThan(RSS_BOUND);

      const t = await upstreamTree(api, "large");
      expect(t?.get("big file.bin")?.size).toBe(SIZE);
      const stats = await fx.stats();
      // One session, SIZE / CHUNK chunk uploads, each byte sent once.
      expect(stats.requests["PUT /api/v4/file/upload"]).toBe(1);
      expect(stats.requests["POST /api/v4/file/upload/:sessionId/:index"]).toBe(SIZE / CHUNK);
      expect(stats.bytesIn).toBeGreaterThanOrEqual(SIZE);
      expect(stats.bytesIn).toBeLessThan(SIZE + 10 * MiB);
    },
    TRANSFER_TIMEOUT + 60_000,
  );

  it(
    "downloads it with rclone copyto byte-identical (sha256), memory bounded",
    async () => {
      const dest = join(work, "down.bin");
      await fx.resetStats();
      const { result, growth, peak } = await peakRssGrowth(() =>
        rclone(env(), ["copyto", "X:large/big file.bin", dest, ...rcArgs], TRANSFER_TIMEOUT),
      );
      ok("rclone copyto (download)", result);
      console.info(
        `download: peak RSS ${mib(peak)}, growth ${mib(growth)} (bound ${mib(RSS_BOUND)})`,
      );
      expect(growth, `peak RSS growth ${mib(growth)}`).toBeLessThan(RSS_BOUND);
      expect((await stat(dest)).size).toBe(SIZE);
      // Streamed once from Cloudreve: no second fetch, no read-ahead beyond the file.
      const stats = await fx.stats();
      expect(stats.bytesOut).toBeGreaterThanOrEqual(SIZE);
      expect(stats.bytesOut).toBeLessThan(SIZE + 10 * MiB);
      expect(await sha256File(dest)).toBe(digest);
      await rm(dest, { force: true });
    },
    TRANSFER_TIMEOUT + 60_000,
  );
});
