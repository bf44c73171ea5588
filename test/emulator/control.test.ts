import { describe, expect, it } from "vitest";
import { Api, myUri, useEmulator } from "../helpers/emulator.js";

interface Stats {
  requests: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
}
import type { FaultRule } from "../helpers/control.js";
import { request } from "undici";
interface FileObj {
  type: number;
  id: string;
  name: string;
  size: number;
  created_at: string;
}
interface ListData {
  files: FileObj[];
  pagination: { next_token?: string; is_cursor?: boolean };
}

async function stats(api: Api): Promise<Stats> {
  const r = await api.call("GET", "/__emulator/stats");
  expect(r.status).toBe(200);
  return r.json as unknown as Stats;
}

async function resetStats(api: Api): Promise<void> {
  const r = await api.call("POST", "/__emulator/stats/reset");
  expect(r.status).toBe(200);
}

async function faults(api: Api, rules: FaultRule[]): Promise<void> {
  const r = await api.call("POST", "/__emulator/faults", { json: { rules } });
  expect(r.status).toBe(200);
}

/** `now` as epoch milliseconds, whatever representation the control route picked. */
function toMs(now: unknown): number {
  if (typeof now === "string") {
    const n = Number(now);
    if (Number.isFinite(n)) return n < 1e11 ? n * 1000 : n;
    const t = Date.parse(now);
    expect(Number.isNaN(t)).toBe(false);
    return t;
  }
  expect(typeof now).toBe("number");
  const n = now as number;
  return n < 1e11 ? n * 1000 : n;
}

async function clock(api: Api, advanceSeconds: number): Promise<number> {
  const r = await api.call("POST", "/__emulator/clock", { json: { advanceSeconds } });
  expect(r.status).toBe(200);
  const body = r.json as unknown as { now: unknown };
  expect(body).toHaveProperty("now");
  return toMs(body.now);
}

async function listAll(api: Api, uri: string, pageSize: number): Promise<FileObj[][]> {
  const pages: FileObj[][] = [];
  let token: string | undefined;
  for (let guard = 0; guard < 100; guard++) {
    const query: Record<string, string | number> = { uri, page_size: pageSize, order_by: "name" };
    if (token) query["next_page_token"] = token;
    const r = await api.call<ListData>("GET", "/file", { query });
    expect(r.json.code).toBe(0);
    pages.push(r.json.data!.files);
    token = r.json.data!.pagination.next_token;
    if (!token) break;
  }
  return pages;
}

describe("control: stats", () => {
  const ctx = useEmulator();

  it("stats count API calls by 'METHOD /api/v4/pattern' and not /__emulator routes", async () => {
    await resetStats(ctx.api);
    await ctx.api.call("GET", "/file", { query: { uri: "cloudreve://my" } });
    await ctx.api.call("GET", "/file", { query: { uri: myUri("missing") } });
    await ctx.api.call("GET", "/user/me");
    await ctx.api.call("POST", "/file/create", { json: { uri: myUri("st"), type: "folder" } });
    await ctx.api.call("GET", "/file/info", { query: { uri: myUri("st") } });
    await ctx.api.call("GET", "/__emulator/stats");
    const s = await stats(ctx.api);
    expect(s.requests["GET /api/v4/file"]).toBe(2);
    expect(s.requests["GET /api/v4/user/me"]).toBe(1);
    expect(s.requests["POST /api/v4/file/create"]).toBe(1);
    expect(s.requests["GET /api/v4/file/info"]).toBe(1);
    expect(Object.keys(s.requests).filter((k) => k.includes("__emulator"))).toEqual([]);
    const total = Object.values(s.requests).reduce((a, b) => a + b, 0);
    expect(total).toBe(5);
    expect(s.bytesIn).toBeGreaterThan(0);
    expect(s.bytesOut).toBeGreaterThan(0);
  });

  it("stats key routes with path parameters by their pattern", async () => {
    await resetStats(ctx.api);
    const put = await ctx.api.call<{ session_id: string }>("PUT", "/file/upload", {
      json: { uri: myUri("st/up.bin"), size: 3 },
    });
    expect(put.json.code).toBe(0);
    const sid = put.json.data!.session_id;
    const chunk = await ctx.api.call("POST", `/file/upload/${sid}/0`, {
      body: new Uint8Array([1, 2, 3]),
      headers: { "content-type": "application/octet-stream" },
    });
    expect(chunk.json.code).toBe(0);
    const s = await stats(ctx.api);
    expect(s.requests["PUT /api/v4/file/upload"]).toBe(1);
    expect(s.requests["POST /api/v4/file/upload/:sessionId/:index"]).toBe(1);
    expect(Object.keys(s.requests).some((k) => k.includes(sid))).toBe(false);
    expect(s.bytesIn).toBeGreaterThanOrEqual(3);
  });

  it("stats/reset zeroes the counters", async () => {
    await ctx.api.call("GET", "/user/me");
    expect(Object.values((await stats(ctx.api)).requests).some((n) => n > 0)).toBe(true);
    await resetStats(ctx.api);
    const s = await stats(ctx.api);
    expect(Object.values(s.requests).every((n) => n === 0)).toBe(true);
    expect(s.bytesIn).toBe(0);
    expect(s.bytesOut).toBe(0);
  });
});

