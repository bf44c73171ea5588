import { describe, expect, it } from "vitest";
import {
  advance,
  bytes,
  code,
  info,
  ms,
  myUri,
  ok,
  put,
  used,
  useEmulator,
} from "../helpers/emulator.js";
import type { Api, CrFile, LockConflict } from "../helpers/emulator.js";

interface UrlData {
  urls: { url: string; stream_saver_display_name?: string }[];
  expires: string | null;
}

const CONTENT_PATH = /^\/api\/v4\/file\/content\/([^/]+)\/(\d+)\/([^/]+)$/;

function putRaw(
  api: Api,
  path: string,
  body: string | Uint8Array,
  query: Record<string, string> = {},
) {
  return api.call<CrFile>("PUT", "/file/content", {
    query: { uri: myUri(path), ...query },
    body,
    headers: { "content-type": "application/octet-stream" },
  });
}

function urlCall(api: Api, paths: string[], extra: Record<string, unknown> = {}) {
  return api.call<UrlData>("POST", "/file/url", {
    json: { uris: paths.map((p) => myUri(p)), ...extra },
  });
}

async function urlOf(api: Api, path: string, extra: Record<string, unknown> = {}): Promise<string> {
  const d = ok(await urlCall(api, [path], extra));
  expect(d.urls).toHaveLength(1);
  return d.urls[0]!.url;
}

async function get(url: string, headers: Record<string, string> = {}, method = "GET") {
  const res = await fetch(url, { method, headers });
  const body = new Uint8Array(await res.arrayBuffer());
  return { res, body, text: Buffer.from(body).toString("utf8") };
}

