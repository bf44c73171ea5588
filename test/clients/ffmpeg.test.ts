import { createReadStream } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Api, myUri } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { raw } from "../helpers/http-raw.js";
import { settled } from "../helpers/wait.js";
import { explain, ok, requireTool, run } from "./tools.js";

/**
 * A media player's access pattern with the real ffmpeg/ffprobe (docs/clients.md §D.4): an MP4 whose
 * moov atom is at the end (no +faststart), uploaded through the gateway, probed and seeked over
 * HTTP. The player must read the head, jump to the moov at the end, then jump to the seek point:
 * the gateway must serve those as ranged reads and must not pull the whole file upstream.
 */

const CONTENT_ROUTE = "GET /api/v4/file/content/:id/:speed/:name";
const SLOW_MS = 180_000;
const RUN_MS = 120_000;
const SEEK_SECONDS = 45;
/** Bounds the wait for the upstream transfer behind a client to stop. */
const SETTLE_MS = 20_000;

/**
 * 60 s of 640x360 test pattern with temporal noise: incompressible enough for a file of about
 * 120 MB, so the few MB of socket buffering behind each abandoned ranged read (see the seek test)
 * stay small next to the file size.
 */
const ENCODE = [
  "-v",
  "error",
  "-f",
  "lavfi",
  "-i",
  "testsrc=duration=60:size=640x360:rate=25",
  "-vf",
  "noise=alls=20:allf=t",
  "-c:v",
  "libx264",
  "-preset",
  "ultrafast",
  "-g",
  "25",
  "-pix_fmt",
  "yuv420p",
];

const PROBE = [
  "-v",
  "error",
  "-show_entries",
  "format=duration,size,format_name,bit_rate,nb_streams:" +
    "stream=index,codec_name,codec_type,profile,width,height,pix_fmt,r_frame_rate," +
    "avg_frame_rate,time_base,duration,nb_frames,bit_rate",
  "-of",
  "json",
];

/** Top-level MP4 boxes as [type, offset, size]. */
async function topLevelBoxes(path: string): Promise<[string, number, number][]> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const out: [string, number, number][] = [];
    const head = Buffer.alloc(16);
    for (let off = 0; off < size;) {
      await fh.read(head, 0, 16, off);
      let len = head.readUInt32BE(0);
      const type = head.toString("latin1", 4, 8);
      if (len === 1) len = Number(head.readBigUInt64BE(8));
      if (len === 0) len = size - off;
      out.push([type, off, len]);
      if (len < 8) throw new Error(`bad box ${type} at ${off}`);
      off += len;
    }
    return out;
  } finally {
    await fh.close();
  }
}