describe("control: seed", () => {
  const OTHER = { email: "seeded@example.com", password: "seeded-pass" };
  const ctx = useEmulator({ extraUsers: [OTHER] });

  it("seed answers {files, folders} and creates the folder (mkdir -p)", async () => {
    const r = await ctx.api.call("POST", "/__emulator/seed", {
      json: { uri: myUri("deep/er/seed"), files: 3, folders: 2, size: 7 },
    });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ files: 3, folders: 2 });
    const pages = await listAll(ctx.api, myUri("deep/er/seed"), 100);
    const all = pages.flat();
    expect(all.map((f) => f.name)).toEqual([
      "folder-00000",
      "folder-00001",
      "file-00000.bin",
      "file-00001.bin",
      "file-00002.bin",
    ]);
    expect(all.map((f) => f.type)).toEqual([1, 1, 0, 0, 0]);
    expect(all.map((f) => f.size)).toEqual([0, 0, 7, 7, 7]);
  });

  it("seed 10,000 files lists completely", async () => {
    const r = await ctx.api.call("POST", "/__emulator/seed", {
      json: { uri: myUri("big"), files: 10_000, size: 1 },
    });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ files: 10_000, folders: 0 });
    const pages = await listAll(ctx.api, myUri("big"), 2000);
    expect(pages.map((p) => p.length)).toEqual([2000, 2000, 2000, 2000, 2000]);
    const names = pages.flat().map((f) => f.name);
    expect(new Set(names).size).toBe(10_000);
    expect(names[0]).toBe("file-00000.bin");
    expect(names[9999]).toBe("file-09999.bin");
    const expected = Array.from(
      { length: 10_000 },
      (_, i) => `file-${String(i).padStart(5, "0")}.bin`,
    );
    expect(names).toEqual(expected);
  });

  it("seed with email fills another user's drive", async () => {
    const r = await ctx.api.call("POST", "/__emulator/seed", {
      json: { uri: myUri("theirs"), files: 2, email: OTHER.email },
    });
    expect(r.status).toBe(200);
    const other = new Api(ctx.emu.url);
    await other.login(OTHER.email, OTHER.password);
    const pages = await listAll(other, myUri("theirs"), 100);
    expect(pages.flat().map((f) => f.name)).toEqual(["file-00000.bin", "file-00001.bin"]);
    const mine = await ctx.api.call("GET", "/file", { query: { uri: myUri("theirs") } });
    expect(mine.json.code).toBe(40016);
  });
});