function jsonCode(text: string): number | undefined {
  try {
    return (JSON.parse(text) as { code?: number }).code;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------

describe("§5.8 PUT /file/content", () => {
  const ctx = useEmulator({ chunkSize: 1024 });

  it("§5.8 upserts: creates the file and its missing parents, returns the File", async () => {
    const f = ok(await putRaw(ctx.api, "up/a/b/new.txt", "hello world"));
    expect(f).toMatchObject({ type: 0, name: "new.txt", size: 11, path: myUri("up/a/b/new.txt") });
    expect(ok(await info(ctx.api, "up/a/b")).type).toBe(1);
    expect(ok(await info(ctx.api, "up/a/b/new.txt")).size).toBe(11);
  });

  it("§5.8 an overwrite creates a new primary_entity and keeps the file id", async () => {
    const first = await put(ctx.api, "ow/f.txt", "version one");
    const second = await put(ctx.api, "ow/f.txt", "v2");
    expect(second.id).toBe(first.id);
    expect(second.size).toBe(2);
    expect(second.primary_entity).not.toBe(first.primary_entity);
    const third = await put(ctx.api, "ow/f.txt", "v2");
    expect(third.primary_entity).not.toBe(second.primary_entity);
    const { body } = await get(await urlOf(ctx.api, "ow/f.txt"));
    expect(Buffer.from(body).toString()).toBe("v2");
  });

  it("§5.8 previous = a stale entity → 40076; previous = the current entity → ok", async () => {
    const v1 = await put(ctx.api, "prev/f.txt", "one");
    const v2 = await put(ctx.api, "prev/f.txt", "two");
    const stale = await putRaw(ctx.api, "prev/f.txt", "three", { previous: v1.primary_entity });
    expect(code(stale), stale.text).toBe(40076);
    const still = ok(await info(ctx.api, "prev/f.txt"));
    expect(still.primary_entity).toBe(v2.primary_entity);
    expect(still.size).toBe(3);
    const fresh = await putRaw(ctx.api, "prev/f.txt", "three", { previous: v2.primary_entity });
    const v3 = ok(fresh);
    expect(v3.size).toBe(5);
    expect(v3.primary_entity).not.toBe(v2.primary_entity);
  });

  it("§5.8 a chunked body without Content-Length or X-Expected-Entity-Length stores 0 bytes", async () => {
    const url = new URL("/api/v4/file/content", ctx.emu.url);
    url.searchParams.set("uri", myUri("chunked/f.txt"));
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("these bytes are ignored"));
        c.close();
      },
    });
    const init = {
      method: "PUT",
      headers: {
        authorization: `Bearer ${ctx.api.token}`,
        "content-type": "application/octet-stream",
      },
      body: stream,
      duplex: "half",
    } as RequestInit & { duplex: "half" };
    const res = await fetch(url, init);
    const json = (await res.json()) as { code: number; data?: CrFile };
    expect(json.code, JSON.stringify(json)).toBe(0);
    expect(json.data?.size).toBe(0);
    expect(ok(await info(ctx.api, "chunked/f.txt")).size).toBe(0);
  });

  it("§5.8 without Content-Length, X-Expected-Entity-Length gives the length", async () => {
    const url = new URL("/api/v4/file/content", ctx.emu.url);
    url.searchParams.set("uri", myUri("chunked/expected.txt"));
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("abcdef"));
        c.close();
      },
    });
    const init = {
      method: "PUT",
      headers: {
        authorization: `Bearer ${ctx.api.token}`,
        "x-expected-entity-length": "6",
      },
      body: stream,
      duplex: "half",
    } as RequestInit & { duplex: "half" };
    const json = (await (await fetch(url, init)).json()) as { code: number; data?: CrFile };
    expect(json.code, JSON.stringify(json)).toBe(0);
    expect(json.data?.size).toBe(6);
    const { text } = await get(await urlOf(ctx.api, "chunked/expected.txt"));
    expect(text).toBe("abcdef");
  });

  it("§5.8 a folder target → 40004", async () => {
    ok(
      await ctx.api.call("POST", "/file/create", {
        json: { uri: myUri("fold/dir"), type: "folder" },
      }),
    );
    const r = await putRaw(ctx.api, "fold/dir", "x");
    expect(code(r), r.text).toBe(40004);
    expect(ok(await info(ctx.api, "fold/dir")).type).toBe(1);
  });

  it("§5.8 §5.11 a path locked by an in-progress upload session → 40073 with conflict details", async () => {
    const old = await put(ctx.api, "lock/f.txt", "old");
    const s = ok(
      await ctx.api.call<{ session_id: string }>("PUT", "/file/upload", {
        json: { uri: myUri("lock/f.txt"), size: 10, entity_type: "version" },
      }),
    );
    const r = await ctx.api.call<LockConflict[]>("PUT", "/file/content", {
      query: { uri: myUri("lock/f.txt") },
      body: "new content",
    });
    expect(code(r), r.text).toBe(40073);
    expect(Array.isArray(r.json.data), r.text).toBe(true);
    const d = r.json.data![0]!;
    expect(d.path).toBe(myUri("lock/f.txt"));
    expect(typeof d.token).toBe("string");
    expect(d.token.length).toBeGreaterThan(0);
    expect(d.owner.application.type).toBe("upload");
    expect(typeof d.type).toBe("number");
    expect(ok(await info(ctx.api, "lock/f.txt")).primary_entity).toBe(old.primary_entity);

    const c = await ctx.api.call("DELETE", "/file/upload", {
      json: { id: s.session_id, uri: myUri("lock/f.txt") },
    });
    expect(code(c), c.text).toBe(0);
    expect((await put(ctx.api, "lock/f.txt", "new content")).size).toBe(11);
  });

  it("§5.8 a new-file placeholder of an upload session is locked too → 40073", async () => {
    ok(
      await ctx.api.call("PUT", "/file/upload", {
        json: { uri: myUri("lock2/new.txt"), size: 10 },
      }),
    );
    const r = await putRaw(ctx.api, "lock2/new.txt", "x");
    expect(code(r), r.text).toBe(40073);
  });
});

describe("§5.8 maxEditSize", () => {
  const ctx = useEmulator({ maxEditSize: 100 });

  it("§5.8 a body above maxEditSize → 40049; exactly maxEditSize is accepted", async () => {
    const r = await putRaw(ctx.api, "edit/big.bin", bytes(101));
    expect(code(r), r.text).toBe(40049);
    expect((await info(ctx.api, "edit/big.bin")).json.code).toBe(40016);
    expect((await put(ctx.api, "edit/ok.bin", bytes(100))).size).toBe(100);
  });

  it("§5.8 the limit also applies to overwrites", async () => {
    const f = await put(ctx.api, "edit/f.bin", bytes(10));
    const r = await putRaw(ctx.api, "edit/f.bin", bytes(101));
    expect(code(r), r.text).toBe(40049);
    expect(ok(await info(ctx.api, "edit/f.bin")).primary_entity).toBe(f.primary_entity);
  });
});