describe("ffmpeg and ffprobe over the gateway (moov atom at the end)", () => {
  const fx = useGateway();
  let dir: string;
  let video: string;
  let size: number;
  let ffmpeg: string;
  let ffprobe: string;
  const path = "/media/clip%20one.mp4";
  const url = () => `${fx.url}${path}`;

  /** The stats once the upstream byte count stops moving: upstream reads outlast the client's. */
  async function settledStats() {
    await settled(
      "the upstream transfer to stop",
      async () => (await fx.stats()).bytesOut,
      SETTLE_MS,
    );
    return fx.stats();
  }

  beforeAll(async () => {
    ffmpeg = requireTool("ffmpeg", "ffmpeg");
    ffprobe = requireTool("ffprobe", "ffmpeg");
    dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-ffmpeg-"));
    video = join(dir, "clip.mp4");
    ok("ffmpeg encode", await run(ffmpeg, [...ENCODE, video], { timeoutMs: RUN_MS }));
    size = (await stat(video)).size;
  }, SLOW_MS);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the test video is a few tens of MB with its moov atom after the media data", async () => {
    const boxes = await topLevelBoxes(video);
    const types = boxes.map(([t]) => t);
    expect(types[0], JSON.stringify(boxes)).toBe("ftyp");
    expect(types.indexOf("moov"), JSON.stringify(boxes)).toBeGreaterThan(types.indexOf("mdat"));
    expect(types.indexOf("mdat")).toBeGreaterThan(0);
    expect(size).toBeGreaterThan(50 * 1024 * 1024);
  });

  it(
    "uploads through the gateway with PUT",
    async () => {
      const mk = await fetch(`${fx.url}/media/`, { method: "MKCOL" });
      expect(mk.status).toBe(201);
      const put = await raw(fx.url, "PUT", path, {
        headers: { "content-length": size, "content-type": "video/mp4" },
        body: createReadStream(video),
      });
      expect(put.status, put.text).toBe(201);
      const api = new Api(fx.emu.url);
      await api.login();
      const info = await api.call<{ size: number; name: string }>("GET", "/file/info", {
        query: { uri: myUri("media/clip one.mp4") },
      });
      expect(info.json?.code, info.text).toBe(0);
      expect(info.json.data!.size).toBe(size);
      const head = await fetch(url(), { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.headers.get("content-length")).toBe(String(size));
      expect(head.headers.get("content-type")).toBe("video/mp4");
      expect(head.headers.get("accept-ranges")).toBe("bytes");
    },
    SLOW_MS,
  );

  it(
    "ffprobe over HTTP reports the same format and streams as a local ffprobe",
    async () => {
      const local = ok(
        "local ffprobe",
        await run(ffprobe, [...PROBE, video], { timeoutMs: RUN_MS }),
      );
      await fx.resetStats();
      const remote = await run(ffprobe, [...PROBE, url()], { timeoutMs: RUN_MS });
      const stats = await settledStats();
      const l = JSON.parse(local) as { format: { duration: string }; streams: unknown[] };
      const r = JSON.parse(ok("ffprobe over the gateway", remote)) as typeof l;
      expect(r, explain("ffprobe over the gateway", remote)).toEqual(l);
      expect(Number(l.format.duration)).toBeCloseTo(60, 0);
      expect(l.streams).toHaveLength(1);
      console.info(
        `ffprobe: ${stats.requests[CONTENT_ROUTE] ?? 0} upstream content calls, ` +
          `${stats.bytesOut} of ${size} bytes upstream`,
      );
      // The moov atom is at the end: the probe had to read the head and then jump to the end.
      expect(stats.requests[CONTENT_ROUTE], JSON.stringify(stats)).toBeGreaterThan(1);
    },
    SLOW_MS,
  );

  it(
    `ffmpeg -ss ${SEEK_SECONDS} decodes the same frame as locally, with ranged reads`,
    async () => {
      const args = (input: string) => [
        "-v",
        "error",
        "-ss",
        String(SEEK_SECONDS),
        "-i",
        input,
        "-frames:v",
        "1",
        "-f",
        "framemd5",
        "-",
      ];
      const local = ok("local seek", await run(ffmpeg, args(video), { timeoutMs: RUN_MS }));
      await fx.resetStats();
      const remote = await run(ffmpeg, args(url()), { timeoutMs: RUN_MS });
      const stats = await settledStats();
      const frames = (s: string) => s.split("\n").filter((line) => line && !line.startsWith("#"));
      expect(frames(ok("ffmpeg seek over the gateway", remote))).toEqual(frames(local));
      expect(frames(local)).toHaveLength(1);
      // -ss resets timestamps: tell the frame at 45 s from the first one by its hash.
      const first = ok(
        "local first frame",
        await run(
          ffmpeg,
          args(video).filter((_, i) => i !== 2 && i !== 3),
          { timeoutMs: RUN_MS },
        ),
      );
      const hash = (s: string) => frames(s)[0]!.split(",").pop()!.trim();
      expect(hash(local)).not.toBe(hash(first));

      const calls = stats.requests[CONTENT_ROUTE] ?? 0;
      const ratio = stats.bytesOut / size;
      console.info(
        `ffmpeg -ss ${SEEK_SECONDS}: ${calls} upstream content calls, ` +
          `${stats.bytesOut} of ${size} bytes upstream (${(ratio * 100).toFixed(1)}%)`,
      );
      expect(calls, JSON.stringify(stats)).toBeGreaterThan(1);
      expect(ratio, `upstream bytes for the seek: ${JSON.stringify(stats)}`).toBeLessThan(0.5);
    },
    SLOW_MS,
  );
});