describe("control: faults", () => {
  const ctx = useEmulator();

  it("a 503 rule with times fails that many API calls, then stops", async () => {
    await faults(ctx.api, [{ failWith: 503, times: 2 }]);
    expect((await ctx.api.call("GET", "/user/me")).status).toBe(503);
    expect((await ctx.api.call("GET", "/site/ping")).status).toBe(503);
    const ok = await ctx.api.call("GET", "/user/me");
    expect(ok.status).toBe(200);
    expect(ok.json.code).toBe(0);
    await faults(ctx.api, []);
  });

  it("faults do not affect /__emulator control routes", async () => {
    await faults(ctx.api, [{ failWith: 503 }]);
    const s = await ctx.api.call("GET", "/__emulator/stats");
    expect(s.status).toBe(200);
    expect((await ctx.api.call("GET", "/site/ping")).status).toBe(503);
    await faults(ctx.api, []);
    expect((await ctx.api.call("GET", "/site/ping")).status).toBe(200);
  });

  it("a per-route 502 rule only affects that route", async () => {
    await faults(ctx.api, [{ route: "GET /api/v4/user/me", failWith: 502, times: 1 }]);
    const ping = await ctx.api.call("GET", "/site/ping");
    expect(ping.status).toBe(200);
    expect(ping.json.code).toBe(0);
    expect((await ctx.api.call("GET", "/user/me")).status).toBe(502);
    const again = await ctx.api.call("GET", "/user/me");
    expect(again.status).toBe(200);
    expect(again.json.code).toBe(0);
    await faults(ctx.api, []);
  });

  it("a route rule matches the pattern exactly (GET /api/v4/file is not /file/info)", async () => {
    const mk = await ctx.api.call("POST", "/file/create", {
      json: { uri: myUri("fx"), type: "folder" },
    });
    expect(mk.json.code).toBe(0);
    await faults(ctx.api, [{ route: "GET /api/v4/file", failWith: 503 }]);
    const info = await ctx.api.call("GET", "/file/info", { query: { uri: myUri("fx") } });
    expect(info.status).toBe(200);
    expect(info.json.code).toBe(0);
    const listing = await ctx.api.call("GET", "/file", { query: { uri: "cloudreve://my" } });
    expect(listing.status).toBe(503);
    await faults(ctx.api, []);
  });

  it('"reset" destroys the connection (fetch rejects)', async () => {
    await faults(ctx.api, [{ route: "GET /api/v4/site/ping", failWith: "reset", times: 1 }]);
    await expect(fetch(`${ctx.emu.url}/api/v4/site/ping`)).rejects.toThrow();
    const ok = await ctx.api.call("GET", "/site/ping");
    expect(ok.status).toBe(200);
    expect(ok.json.code).toBe(0);
    await faults(ctx.api, []);
  });

  it("rules without times keep failing until cleared with {rules: []}", async () => {
    await faults(ctx.api, [{ route: "GET /api/v4/site/ping", failWith: 503 }]);
    for (let i = 0; i < 3; i++) expect((await ctx.api.call("GET", "/site/ping")).status).toBe(503);
    await faults(ctx.api, []);
    expect((await ctx.api.call("GET", "/site/ping")).status).toBe(200);
  });

  it("failRate 0 never fails", async () => {
    await faults(ctx.api, [{ failWith: 503, failRate: 0 }]);
    for (let i = 0; i < 3; i++) expect((await ctx.api.call("GET", "/site/ping")).status).toBe(200);
    await faults(ctx.api, []);
  });

  it("posting rules replaces the previous ones", async () => {
    await faults(ctx.api, [{ route: "GET /api/v4/site/ping", failWith: 503 }]);
    await faults(ctx.api, [{ route: "GET /api/v4/user/me", failWith: 502 }]);
    expect((await ctx.api.call("GET", "/site/ping")).status).toBe(200);
    expect((await ctx.api.call("GET", "/user/me")).status).toBe(502);
    await faults(ctx.api, []);
    expect((await ctx.api.call("GET", "/user/me")).status).toBe(200);
  });
});