// ---------------------------------------------------------------------------

describe("§5.9 POST /file/url and the signed content URL", () => {
  const ctx = useEmulator();
  const TEXT = "0123456789abcdefghijklmnopqrstuvwxyz";
  let file: CrFile;

  it("§5.9 reply is {urls:[{url}], expires} with the local-policy URL shape", async () => {
    file = await put(ctx.api, "dl/hello.txt", TEXT);
    const r = await urlCall(ctx.api, ["dl/hello.txt"]);
    const d = ok(r);
    expect(Array.isArray(d.urls)).toBe(true);
    expect(d.urls).toHaveLength(1);
    expect(typeof d.expires).toBe("string");
    expect(ms(d.expires!) / 1000 - ms(file.created_at) / 1000).toBeGreaterThan(3600 - 120);
    expect(ms(d.expires!) / 1000 - ms(file.created_at) / 1000).toBeLessThan(3600 + 120);
    const u = new URL(d.urls[0]!.url);
    expect(u.origin).toBe(ctx.emu.url);
    const m = CONTENT_PATH.exec(u.pathname);
    expect(m, u.pathname).not.toBe(null);
    expect(m![1]).toBe(file.primary_entity);
    expect(m![3]).toBe("hello.txt");
    expect(u.searchParams.get("sign")).toMatch(/^[A-Za-z0-9_=-]+:\d+$/);
    expect(u.searchParams.get("download")).toBe(null);
  });

  it("§5.9 urls follow the order of uris", async () => {
    const a = await put(ctx.api, "dl/order-a.txt", "a");
    const b = await put(ctx.api, "dl/order-b.txt", "b");
    const d = ok(await urlCall(ctx.api, ["dl/order-b.txt", "dl/order-a.txt"]));
    expect(d.urls).toHaveLength(2);
    expect(CONTENT_PATH.exec(new URL(d.urls[0]!.url).pathname)?.[1]).toBe(b.primary_entity);
    expect(CONTENT_PATH.exec(new URL(d.urls[1]!.url).pathname)?.[1]).toBe(a.primary_entity);
  });

  it("§5.9 a folder → 40081 with inner 40077", async () => {
    ok(
      await ctx.api.call("POST", "/file/create", {
        json: { uri: myUri("dl/dir"), type: "folder" },
      }),
    );
    const r = await urlCall(ctx.api, ["dl/dir"]);
    expect(code(r), r.text).toBe(40081);
    expect(r.json.aggregated_error?.[myUri("dl/dir")]?.code, r.text).toBe(40077);
  });

  it('§5.9 GET serves the exact bytes with ETag "<entity>" and no Last-Modified', async () => {
    const data = bytes(70_000, 3);
    const f = await put(ctx.api, "dl/blob.bin", data);
    const { res, body } = await get(await urlOf(ctx.api, "dl/blob.bin"));
    expect(res.status).toBe(200);
    expect(Buffer.from(body).equals(Buffer.from(data))).toBe(true);
    expect(res.headers.get("etag")).toBe(`"${f.primary_entity}"`);
    expect(res.headers.get("last-modified")).toBe(null);
    expect(res.headers.get("content-disposition")).toBe(null);
    expect(res.headers.get("content-length")).toBe(String(data.length));
  });

  it("§5.9 no bearer token is needed; response headers (cache, CORS, CSP, content type)", async () => {
    const url = await urlOf(ctx.api, "dl/hello.txt");
    const { res, body } = await get(url);
    expect(res.status).toBe(200);
    expect(Buffer.from(body).toString()).toBe(TEXT);
    expect(res.headers.get("cache-control")).toBe("public, max-age=86400");
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("content-security-policy")).toBe("sandbox");
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
  });

  it("§5.9 HEAD answers headers without a body", async () => {
    const url = await urlOf(ctx.api, "dl/hello.txt");
    const { res, body } = await get(url, {}, "HEAD");
    expect(res.status).toBe(200);
    expect(body.length).toBe(0);
    expect(res.headers.get("content-length")).toBe(String(TEXT.length));
    expect(res.headers.get("etag")).toBe(`"${file.primary_entity}"`);
    expect(res.headers.get("last-modified")).toBe(null);
  });

  it("§5.9 download=true adds Content-Disposition: attachment", async () => {
    const url = await urlOf(ctx.api, "dl/hello.txt", { download: true });
    expect(new URL(url).searchParams.get("download")).toBe("true");
    const { res, body } = await get(url);
    expect(res.status).toBe(200);
    expect(Buffer.from(body).toString()).toBe(TEXT);
    const cd = res.headers.get("content-disposition") ?? "";
    expect(cd).toMatch(/^attachment/);
    expect(cd).toContain('filename="hello.txt"');
  });

  it("§5.9 the name in the URL is path-escaped; non-ASCII names get filename*", async () => {
    await put(ctx.api, "dl/中文 名.txt", "unicode");
    const url = await urlOf(ctx.api, "dl/中文 名.txt", { download: true });
    const m = CONTENT_PATH.exec(new URL(url).pathname);
    expect(m).not.toBe(null);
    expect(decodeURIComponent(m![3]!)).toBe("中文 名.txt");
    expect(m![3]).not.toContain(" ");
    const { res, text } = await get(url);
    expect(res.status).toBe(200);
    expect(text).toBe("unicode");
    const cd = res.headers.get("content-disposition") ?? "";
    expect(cd).toMatch(/^attachment/);
    expect(cd).toContain("filename*=UTF-8''%E4%B8%AD%E6%96%87%20%E5%90%8D.txt");
  });

  it('§5.9 §1.3 skip_error:true turns failed items into {url:""} and keeps positions', async () => {
    const d = ok(await urlCall(ctx.api, ["dl/missing.txt", "dl/hello.txt"], { skip_error: true }));
    expect(d.urls).toHaveLength(2);
    expect(d.urls[0]!.url).toBe("");
    expect(CONTENT_PATH.exec(new URL(d.urls[1]!.url).pathname)?.[1]).toBe(file.primary_entity);
  });

  it("§5.9 a missing uri → 40081 with inner 40016", async () => {
    const r = await urlCall(ctx.api, ["dl/missing.txt"]);
    expect(code(r), r.text).toBe(40081);
    expect(r.json.aggregated_error?.[myUri("dl/missing.txt")]?.code, r.text).toBe(40016);
  });

  it("§5.9 a single Range → 206 with the exact Content-Range", async () => {
    const { res, text } = await get(await urlOf(ctx.api, "dl/hello.txt"), { range: "bytes=2-5" });
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe(`bytes 2-5/${TEXT.length}`);
    expect(text).toBe("2345");
    expect(res.headers.get("content-length")).toBe("4");
  });

  it("§5.9 an open-ended and a suffix Range", async () => {
    const url = await urlOf(ctx.api, "dl/hello.txt");
    const open = await get(url, { range: "bytes=30-" });
    expect(open.res.status).toBe(206);
    expect(open.res.headers.get("content-range")).toBe(`bytes 30-35/${TEXT.length}`);
    expect(open.text).toBe("uvwxyz");
    const suffix = await get(url, { range: "bytes=-3" });
    expect(suffix.res.status).toBe(206);
    expect(suffix.res.headers.get("content-range")).toBe(`bytes 33-35/${TEXT.length}`);
    expect(suffix.text).toBe("xyz");
  });

  it("§5.9 several ranges → 206 multipart/byteranges", async () => {
    const { res, text } = await get(await urlOf(ctx.api, "dl/hello.txt"), {
      range: "bytes=0-1,10-12",
    });
    expect(res.status).toBe(206);
    const ct = res.headers.get("content-type") ?? "";
    const m = /^multipart\/byteranges; boundary=(.+)$/.exec(ct);
    expect(m, ct).not.toBe(null);
    const boundary = m![1]!;
    expect(text).toContain(`--${boundary}`);
    expect(text).toContain(`--${boundary}--`);
    expect(text).toMatch(
      new RegExp(`Content-Range: bytes 0-1/${TEXT.length}\\r\\n(?:.*\\r\\n)*\\r\\n01\\r\\n`, "i"),
    );
    expect(text).toMatch(
      new RegExp(
        `Content-Range: bytes 10-12/${TEXT.length}\\r\\n(?:.*\\r\\n)*\\r\\nabc\\r\\n`,
        "i",
      ),
    );
  });

  it("§5.9 an unsatisfiable Range → 416 with Content-Range: bytes */size", async () => {
    const { res } = await get(await urlOf(ctx.api, "dl/hello.txt"), { range: "bytes=1000-2000" });
    expect(res.status).toBe(416);
    expect(res.headers.get("content-range")).toBe(`bytes */${TEXT.length}`);
  });

  it("§5.9 a Range on an empty file is ignored (200)", async () => {
    const f = await put(ctx.api, "dl/empty.txt", "");
    expect(f.size).toBe(0);
    const { res, body } = await get(await urlOf(ctx.api, "dl/empty.txt"), { range: "bytes=0-10" });
    expect(res.status).toBe(200);
    expect(body.length).toBe(0);
    expect(res.headers.get("content-range")).toBe(null);
  });

  it("§5.9 If-None-Match with the current ETag → 304", async () => {
    const url = await urlOf(ctx.api, "dl/hello.txt");
    const { res, body } = await get(url, { "if-none-match": `"${file.primary_entity}"` });
    expect(res.status).toBe(304);
    expect(body.length).toBe(0);
    const other = await get(url, { "if-none-match": '"something-else"' });
    expect(other.res.status).toBe(200);
    expect(other.text).toBe(TEXT);
  });

  it("§5.9 If-Range: a matching ETag honours the Range, a different one serves 200 in full", async () => {
    const url = await urlOf(ctx.api, "dl/hello.txt");
    const match = await get(url, { range: "bytes=0-3", "if-range": `"${file.primary_entity}"` });
    expect(match.res.status).toBe(206);
    expect(match.text).toBe("0123");
    expect(match.res.headers.get("content-range")).toBe(`bytes 0-3/${TEXT.length}`);
    const miss = await get(url, { range: "bytes=0-3", "if-range": '"not-the-entity"' });
    expect(miss.res.status).toBe(200);
    expect(miss.text).toBe(TEXT);
  });

  it("§5.9 If-Match that does not match → 412; a matching one serves the body", async () => {
    const url = await urlOf(ctx.api, "dl/hello.txt");
    const bad = await get(url, { "if-match": '"not-the-entity"' });
    expect(bad.res.status).toBe(412);
    const good = await get(url, { "if-match": `"${file.primary_entity}"` });
    expect(good.res.status).toBe(200);
    expect(good.text).toBe(TEXT);
  });

  it("§5.9 a tampered sign → code 40071", async () => {
    const url = new URL(await urlOf(ctx.api, "dl/hello.txt"));
    const sign = url.searchParams.get("sign")!;
    const [sig, exp] = sign.split(":");
    const flipped = (sig![0] === "A" ? "B" : "A") + sig!.slice(1);
    url.searchParams.set("sign", `${flipped}:${exp}`);
    const t1 = await get(url.toString());
    expect(t1.res.status).toBe(200);
    expect(jsonCode(t1.text), t1.text).toBe(40071);

    // The expiry is part of the signed message.
    const later = new URL(await urlOf(ctx.api, "dl/hello.txt"));
    later.searchParams.set("sign", `${sig}:${Number(exp) + 100}`);
    const t2 = await get(later.toString());
    expect(jsonCode(t2.text), t2.text).toBe(40071);

    // The path is signed: another name in the path breaks the signature.
    const renamed = new URL(await urlOf(ctx.api, "dl/hello.txt"));
    renamed.pathname = renamed.pathname.replace(/hello\.txt$/, "other.txt");
    const t3 = await get(renamed.toString());
    expect(jsonCode(t3.text), t3.text).toBe(40071);

    const missing = new URL(await urlOf(ctx.api, "dl/hello.txt"));
    missing.searchParams.delete("sign");
    const t4 = await get(missing.toString());
    expect(t4.res.status).not.toBe(206);
    expect(t4.text).not.toBe(TEXT);
  });

  it("§5.9 redirect:true with one uri → HTTP 302 to the content URL", async () => {
    const r = await ctx.api.call("POST", "/file/url", {
      json: { uris: [myUri("dl/hello.txt")], redirect: true },
    });
    expect(r.status).toBe(302);
    const location = r.headers.get("location");
    expect(location).not.toBe(null);
    const u = new URL(location!, ctx.emu.url);
    expect(CONTENT_PATH.exec(u.pathname)?.[1]).toBe(file.primary_entity);
    const { res, text } = await get(u.toString());
    expect(res.status).toBe(200);
    expect(text).toBe(TEXT);
  });

  it("§5.9 only the path is signed: the URL works on another host name", async () => {
    const u = new URL(await urlOf(ctx.api, "dl/hello.txt"));
    expect(u.hostname).toBe("127.0.0.1");
    u.hostname = "localhost";
    const { res, text } = await get(u.toString());
    expect(res.status).toBe(200);
    expect(text).toBe(TEXT);
  });

  it("§5.9 a URL serves its version: an old one while kept, never the newer content", async () => {
    const v1 = await put(ctx.api, "dl/changing.txt", "first version");
    const oldUrl = await urlOf(ctx.api, "dl/changing.txt");
    const v2 = await put(ctx.api, "dl/changing.txt", "second");
    const fresh = await urlOf(ctx.api, "dl/changing.txt");
    expect(CONTENT_PATH.exec(new URL(fresh).pathname)?.[1]).toBe(v2.primary_entity);
    expect((await get(fresh)).text).toBe("second");
    expect((await get(oldUrl)).text).toBe("first version");
    // `entity` asks for a version by id: the old one while retention keeps it.
    const pinned = await urlOf(ctx.api, "dl/changing.txt", { entity: v1.primary_entity });
    expect((await get(pinned)).text).toBe("first version");
  });
});

