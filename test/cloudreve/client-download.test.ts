/**
 * The Downloader (src/cloudreve/download.ts) against the emulator over HTTP: ranged reads, one
 * signed URL per version reused across reads, expired URLs renewed transparently, a new
 * version getting a new URL, and a site URL the gateway cannot reach.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { CloudreveApi } from "../../src/cloudreve/api.js";
import { Downloader, type DownloadRequest } from "../../src/cloudreve/download.js";
import type { File } from "../../src/cloudreve/types.js";
import { myUri, useEmulator } from "../helpers/emulator.js";
import { contentOf } from "../helpers/content.js";
import { newClient, patternBytes } from "./client-helpers.js";
import { calls, emulatorClock, R, resetStats, seed, seedBytes, stats } from "../helpers/control.js";

const SIZE = 300_000;
const URL_TTL = 3600;

async function read(d: Downloader, r: DownloadRequest) {
  const res = await d.open(r);
  return {
    status: res.statusCode,
    headers: res.headers,
    body: await contentOf(res),
  };
}

function expectBytes(got: Buffer, want: Buffer): void {
  expect(got.length).toBe(want.length);
  expect(got.equals(want)).toBe(true);
}

// Each read goes through the general client or through bulkGet, by a threshold set here.
describe.each([
  ["streamed", Infinity],
  ["bulk", 0],
])("Downloader (%s reads)", (_kind, bulkFrom) => {
  // Access tokens outlive the URL expiries the clock is moved across, so only URLs expire here.
  const ctx = useEmulator({ entityUrlTtl: URL_TTL, accessTtl: 30 * 86400, refreshTtl: 60 * 86400 });
  let api: CloudreveApi;
  let file: File;
  const uri = myUri("dl/data.bin");
  beforeAll(async () => {
    await seed(ctx.emu.url, { uri: myUri("dl"), files: 1, size: SIZE });
    api = newClient(ctx.emu.url);
    await api.rename(myUri("dl/file-00000.bin"), "data.bin");
    file = await api.info(uri);
  });
  beforeEach(() => resetStats(ctx.emu.url));
  afterAll(() => api.close());

  it("a ranged read is 206 with exactly the bytes asked for", async () => {
    const d = new Downloader(api, Date.now, bulkFrom);
    const r = await read(d, { uri, entity: file.primary_entity, range: "bytes=1000-1999" });
    expect(r.status).toBe(206);
    expect(r.headers["content-range"]).toBe(`bytes 1000-1999/${SIZE}`);
    expectBytes(r.body, seedBytes(1000, 1000));
    const tail = await read(d, { uri, entity: file.primary_entity, range: "bytes=-10" });
    expect(tail.status).toBe(206);
    expectBytes(tail.body, seedBytes(10, SIZE - 10));
    const whole = await read(d, { uri, entity: file.primary_entity });
    expect(whole.status).toBe(200);
    expect(whole.headers.etag).toBe(`"${file.primary_entity}"`);
    expectBytes(whole.body, seedBytes(SIZE));
  });

  it("an unsatisfiable range passes through as 416", async () => {
    const d = new Downloader(api, Date.now, bulkFrom);
    const r = await read(d, { uri, entity: file.primary_entity, range: `bytes=${SIZE}-` });
    expect(r.status).toBe(416);
    expect(r.headers["content-range"]).toBe(`bytes */${SIZE}`);
  });

  it("fetches the URL once per version and reuses it for every read", async () => {
    const d = new Downloader(api, Date.now, bulkFrom);
    for (let i = 0; i < 5; i++) {
      const r = await read(d, {
        uri,
        entity: file.primary_entity,
        range: `bytes=${i * 10}-${i * 10 + 9}`,
      });
      expectBytes(r.body, seedBytes(10, i * 10));
    }
    await Promise.all(
      Array.from({ length: 5 }, () =>
        read(d, { uri, entity: file.primary_entity, range: "bytes=0-0" }),
      ),
    );
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.url]).toBe(1);
    expect(s.requests[R.content]).toBe(10);
  });

  it("concurrent first reads of one version share one URL request", async () => {
    const d = new Downloader(api, Date.now, bulkFrom);
    const reads = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        read(d, { uri, entity: file.primary_entity, range: `bytes=${i}-${i}` }),
      ),
    );
    reads.forEach((r, i) => expectBytes(r.body, seedBytes(1, i)));
    expect(await calls(ctx.emu.url, R.url)).toBe(1);
  });

  it("an expired URL the client did not see coming is renewed transparently (one failed GET)", async () => {
    const d = new Downloader(api, Date.now, bulkFrom);
    await read(d, { uri, entity: file.primary_entity, range: "bytes=0-9" });
    const clock = await emulatorClock(ctx.emu.url);
    await clock.advance(URL_TTL + 60);
    await resetStats(ctx.emu.url);
    const r = await read(d, { uri, entity: file.primary_entity, range: "bytes=10-19" });
    expect(r.status).toBe(206);
    expectBytes(r.body, seedBytes(10, 10));
    await read(d, { uri, entity: file.primary_entity, range: "bytes=20-29" });
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.url]).toBe(1);
    expect(s.requests[R.content]).toBe(3); // 40005, then the repeat, then the next read
  });

  it("a URL about to expire is replaced before use when the client's clock sees it", async () => {
    const clock = await emulatorClock(ctx.emu.url);
    const d = new Downloader(api, clock.now, bulkFrom);
    await read(d, { uri, entity: file.primary_entity, range: "bytes=0-9" });
    // Inside the one-minute margin, and past the server's own URL cache (TTL - 600 s).
    await clock.advance(URL_TTL - 30);
    await resetStats(ctx.emu.url);
    const r = await read(d, { uri, entity: file.primary_entity, range: "bytes=5-14" });
    expectBytes(r.body, seedBytes(10, 5));
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.url]).toBe(1);
    expect(s.requests[R.content]).toBe(1); // no failed GET
  });

  it("a new version (new entity) gets a new URL and its own bytes", async () => {
    const d = new Downloader(api, Date.now, bulkFrom);
    const target = myUri("dl/versioned.bin");
    const v1 = await api.putContent(target, patternBytes(5000, 1), 5000);
    expectBytes(
      (await read(d, { uri: target, entity: v1.primary_entity })).body,
      patternBytes(5000, 1),
    );
    const v2 = await api.putContent(target, patternBytes(7000, 2), 7000);
    expect(v2.primary_entity).not.toBe(v1.primary_entity);
    const r = await read(d, { uri: target, entity: v2.primary_entity, range: "bytes=6000-6999" });
    expect(r.status).toBe(206);
    expectBytes(r.body, patternBytes(7000, 2).subarray(6000));
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.url]).toBe(2);
  });
});

describe("Downloader with a site URL the gateway cannot reach", () => {
  const ctx = useEmulator({ siteUrl: "http://unreachable.invalid:9" });
  let api: CloudreveApi;
  beforeAll(async () => {
    await seed(ctx.emu.url, { uri: myUri("far"), files: 1, size: 4096 });
    api = newClient(ctx.emu.url);
  });
  afterAll(() => api.close());

  it("reads through the configured upstream (only the path is signed)", async () => {
    const uri = myUri("far/file-00000.bin");
    const { url } = await api.fileUrl(uri);
    expect(url.startsWith("http://unreachable.invalid:9/api/v4/file/content/")).toBe(true);
    const file = await api.info(uri);
    const d = new Downloader(api);
    const whole = await read(d, { uri, entity: file.primary_entity });
    expect(whole.status).toBe(200);
    expectBytes(whole.body, seedBytes(4096));
    const part = await read(d, { uri, entity: file.primary_entity, range: "bytes=100-199" });
    expect(part.status).toBe(206);
    expectBytes(part.body, seedBytes(100, 100));
  });
});
