import { beforeAll, describe, expect, it } from "vitest";
import { seed } from "../helpers/control.js";
import { Api, myUri } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { open, raw } from "../helpers/http-raw.js";
import { settled } from "../helpers/wait.js";

/**
 * A media player's access pattern (docs/clients.md §D.4): HEAD, `Range: bytes=0-`, seeks near the
 * end, suffix ranges and abandoned reads, on a 64 MiB file. Counted upstream: content calls and
 * the bytes the emulator actually sent.
 */

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const CONTENT_ROUTE = "GET /api/v4/file/content/:id/:speed/:name";
const URL_ROUTE = "POST /api/v4/file/url";
const UA = "VLC/3.0.20 LibVLC/3.0.20";
/** Bounds the wait for an abandoned transfer to stop upstream. */
const SETTLE_MS = 20_000;

/** Byte i of a seeded file is i % 251: checks a slice that starts at `offset`. */
function firstMismatch(buf: Buffer, offset: number): number {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== (offset + i) % 251) return i;
  return -1;
}

/** A request as the player sends it (its User-Agent). */
const player = (base: string, method: string, path: string, headers = {}) =>
  raw(base, method, path, { headers: { "User-Agent": UA, ...headers } });

describe("media player access pattern", () => {
  const fx = useGateway();
  const path = "/media/movie.mp4";

  beforeAll(async () => {
    await seed(fx.emu.url, { uri: myUri("media"), files: 1, size: SIZE });
    // Renamed through the API so the gateway has never seen the file.
    const api = new Api(fx.emu.url);
    await api.login();
    const r = await api.call("POST", "/file/rename", {
      json: { uri: myUri("media/file-00000.bin"), new_name: "movie.mp4" },
    });
    expect(r.json?.code, r.text).toBe(0);
  });

  const routes = async () => (await fx.stats()).requests;

  it("HEAD answers size, type and validators without any content call", async () => {
    await fx.resetStats();
    const head = await player(fx.url, "HEAD", path);
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe(String(SIZE));
    expect(head.headers["accept-ranges"]).toBe("bytes");
    expect(head.headers["content-type"]).toBe("video/mp4");
    expect(head.headers["etag"]).toMatch(/^"[^"]+"$/);
    expect(head.headers["last-modified"]).toMatch(/ GMT$/);
    expect(head.body.length).toBe(0);
    const first = await routes();
    expect(first[CONTENT_ROUTE] ?? 0, JSON.stringify(first)).toBe(0);
    expect(first[URL_ROUTE] ?? 0, JSON.stringify(first)).toBe(0);

    await fx.resetStats();
    const again = await player(fx.url, "HEAD", path, { Range: "bytes=0-" });
    expect(again.status).toBe(200);
    expect(again.body.length).toBe(0);
    expect(await routes(), "a second HEAD goes upstream").toEqual({});
  });

  it("serves a 1 MiB range at 90% exactly, fetching no more than it upstream", async () => {
    const start = Math.floor(SIZE * 0.9);
    const end = start + MiB - 1;
    await fx.resetStats();
    const r = await player(fx.url, "GET", path, { Range: `bytes=${start}-${end}` });
    const stats = await fx.stats();
    expect(r.status).toBe(206);
    expect(r.headers["content-range"]).toBe(`bytes ${start}-${end}/${SIZE}`);
    expect(r.headers["content-length"]).toBe(String(MiB));
    expect(r.headers["accept-ranges"]).toBe("bytes");
    expect(r.body.length).toBe(MiB);
    expect(firstMismatch(r.body, start)).toBe(-1);
    expect(stats.requests[CONTENT_ROUTE]).toBe(1);
    expect(stats.bytesOut, "upstream bytes for a 1 MiB range").toBeLessThanOrEqual(2 * MiB);
  });

  it("serves `bytes=0-` as a 206 of the whole file", async () => {
    await fx.resetStats();
    const r = await player(fx.url, "GET", path, { Range: "bytes=0-" });
    const stats = await fx.stats();
    expect(r.status).toBe(206);
    expect(r.headers["content-range"]).toBe(`bytes 0-${SIZE - 1}/${SIZE}`);
    expect(r.headers["content-length"]).toBe(String(SIZE));
    expect(r.body.length).toBe(SIZE);
    expect(firstMismatch(r.body, 0)).toBe(-1);
    expect(stats.requests[CONTENT_ROUTE]).toBe(1);
    expect(stats.bytesOut).toBeLessThanOrEqual(SIZE + MiB);
  });

  it("serves suffix ranges and open ranges near the end (moov atom at the end)", async () => {
    await fx.resetStats();
    const suffix = await player(fx.url, "GET", path, { Range: "bytes=-1000" });
    expect(suffix.status).toBe(206);
    expect(suffix.headers["content-range"]).toBe(`bytes ${SIZE - 1000}-${SIZE - 1}/${SIZE}`);
    expect(suffix.headers["content-length"]).toBe("1000");
    expect(firstMismatch(suffix.body, SIZE - 1000)).toBe(-1);
    expect(suffix.body.length).toBe(1000);

    const tailStart = SIZE - 65_536;
    const tail = await player(fx.url, "GET", path, { Range: `bytes=${tailStart}-` });
    expect(tail.status).toBe(206);
    expect(tail.headers["content-range"]).toBe(`bytes ${tailStart}-${SIZE - 1}/${SIZE}`);
    expect(tail.body.length).toBe(65_536);
    expect(firstMismatch(tail.body, tailStart)).toBe(-1);

    // A range running past the end is cut at the end.
    const over = await player(fx.url, "GET", path, {
      Range: `bytes=${SIZE - 10}-${SIZE + 5000}`,
    });
    expect(over.status).toBe(206);
    expect(over.headers["content-range"]).toBe(`bytes ${SIZE - 10}-${SIZE - 1}/${SIZE}`);
    expect(firstMismatch(over.body, SIZE - 10)).toBe(-1);
    expect(over.body.length).toBe(10);

    const stats = await fx.stats();
    expect(stats.requests[CONTENT_ROUTE]).toBe(3);
    expect(stats.bytesOut).toBeLessThanOrEqual(1000 + 65_536 + 10 + MiB);
    // The signed URL is reused across seeks.
    expect(stats.requests[URL_ROUTE] ?? 0).toBeLessThanOrEqual(1);
  });

  it("honours If-Range: the current ETag keeps the range, another one sends it all", async () => {
    const head = await player(fx.url, "HEAD", path);
    const etag = String(head.headers["etag"]);
    const keep = await player(fx.url, "GET", path, {
      Range: "bytes=1000-1999",
      "If-Range": etag,
    });
    expect(keep.status).toBe(206);
    expect(keep.headers["content-range"]).toBe(`bytes 1000-1999/${SIZE}`);
    expect(firstMismatch(keep.body, 1000)).toBe(-1);
    expect(keep.body.length).toBe(1000);

    const changed = await player(fx.url, "GET", path, {
      Range: "bytes=1000-1999",
      "If-Range": '"some-older-version"',
    });
    expect(changed.status).toBe(200);
    expect(changed.headers["content-range"]).toBeUndefined();
    expect(changed.body.length).toBe(SIZE);
    expect(firstMismatch(changed.body, 0)).toBe(-1);
  });

  it("answers an unsatisfiable range with 416 and no content call", async () => {
    await fx.resetStats();
    const r = await player(fx.url, "GET", path, { Range: `bytes=${SIZE}-` });
    expect(r.status).toBe(416);
    expect(r.headers["content-range"]).toBe(`bytes */${SIZE}`);
    expect((await routes())[CONTENT_ROUTE] ?? 0).toBe(0);
  });

  it("stops the upstream transfer when the player abandons a GET", async () => {
    for (const range of [undefined, "bytes=0-", `bytes=${8 * MiB}-`]) {
      await fx.resetStats();
      const { req, res } = await open(fx.url, "GET", path, {
        headers: { "User-Agent": UA, ...(range ? { Range: range } : {}) },
      });
      expect(res.statusCode).toBe(range ? 206 : 200);
      let got = 0;
      await new Promise<void>((resolve) => {
        res.on("data", (c: Buffer) => {
          got += c.length;
          if (got >= 256 * 1024) {
            req.destroy();
            resolve();
          }
        });
        res.on("close", () => resolve());
      });
      expect(got).toBeGreaterThanOrEqual(256 * 1024);

      // The upstream count grows while data is in flight: read it once it stops.
      await settled(
        "the upstream transfer to stop",
        async () => (await fx.stats()).bytesOut,
        SETTLE_MS,
      );
      const stats = await fx.stats();
      expect(stats.requests[CONTENT_ROUTE], `${range}`).toBe(1);
      expect(
        stats.bytesOut,
        `upstream bytes after abandoning ${range ?? "a full GET"}`,
      ).toBeLessThan(SIZE / 4);
    }

    // The gateway still serves the file afterwards.
    const r = await player(fx.url, "GET", path, { Range: "bytes=100-199" });
    expect(r.status).toBe(206);
    expect(firstMismatch(r.body, 100)).toBe(-1);
  });
});

describe("small files", () => {
  const gw = useGateway();
  it("are read from upstream once per version, then served from memory, ranges included", async () => {
    expect((await raw(gw.url, "PUT", "/small.txt", { body: "0123456789" })).status).toBe(201);
    await gw.resetStats();
    for (let i = 0; i < 5; i++)
      expect((await raw(gw.url, "GET", "/small.txt")).text).toBe("0123456789");
    const part = await raw(gw.url, "GET", "/small.txt", { headers: { range: "bytes=2-4" } });
    expect(part.status).toBe(206);
    expect(part.headers["content-range"]).toBe("bytes 2-4/10");
    expect(part.text).toBe("234");
    const { requests } = await gw.stats();
    expect(requests["GET /api/v4/file/content/:id/:speed/:name"]).toBe(1);
    // A new version is read anew.
    expect((await raw(gw.url, "PUT", "/small.txt", { body: "abcdefghij" })).status).toBe(204);
    expect((await raw(gw.url, "GET", "/small.txt")).text).toBe("abcdefghij");
    expect((await gw.stats()).requests["GET /api/v4/file/content/:id/:speed/:name"]).toBe(2);
  });
});