describe("§5.9 signed URL expiry (entity_url_default_ttl 60 s)", () => {
  const ctx = useEmulator({ entityUrlTtl: 60 });

  it("§5.9 an expired sign → HTTP 200 with JSON code 40005", async () => {
    await put(ctx.api, "exp/f.txt", "soon gone");
    const url = await urlOf(ctx.api, "exp/f.txt");
    const before = await get(url);
    expect(before.res.status).toBe(200);
    expect(before.text).toBe("soon gone");
    await advance(ctx.api, 120);
    const after = await get(url);
    expect(after.res.status).toBe(200);
    expect(jsonCode(after.text), after.text).toBe(40005);
    // A fresh URL works again.
    const again = await get(await urlOf(ctx.api, "exp/f.txt", { no_cache: true }));
    expect(again.text).toBe("soon gone");
  });
});

describe("§5.9 site URL differs from the listening host", () => {
  const ctx = useEmulator({ siteUrl: "http://files.example.test" });

  it("§5.9 URLs are built on the site URL; swapping in the real host keeps the signature valid", async () => {
    await put(ctx.api, "site/f.txt", "via another host");
    const url = await urlOf(ctx.api, "site/f.txt");
    expect(url.startsWith("http://files.example.test/api/v4/file/content/")).toBe(true);
    const u = new URL(url);
    const real = new URL(u.pathname + u.search, ctx.emu.url);
    const { res, text } = await get(real.toString());
    expect(res.status).toBe(200);
    expect(text).toBe("via another host");
  });
});