describe("control: fault kinds", () => {
  const ctx = useEmulator();

  it("any status is answered as a proxy would, before the body is read, then the connection closes", async () => {
    await faults(ctx.api, [{ route: "PUT /api/v4/file/content", failWith: 413, times: 1 }]);
    const r = await ctx.api.call("PUT", "/file/content", {
      query: { uri: myUri("refused.bin") },
      body: Buffer.alloc(64 * 1024, 1),
    });
    expect(r.status).toBe(413);
    expect(r.headers.get("connection")).toBe("close");
    const info = await ctx.api.call("GET", "/file/info", { query: { uri: myUri("refused.bin") } });
    expect(info.json.code).toBe(40016);
    await faults(ctx.api, []);
  });

  it("statuses outside 400–599, unknown kinds and afterBytes without a break are refused", async () => {
    for (const rule of [
      { failWith: 200 },
      { failWith: "explode" },
      { failWith: 502, afterBytes: 3 },
    ]) {
      const r = await ctx.api.call("POST", "/__emulator/faults", { json: { rules: [rule] } });
      expect(r.status).toBe(400);
    }
    expect((await ctx.api.call("GET", "/site/ping")).status).toBe(200);
  });

  it('"hang" never answers: only the caller\'s own deadline ends the call', async () => {
    await faults(ctx.api, [{ route: "GET /api/v4/site/ping", failWith: "hang", times: 1 }]);
    const call = fetch(`${ctx.emu.url}/api/v4/site/ping`, { signal: AbortSignal.timeout(300) });
    await expect(call).rejects.toThrow(/abort|timeout/i);
    expect((await ctx.api.call("GET", "/site/ping")).status).toBe(200);
    await faults(ctx.api, []);
  });

  it("afterBytes 0 with reset: the call takes effect, its answer is lost", async () => {
    await faults(ctx.api, [
      { route: "POST /api/v4/file/create", failWith: "reset", afterBytes: 0, times: 1 },
    ]);
    const call = fetch(`${ctx.emu.url}/api/v4/file/create`, {
      method: "POST",
      headers: { authorization: `Bearer ${ctx.api.token}`, "content-type": "application/json" },
      body: JSON.stringify({ uri: myUri("made-anyway"), type: "folder" }),
    });
    await expect(call).rejects.toThrow();
    const info = await ctx.api.call("GET", "/file/info", { query: { uri: myUri("made-anyway") } });
    expect(info.json.code).toBe(0);
    await faults(ctx.api, []);
  });

  it("afterBytes on the content route: the download breaks off or stalls after exactly that many bytes", async () => {
    const put = await ctx.api.call("PUT", "/file/content", {
      query: { uri: myUri("cut.bin") },
      body: Buffer.alloc(300_000, 7),
    });
    expect(put.json.code).toBe(0);
    const link = await ctx.api.call<{ urls: { url: string }[] }>("POST", "/file/url", {
      json: { uris: [myUri("cut.bin")] },
    });
    const url = link.json.data!.urls[0]!.url;
    const content = "GET /api/v4/file/content/:id/:speed/:name";

    await faults(ctx.api, [{ route: content, failWith: "reset", afterBytes: 100_000, times: 1 }]);
    const reset = await request(url);
    expect(reset.statusCode).toBe(200);
    expect(reset.headers["content-length"]).toBe("300000");
    let got = 0;
    await expect(
      (async () => {
        for await (const chunk of reset.body) got += (chunk as Buffer).length;
      })(),
    ).rejects.toThrow();
    expect(got).toBe(100_000);

    await faults(ctx.api, [{ route: content, failWith: "hang", afterBytes: 50_000, times: 1 }]);
    const stalled = await request(url, { bodyTimeout: 300 });
    got = 0;
    await expect(
      (async () => {
        for await (const chunk of stalled.body) got += (chunk as Buffer).length;
      })(),
    ).rejects.toThrow(/timeout/i);
    expect(got).toBe(50_000);

    const whole = await request(url);
    expect((await whole.body.arrayBuffer()).byteLength).toBe(300_000);
    await faults(ctx.api, []);
  });
});

describe("control: clock", () => {
  const ctx = useEmulator({ accessTtl: 100 });

  it("clock advance answers {now} and moves forward by the given seconds", async () => {
    const a = await clock(ctx.api, 0);
    const b = await clock(ctx.api, 50);
    const delta = (b - a) / 1000;
    expect(delta).toBeGreaterThanOrEqual(49);
    expect(delta).toBeLessThan(60);
  });

  it("timestamps written after an advance follow the emulator clock", async () => {
    const now = await clock(ctx.api, 0);
    const later = await clock(ctx.api, 86_400 * 30);
    expect(later - now).toBeGreaterThanOrEqual(86_400 * 30 * 1000 - 1000);
    const api = new Api(ctx.emu.url);
    await api.login();
    const f = await api.call<FileObj>("POST", "/file/create", {
      json: { uri: myUri("after-advance"), type: "folder" },
    });
    expect(f.json.code).toBe(0);
    const created = Date.parse(f.json.data!.created_at);
    expect(created).toBeGreaterThanOrEqual(later - 2000);
  });

  it("advances accumulate: tokens expire once the total passes accessTtl", async () => {
    const api = new Api(ctx.emu.url);
    await api.login();
    await clock(ctx.api, 60);
    expect((await api.call("GET", "/user/me")).json.code).toBe(0);
    await clock(ctx.api, 50);
    expect((await api.call("GET", "/user/me")).json.code).toBe(401);
  });
});
