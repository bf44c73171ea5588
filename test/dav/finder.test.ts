import { request } from "node:http";
import { beforeAll, describe, expect, it } from "vitest";
import {
  Api,
  expectStored as expectStoredIn,
  myUri,
  upstreamInfo as storedInfo,
  type CrFile,
} from "../helpers/emulator.js";
import { raw } from "../helpers/http-raw.js";
import { until } from "../helpers/wait.js";
import { DAV, parseMultistatus, payload, propIn } from "../helpers/replay.js";
import { useGateway } from "../helpers/gateway.js";

/**
 * macOS Finder (WebDAVFS) replayed over raw HTTP (docs/clients.md §D.1): the mount probes, chunked
 * PUTs with and without X-Expected-Entity-Length, AppleDouble files, MOVE without Overwrite and
 * LOCK/UNLOCK around a write. Every write is checked upstream, through the emulator's own API.
 */

/** macOS 15.4 (Darwin 24.4): must not get quota properties (90 s mount stall). */
const UA_SEQUOIA = "WebDAVFS/3.0.0 (03008000) Darwin/24.4.0 (arm64)";
/** macOS 14 (Darwin 23.6): still gets them. */
const UA_SONOMA = "WebDAVFS/3.0.0 (03008000) Darwin/23.6.0 (arm64)";
const CHUNK = 1024 * 1024;

/** Starts a chunked PUT, writes `sendBytes` of it and drops the connection (a cancelled copy). */
function abandonedPut(
  base: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  sendBytes: number,
): Promise<void> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const req = request({
      host: url.hostname,
      port: url.port,
      method: "PUT",
      path,
      headers,
      agent: false,
    });
    req.on("error", () => resolve());
    req.on("response", (res) => {
      res.resume();
      res.on("end", () => resolve());
    });
    let off = 0;
    const step = 64 * 1024;
    const pump = () => {
      while (off < sendBytes) {
        const piece = body.subarray(off, Math.min(off + step, sendBytes));
        off += piece.length;
        if (!req.write(piece)) return void req.once("drain", pump);
      }
      // Give the gateway the bytes, then cut the connection without finishing the body.
      setImmediate(() => {
        req.destroy();
        resolve();
      });
    };
    req.flushHeaders();
    pump();
  });
}

// ---------------------------------------------------------------------------------------------
// Finder's request bodies (WebDAVFS webdav_network.c)

const PROPFIND_ITEM = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:">
<D:prop>
<D:getlastmodified/>
<D:getcontentlength/>
<D:creationdate/>
<D:resourcetype/>
</D:prop>
</D:propfind>
`;

const PROPFIND_LIST = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:">
<D:prop xmlns:A="http://www.apple.com/webdav_fs/props/">
<D:getlastmodified/>
<D:getcontentlength/>
<D:creationdate/>
<D:resourcetype/>
<A:appledoubleheader/>
</D:prop>
</D:propfind>
`;