// ---------------------------------------------------------------------------

describe("§7.1 capacity accounting", () => {
  // Retention off: an overwrite releases the replaced version.
  const ctx = useEmulator({ capacity: 1000, chunkSize: 1024, versionRetention: 1 });

  it("§7.1 GET /user/capacity → {total, used}", async () => {
    const d = ok(await ctx.api.call<{ total: number; used: number }>("GET", "/user/capacity"));
    expect(d.total).toBe(1000);
    expect(d.used).toBe(0);
  });

  it("§5.8 §7.1 an overwrite needs free space for the new version first", async () => {
    const f = await put(ctx.api, "cap/f.bin", bytes(600));
    expect(await used(ctx.api)).toBe(600);
    const r = await putRaw(ctx.api, "cap/f.bin", bytes(600, 2));
    expect(code(r), r.text).toBe(40051);
    expect(await used(ctx.api)).toBe(600);
    const still = ok(await info(ctx.api, "cap/f.bin"));
    expect(still.primary_entity).toBe(f.primary_entity);
    expect((await get(await urlOf(ctx.api, "cap/f.bin"))).body).toEqual(bytes(600));

    const smaller = await put(ctx.api, "cap/f.bin", bytes(300, 3));
    expect(smaller.size).toBe(300);
    // The old version is released once the new one is current.
    expect(await used(ctx.api)).toBe(300);
  });

  it("§7.1 a new file over quota → 40051", async () => {
    const r = await putRaw(ctx.api, "cap/big.bin", bytes(701));
    expect(code(r), r.text).toBe(40051);
    expect((await info(ctx.api, "cap/big.bin")).json.code).toBe(40016);
    expect(await used(ctx.api)).toBe(300);
  });

  it("§7.1 used includes in-flight upload reservations", async () => {
    const s = ok(
      await ctx.api.call<{ session_id: string }>("PUT", "/file/upload", {
        json: { uri: myUri("cap/pending.bin"), size: 200 },
      }),
    );
    expect(await used(ctx.api)).toBe(500);
    // The reservation leaves less room for other writes.
    const r = await putRaw(ctx.api, "cap/other.bin", bytes(600));
    expect(code(r), r.text).toBe(40051);
    const c = await ctx.api.call("DELETE", "/file/upload", {
      json: { id: s.session_id, uri: myUri("cap/pending.bin") },
    });
    expect(code(c), c.text).toBe(0);
    expect(await used(ctx.api)).toBe(300);
  });

  it("§7.1 used includes the trash until it is emptied", async () => {
    await put(ctx.api, "cap/t.bin", bytes(100));
    expect(await used(ctx.api)).toBe(400);
    const d = await ctx.api.call("DELETE", "/file", { json: { uris: [myUri("cap/t.bin")] } });
    expect(code(d), d.text).toBe(0);
    expect(await used(ctx.api)).toBe(400);
    const e = await ctx.api.call("DELETE", "/file/trash");
    expect(code(e), e.text).toBe(0);
    expect(await used(ctx.api)).toBe(300);
  });

  it("§7.1 copies share entities but are charged again", async () => {
    ok(
      await ctx.api.call("POST", "/file/create", {
        json: { uri: myUri("cap/dst"), type: "folder" },
      }),
    );
    const r = await ctx.api.call("POST", "/file/move", {
      json: { uris: [myUri("cap/f.bin")], dst: myUri("cap/dst"), copy: true },
    });
    expect(code(r), r.text).toBe(0);
    expect(await used(ctx.api)).toBe(600);
  });
});

describe("§6.5 version retention (10 versions per file by default)", () => {
  const ctx = useEmulator({ capacity: 100_000 });
  const versions = async (path: string) =>
    (
      ok(await info(ctx.api, path, { extended: true })) as CrFile & {
        extended_info: { entities: { id: string; size: number }[]; storage_used: number };
      }
    ).extended_info;

  it("§6.5 §7.1 every overwrite keeps the previous version, charged, up to 10 in all", async () => {
    const first = await put(ctx.api, "ret/f.bin", bytes(100, 0));
    for (let i = 1; i < 10; i++) await put(ctx.api, "ret/f.bin", bytes(100 + i, i));
    const ten = await versions("ret/f.bin");
    expect(ten.entities).toHaveLength(10);
    const charged = Array.from({ length: 10 }, (_, i) => 100 + i).reduce((a, b) => a + b);
    expect(ten.storage_used).toBe(charged);
    expect(await used(ctx.api)).toBe(charged);
    // The oldest is still readable by its id.
    const oldest = await urlOf(ctx.api, "ret/f.bin", { entity: first.primary_entity });
    expect((await get(oldest)).body).toEqual(bytes(100, 0));

    // The 11th version pushes the first out: its id is unknown from then on.
    await put(ctx.api, "ret/f.bin", bytes(110, 10));
    const after = await versions("ret/f.bin");
    expect(after.entities).toHaveLength(10);
    expect(after.entities.map((e) => e.id)).not.toContain(first.primary_entity);
    expect(await used(ctx.api)).toBe(charged - 100 + 110);
    const gone = await ctx.api.call("POST", "/file/url", {
      json: { uris: [myUri("ret/f.bin")], entity: first.primary_entity },
    });
    expect(code(gone), gone.text).toBe(40081);
  });

  it("§6.5 deleting the file for good releases every version", async () => {
    const before = await used(ctx.api);
    await put(ctx.api, "ret/g.bin", bytes(50));
    await put(ctx.api, "ret/g.bin", bytes(60));
    expect(await used(ctx.api)).toBe(before + 110);
    const d = await ctx.api.call("DELETE", "/file", {
      json: { uris: [myUri("ret/g.bin")], skip_soft_delete: true },
    });
    expect(code(d), d.text).toBe(0);
    expect(await used(ctx.api)).toBe(before);
  });
});