const PROPFIND_QUOTA = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:">
<D:prop>
<D:quota-available-bytes/>
<D:quota-used-bytes/>
<D:quota/>
<D:quotaused/>
</D:prop>
</D:propfind>
`;

const LOCKINFO = `<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:">
<D:lockscope><D:exclusive/></D:lockscope>
<D:locktype><D:write/></D:locktype>
<D:owner>
<D:href>http://www.apple.com/webdav_fs/</D:href>
</D:owner>
</D:lockinfo>
`;

/** The names Finder probes for right after mounting and in every folder it opens. */
const PROBES = [
  "._.",
  ".DS_Store",
  "._.DS_Store",
  ".localized",
  "mach_kernel",
  ".Spotlight-V100",
  "Backups.backupdb",
  ".metadata_never_index",
  ".hidden",
];

/** Splits a body the way a streaming client writes it: uneven pieces. */
function pieces(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const sizes = [1, 4093, 65536, 300_001, 131_072, 7];
  for (let off = 0, i = 0; off < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(buf.subarray(off, off + n));
    off += n;
  }
  return out;
}

/** An AppleDouble header file, as Finder writes next to a file with extended attributes. */
function appleDouble(): Buffer {
  const b = Buffer.alloc(4096);
  b.writeUInt32BE(0x00051607, 0); // magic
  b.writeUInt32BE(0x00020000, 4); // version 2
  b.write("Mac OS X        ", 8, "latin1");
  b.writeUInt16BE(2, 24); // two entries
  b.writeUInt32BE(9, 26); // Finder info
  b.writeUInt32BE(50, 30);
  b.writeUInt32BE(3760, 34);
  b.writeUInt32BE(2, 38); // resource fork
  b.writeUInt32BE(3810, 42);
  b.writeUInt32BE(286, 46);
  b.write("ATTR", 84, "latin1");
  return b;
}

// ---------------------------------------------------------------------------------------------

describe("macOS Finder (WebDAVFS) replay", () => {
  // 1 MiB upload chunks, so that large bodies cross several chunk boundaries upstream.
  const fx = useGateway({ chunkSize: CHUNK });
  const api = {} as { client: Api };
  const upstreamInfo = (path: string) => storedInfo(api.client, path);
  const expectStored = (path: string, body: Buffer) => expectStoredIn(api.client, path, body);
  /** A PROPFIND as Finder sends it: its headers, the body's length given. */
  const finderPropfind = (path: string, depth: string, body: string) =>
    raw(fx.url, "PROPFIND", path, {
      headers: h({
        Depth: depth,
        "Content-Type": "text/xml",
        "Content-Length": String(Buffer.byteLength(body)),
      }),
      body,
    });

  beforeAll(async () => {
    api.client = new Api(fx.emu.url);
    await api.client.login();
    // A folder the gateway has never listed, made upstream before the gateway looks at "/".
    const made = await api.client.call("POST", "/file/create", {
      json: { uri: myUri("finder-remote/sub"), type: "folder" },
    });
    expect(made.json?.code, made.text).toBe(0);
    const r = await raw(fx.url, "MKCOL", "/finder", { headers: { "User-Agent": UA_SEQUOIA } });
    expect(r.status, r.text).toBe(201);
  });

  const h = (extra: Record<string, string> = {}) => ({
    "User-Agent": UA_SEQUOIA,
    Accept: "*/*",
    ...extra,
  });

  async function upstreamNames(folder: string): Promise<string[]> {
    const r = await api.client.call<{ files: CrFile[] }>("GET", "/file", {
      query: { uri: myUri(folder), page_size: 2000 },
    });
    expect(r.json?.code, r.text).toBe(0);
    return r.json.data!.files.map((f) => f.name).sort();
  }

  const calls = (s: { requests: Record<string, number> }) =>
    Object.values(s.requests).reduce((a, b) => a + b, 0);

  it("mounts: OPTIONS says class 2, repeated root PROPFINDs are served from the cache", async () => {
    const opt = await raw(fx.url, "OPTIONS", "/", { headers: h() });
    expect(opt.status).toBe(200);
    const dav = String(opt.headers["dav"])
      .split(",")
      .map((s) => s.trim());
    expect(dav).toContain("1");
    expect(dav).toContain("2");
    expect(String(opt.headers["allow"])).toMatch(/\bLOCK\b/);

    await fx.resetStats();
    const first = await finderPropfind("/", "0", PROPFIND_ITEM);
    expect(first.status, first.text).toBe(207);
    const root = parseMultistatus(first.text);
    expect(root).toHaveLength(1);
    expect(root[0]!.href).toBe("/");
    expect(propIn(root[0]!, 200, DAV, "resourcetype")?.children).toEqual(["{DAV:}collection"]);

    const listing = await finderPropfind("/", "1", PROPFIND_LIST);
    expect(listing.status, listing.text).toBe(207);
    const rows = parseMultistatus(listing.text);
    expect(rows.map((r) => r.href)).toContain("/finder/");
    // The Apple property is unknown: reported 404, never a failure of the whole request.
    expect(
      propIn(rows[0]!, 404, "http://www.apple.com/webdav_fs/props/", "appledoubleheader"),
    ).toBeDefined();
    const afterFirst = calls(await fx.stats());

    await fx.resetStats();
    for (let i = 0; i < 3; i++) {
      const again = await finderPropfind("/", i === 1 ? "1" : "0", PROPFIND_ITEM);
      expect(again.status).toBe(207);
    }
    const repeated = await fx.stats();
    expect(afterFirst, "upstream calls for the first two root PROPFINDs").toBeLessThanOrEqual(2);
    expect(repeated.requests, "identical root PROPFINDs go upstream again").toEqual({});
  });

  it("hides quota properties from macOS 15.4+ Finder without asking the upstream", async () => {
    await fx.resetStats();
    const r = await finderPropfind("/", "0", PROPFIND_QUOTA);
    expect(r.status, r.text).toBe(207);
    const [root] = parseMultistatus(r.text);
    const found = root!.propstats.filter((ps) => ps.status === 200).flatMap((ps) => ps.props);
    expect(found.map((p) => p.name)).not.toContain("quota-available-bytes");
    expect(found.map((p) => p.name)).not.toContain("quota-used-bytes");
    expect(r.text).not.toMatch(/quota-(available|used)-bytes>\s*\d/);
    expect((await fx.stats()).requests["GET /api/v4/user/capacity"] ?? 0).toBe(0);
  });

  it("reports quota properties to older Finder (Darwin 23), matching /user/capacity", async () => {
    const r = await raw(fx.url, "PROPFIND", "/", {
      headers: {
        "User-Agent": UA_SONOMA,
        Accept: "*/*",
        Depth: "0",
        "Content-Type": "text/xml",
        "Content-Length": String(Buffer.byteLength(PROPFIND_QUOTA)),
      },
      body: PROPFIND_QUOTA,
    });
    expect(r.status, r.text).toBe(207);
    const [root] = parseMultistatus(r.text);
    const available = propIn(root!, 200, DAV, "quota-available-bytes");
    const used = propIn(root!, 200, DAV, "quota-used-bytes");
    expect(available?.text.trim(), r.text).toMatch(/^\d+$/);
    expect(used?.text.trim(), r.text).toMatch(/^\d+$/);
    // The non-standard names Finder also asks for are unknown, and say so.
    expect(propIn(root!, 404, DAV, "quota")).toBeDefined();
    expect(propIn(root!, 404, DAV, "quotaused")).toBeDefined();

    const cap = await api.client.call<{ total: number; used: number }>("GET", "/user/capacity");
    expect(cap.json?.code, cap.text).toBe(0);
    expect(Number(used!.text)).toBe(cap.json.data!.used);
    expect(Number(available!.text)).toBe(cap.json.data!.total - cap.json.data!.used);
  });

  it("answers the mount probes with 404, from the cached listing, without upstream calls", async () => {
    // The mount's Depth 1 listing of / is cached; the probes are misses in it.
    const list = await finderPropfind("/", "1", PROPFIND_LIST);
    expect(list.status).toBe(207);

    await fx.resetStats();
    for (const name of PROBES) {
      const p = await finderPropfind(`/${encodeURIComponent(name)}`, "0", PROPFIND_ITEM);
      expect(p.status, `PROPFIND /${name}`).toBe(404);
      const g = await raw(fx.url, "HEAD", `/${encodeURIComponent(name)}`, { headers: h() });
      expect(g.status, `HEAD /${name}`).toBe(404);
    }
    const root = await fx.stats();
    expect(root.requests, `upstream calls for ${PROBES.length * 2} root probes`).toEqual({});

    // In a folder that was never listed: at most one upstream look-up per name, then none.
    const folder = "/finder-remote/sub";
    await fx.resetStats();
    for (const name of PROBES) {
      const p = await finderPropfind(`${folder}/${encodeURIComponent(name)}`, "0", PROPFIND_ITEM);
      expect(p.status, `PROPFIND ${folder}/${name}`).toBe(404);
    }
    const firstRound = calls(await fx.stats());
    expect(firstRound, `upstream calls for the first probes of ${folder}`).toBeLessThanOrEqual(
      PROBES.length,
    );
    await fx.resetStats();
    for (const name of PROBES) {
      const p = await finderPropfind(`${folder}/${encodeURIComponent(name)}`, "0", PROPFIND_ITEM);
      expect(p.status).toBe(404);
      const g = await raw(fx.url, "GET", `${folder}/${encodeURIComponent(name)}`, { headers: h() });
      expect(g.status).toBe(404);
    }
    expect((await fx.stats()).requests, "repeated probes go upstream again").toEqual({});
  });

  it("stores a chunked PUT with X-Expected-Entity-Length byte for byte", async () => {
    const body = payload(3_000_000 + 1234, 1);
    await fx.resetStats();
    const r = await raw(fx.url, "PUT", "/finder/photo%20album.raw", {
      headers: h({
        "Content-Type": "application/octet-stream",
        "Transfer-Encoding": "chunked",
        "X-Expected-Entity-Length": String(body.length),
      }),
      body: pieces(body),
    });
    expect(r.status, r.text).toBe(201);
    const s = await fx.stats();
    // The body went upstream once, whole: no spooled retry, no second copy.
    expect(s.bytesIn).toBeGreaterThanOrEqual(body.length);
    expect(s.bytesIn).toBeLessThan(body.length + 64 * 1024);
    expect(s.requests["DELETE /api/v4/file/upload"] ?? 0).toBe(0);

    await expectStored("finder/photo album.raw", body);

    // Finder reads the size back right away.
    const p = await finderPropfind("/finder/photo%20album.raw", "0", PROPFIND_ITEM);
    expect(p.status).toBe(207);
    const [entry] = parseMultistatus(p.text);
    expect(propIn(entry!, 200, DAV, "getcontentlength")?.text).toBe(String(body.length));
  });

  it("stores a chunked PUT without any length header (spooled) byte for byte", async () => {
    // Larger than one upstream chunk and than the one-call limit: an upload session.
    const body = payload(5 * CHUNK + 77_777, 2);
    const r = await raw(fx.url, "PUT", "/finder/no-length.bin", {
      headers: h({ "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked" }),
      body: pieces(body),
    });
    expect(r.status, r.text).toBe(201);
    await expectStored("finder/no-length.bin", body);

    const small = payload(10_000, 3);
    const r2 = await raw(fx.url, "PUT", "/finder/no-length-small.txt", {
      headers: h({ "Content-Type": "text/plain", "Transfer-Encoding": "chunked" }),
      body: pieces(small),
    });
    expect(r2.status, r2.text).toBe(201);
    await expectStored("finder/no-length-small.txt", small);
  });

  it("accepts AppleDouble ._ files next to the real file", async () => {
    const real = payload(20_000, 4);
    const put = await raw(fx.url, "PUT", "/finder/report.pdf", {
      headers: h({
        "Content-Type": "application/pdf",
        "Transfer-Encoding": "chunked",
        "X-Expected-Entity-Length": String(real.length),
      }),
      body: pieces(real),
    });
    expect(put.status, put.text).toBe(201);

    const ad = appleDouble();
    const probe = await finderPropfind("/finder/._report.pdf", "0", PROPFIND_ITEM);
    expect(probe.status).toBe(404);
    const r = await raw(fx.url, "PUT", "/finder/._report.pdf", {
      headers: h({
        "Content-Type": "application/octet-stream",
        "Transfer-Encoding": "chunked",
        "X-Expected-Entity-Length": String(ad.length),
      }),
      body: [ad.subarray(0, 100), ad.subarray(100)],
    });
    expect(r.status, r.text).toBe(201);
    await expectStored("finder/._report.pdf", ad);
    await expectStored("finder/report.pdf", real);

    // The AppleDouble file is now found, with its size.
    const again = await finderPropfind("/finder/._report.pdf", "0", PROPFIND_ITEM);
    expect(again.status).toBe(207);
    expect(propIn(parseMultistatus(again.text)[0]!, 200, DAV, "getcontentlength")?.text).toBe(
      String(ad.length),
    );
  });

  it("MOVE without an Overwrite header replaces the destination (safe save)", async () => {
    const oldBody = payload(5000, 5);
    const newBody = payload(7000, 6);
    for (const [path, body] of [
      ["/finder/notes.txt", oldBody],
      ["/finder/notes.txt.sb-1234-tmp", newBody],
    ] as const) {
      const r = await raw(fx.url, "PUT", path, {
        headers: h({
          "Content-Type": "text/plain",
          "Transfer-Encoding": "chunked",
          "X-Expected-Entity-Length": String(body.length),
        }),
        body: pieces(body),
      });
      expect(r.status, `${path}: ${r.text}`).toBe(201);
    }
    const mv = await raw(fx.url, "MOVE", "/finder/notes.txt.sb-1234-tmp", {
      headers: h({ Destination: `${fx.url}/finder/notes.txt` }),
    });
    expect(mv.status, mv.text).toBe(204);

    await expectStored("finder/notes.txt", newBody);
    expect(await upstreamInfo("finder/notes.txt.sb-1234-tmp")).toBeUndefined();
    const names = await upstreamNames("finder");
    expect(names.filter((n) => n.startsWith("notes.txt"))).toEqual(["notes.txt"]);

    const gone = await finderPropfind("/finder/notes.txt.sb-1234-tmp", "0", PROPFIND_ITEM);
    expect(gone.status).toBe(404);
  });

  it("a cancelled chunked PUT leaves the previous content and no upload session", async () => {
    for (const [name, size, sessions] of [
      ["cancel-small.mov", 3_000_000, false],
      ["cancel-large.mov", 6 * CHUNK + 5, true],
    ] as const) {
      const path = `/finder/${name}`;
      const rel = `finder/${name}`;
      const before = payload(50_000, 31);
      const put = await raw(fx.url, "PUT", path, {
        headers: h({
          "Content-Type": "video/quicktime",
          "Transfer-Encoding": "chunked",
          "X-Expected-Entity-Length": String(before.length),
        }),
        body: pieces(before),
      });
      expect(put.status, put.text).toBe(201);

      const next = payload(size, 32);
      await fx.resetStats();
      await abandonedPut(
        fx.url,
        path,
        h({
          "Content-Type": "video/quicktime",
          "Transfer-Encoding": "chunked",
          "X-Expected-Entity-Length": String(next.length),
        }),
        next,
        Math.floor(size * 0.6),
      );

      // The gateway notices the dropped connection and cancels upstream; wait for that.
      let info: CrFile | undefined;
      let cancelled = 0;
      await until(
        `${name}: the abandoned upload cleaned up`,
        async () => {
          info = await upstreamInfo(rel);
          cancelled = (await fx.stats()).requests["DELETE /api/v4/file/upload"] ?? 0;
          const clean = info?.size === before.length && !info.metadata?.["sys:upload_session_id"];
          return clean && (!sessions || cancelled > 0);
        },
        10_000,
      );
      expect(info?.metadata?.["sys:upload_session_id"], `${name}: upload session left`).toBe(
        undefined,
      );
      if (sessions) expect(cancelled, `${name}: upload session cancelled`).toBe(1);
      await expectStored(rel, before);
      expect((await upstreamNames("finder")).filter((n) => n.startsWith(name))).toEqual([name]);

      // The gateway agrees, and the path is writable again.
      const again = await raw(fx.url, "PUT", path, {
        headers: h({
          "Content-Type": "video/quicktime",
          "Transfer-Encoding": "chunked",
          "X-Expected-Entity-Length": String(next.length),
        }),
        body: pieces(next),
      });
      expect(again.status, `${name}: ${again.text}`).toBe(204);
      await expectStored(rel, next);
    }
  });

  it("LOCK, PUT with the token, UNLOCK: the write lands and the lock guards it", async () => {
    const lock = await raw(fx.url, "LOCK", "/finder/locked.key", {
      headers: h({
        Depth: "0",
        Timeout: "Second-600",
        "Content-Type": "text/xml; charset=utf-8",
        "Content-Length": String(Buffer.byteLength(LOCKINFO)),
      }),
      body: LOCKINFO,
    });
    // A lock on an unmapped URL creates an empty file (RFC 4918 §7.3).
    expect(lock.status, lock.text).toBe(201);
    const token = /^<([^>]+)>$/.exec(String(lock.headers["lock-token"]))?.[1];
    expect(token, String(lock.headers["lock-token"])).toMatch(/^opaquelocktoken:/);
    expect(lock.text).toContain(token!);
    expect(lock.text).toContain("http://www.apple.com/webdav_fs/");
    const placeholder = await upstreamInfo("finder/locked.key");
    expect(placeholder?.size).toBe(0);

    const body = payload(200_000, 7);
    const denied = await raw(fx.url, "PUT", "/finder/locked.key", {
      headers: h({
        "Content-Type": "application/octet-stream",
        "Transfer-Encoding": "chunked",
        "X-Expected-Entity-Length": String(body.length),
      }),
      body: pieces(body),
    });
    expect(denied.status, "PUT without the lock token").toBe(423);
    expect((await upstreamInfo("finder/locked.key"))?.size).toBe(0);

    const put = await raw(fx.url, "PUT", "/finder/locked.key", {
      headers: h({
        "Content-Type": "application/octet-stream",
        "Transfer-Encoding": "chunked",
        "X-Expected-Entity-Length": String(body.length),
        If: `(<${token}>)`,
      }),
      body: pieces(body),
    });
    expect([200, 204], put.text).toContain(put.status);

    const unlock = await raw(fx.url, "UNLOCK", "/finder/locked.key", {
      headers: h({ "Lock-Token": `<${token}>` }),
    });
    expect(unlock.status, unlock.text).toBe(204);
    await expectStored("finder/locked.key", body);

    // Unlocked: a plain write goes through again.
    const next = payload(1000, 8);
    const after = await raw(fx.url, "PUT", "/finder/locked.key", {
      headers: h({
        "Content-Type": "application/octet-stream",
        "Transfer-Encoding": "chunked",
        "X-Expected-Entity-Length": String(next.length),
      }),
      body: pieces(next),
    });
    expect(after.status, after.text).toBe(204);
    await expectStored("finder/locked.key", next);
  });
});
