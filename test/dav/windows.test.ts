import { beforeAll, describe, expect, it } from "vitest";
import {
  Api,
  expectStored as expectStoredIn,
  myUri,
  upstreamInfo as storedInfo,
  type CrFile,
} from "../helpers/emulator.js";
import { raw } from "../helpers/http-raw.js";
import { DAV, parseMultistatus, payload, propIn } from "../helpers/replay.js";
import { useGateway } from "../helpers/gateway.js";

/**
 * Windows Explorer (Mini-Redirector) replayed over raw HTTP (docs/clients.md §D.2): the upload
 * sequence PROPFIND → PUT 0 bytes → LOCK → PROPPATCH Win32* → HEAD → PUT content → PROPPATCH →
 * UNLOCK, folders without a trailing slash, creationdate; and rclone's PUT-then-PROPFIND.
 * Every write is checked upstream, through the emulator's own API.
 */

const UA = "Microsoft-WebDAV-MiniRedir/10.0.19045";
const MS = "urn:schemas-microsoft-com:";

// ---------------------------------------------------------------------------------------------
// Windows' request bodies

const LOCKINFO = `<?xml version="1.0" encoding="utf-8" ?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>DESKTOP-7Q2K\\alice</D:href></D:owner></D:lockinfo>`;

function proppatchBody(props: Record<string, string>): string {
  const inner = Object.entries(props)
    .map(([name, value]) => `<Z:${name}>${value}</Z:${name}>`)
    .join("");
  return `<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="${MS}"><D:set><D:prop>${inner}</D:prop></D:set></D:propertyupdate>`;
}

const PROPFIND_WIN32 = `<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:prop xmlns:Z="${MS}"><D:getcontentlength/><D:getlastmodified/><D:creationdate/><D:resourcetype/><D:getetag/><Z:Win32CreationTime/><Z:Win32LastAccessTime/><Z:Win32LastModifiedTime/><Z:Win32FileAttributes/></D:prop></D:propfind>`;

const PROPFIND_ALLPROP = `<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`;

const PROPFIND_RCLONE = `<?xml version="1.0" encoding="utf-8" ?>
<D:propfind xmlns:D="DAV:">
 <D:prop>
  <D:displayname />
  <D:getlastmodified />
  <D:getcontentlength />
  <D:resourcetype />
  <D:getcontenttype />
  <D:getetag />
 </D:prop>
</D:propfind>
`;

/** RFC 3339 / ISO 8601 date-time as RFC 4918 §15.1 requires for creationdate. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

// ---------------------------------------------------------------------------------------------

describe("Windows Explorer (Mini-Redirector) replay", () => {
  const fx = useGateway();
  const api = {} as { client: Api };
  const upstreamInfo = (path: string) => storedInfo(api.client, path);
  const expectStored = (path: string, body: Buffer) => expectStoredIn(api.client, path, body);

  beforeAll(async () => {
    api.client = new Api(fx.emu.url);
    await api.client.login();
    const r = await raw(fx.url, "MKCOL", "/win", { headers: h() });
    expect(r.status, r.text).toBe(201);
  });

  function h(extra: Record<string, string> = {}): Record<string, string> {
    return { "User-Agent": UA, Connection: "Keep-Alive", ...extra };
  }

  function xmlHeaders(body: string, extra: Record<string, string> = {}) {
    return h({
      "Content-Type": "text/xml; charset=utf-8",
      "Content-Length": String(Buffer.byteLength(body)),
      ...extra,
    });
  }

  /** Cloudreve's dead-property encoding of one stored Win32 property: its text, or undefined. */
  function storedProp(info: CrFile, name: string): string | undefined {
    const raw = info.metadata?.[`dav:${MS}|${name}`];
    if (raw === undefined) return undefined;
    const value = JSON.parse(raw) as { l?: unknown; i?: unknown };
    expect(typeof value.l, `dav:${MS}|${name} = ${raw}`).toBe("string");
    expect(typeof value.i, `dav:${MS}|${name} = ${raw}`).toBe("string");
    expect(value.i as string).toMatch(/^[A-Za-z0-9+/]*={0,2}$/);
    return Buffer.from(value.i as string, "base64").toString("utf8");
  }

  function allOk(text: string, href: string, names: string[]): void {
    const rows = parseMultistatus(text);
    expect(
      rows.map((r) => r.href),
      text,
    ).toEqual([href]);
    const statuses = rows[0]!.propstats.map((ps) => ps.status);
    expect(statuses, text).toEqual([200]);
    expect(rows[0]!.propstats[0]!.props.map((p) => `${p.ns}${p.name}`).sort()).toEqual(
      names.map((n) => `${MS}${n}`).sort(),
    );
  }

  const created = "Wed, 15 Jan 2025 10:00:00 GMT";
  const accessed = "Thu, 16 Jan 2025 11:30:00 GMT";
  const modified1 = "Thu, 16 Jan 2025 11:30:05 GMT";
  const modified2 = "Fri, 17 Jan 2025 08:15:42 GMT";
  const content = payload(1_234_567, 11);

  it("uploads a file with the Explorer sequence, Win32 props and lock included", async () => {
    const path = "/win/Quarterly%20Report.docx";
    const rel = "win/Quarterly Report.docx";

    // 1. Does it exist? (Explorer sends an empty-bodied PROPFIND.)
    const probe = await raw(fx.url, "PROPFIND", path, {
      headers: h({ Depth: "0", translate: "f", "Content-Length": "0" }),
    });
    expect(probe.status, probe.text).toBe(404);

    // 2. Create it empty.
    const empty = await raw(fx.url, "PUT", path, {
      headers: h({ "Content-Length": "0", translate: "f" }),
      body: "",
    });
    expect(empty.status, empty.text).toBe(201);
    expect((await upstreamInfo(rel))?.size).toBe(0);

    // 3. Lock it.
    const lock = await raw(fx.url, "LOCK", path, {
      headers: xmlHeaders(LOCKINFO, { Timeout: "Second-3600" }),
      body: LOCKINFO,
    });
    expect(lock.status, lock.text).toBe(200);
    const token = /^<([^>]+)>$/.exec(String(lock.headers["lock-token"]))?.[1];
    expect(token, String(lock.headers["lock-token"])).toMatch(/^opaquelocktoken:/);
    const ifHeader = `(<${token}>)`;

    // 4. Win32 times and attributes, under the lock.
    const first = proppatchBody({
      Win32CreationTime: created,
      Win32LastAccessTime: accessed,
      Win32LastModifiedTime: modified1,
      Win32FileAttributes: "00000020",
    });
    const pp1 = await raw(fx.url, "PROPPATCH", path, {
      headers: xmlHeaders(first, { If: ifHeader }),
      body: first,
    });
    expect(pp1.status, pp1.text).toBe(207);
    allOk(pp1.text, "/win/Quarterly%20Report.docx", [
      "Win32CreationTime",
      "Win32LastAccessTime",
      "Win32LastModifiedTime",
      "Win32FileAttributes",
    ]);

    // Without the token the same PROPPATCH is refused: the lock is real.
    const pp0 = await raw(fx.url, "PROPPATCH", path, { headers: xmlHeaders(first), body: first });
    expect(pp0.status, pp0.text).toBe(423);

    // 5. HEAD.
    const head = await raw(fx.url, "HEAD", path, { headers: h({ translate: "f" }) });
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe("0");
    expect(head.body.length).toBe(0);

    // 6. The content, with the token.
    const put = await raw(fx.url, "PUT", path, {
      headers: h({
        "Content-Length": String(content.length),
        "Content-Type": "application/octet-stream",
        If: ifHeader,
      }),
      body: content,
    });
    expect(put.status, put.text).toBe(204);

    // 7. Times and attributes again.
    const second = proppatchBody({
      Win32LastModifiedTime: modified2,
      Win32FileAttributes: "00000020",
    });
    const pp2 = await raw(fx.url, "PROPPATCH", path, {
      headers: xmlHeaders(second, { If: ifHeader }),
      body: second,
    });
    expect(pp2.status, pp2.text).toBe(207);
    allOk(pp2.text, "/win/Quarterly%20Report.docx", [
      "Win32LastModifiedTime",
      "Win32FileAttributes",
    ]);

    // 8. Unlock.
    const unlock = await raw(fx.url, "UNLOCK", path, {
      headers: h({ "Lock-Token": `<${token}>` }),
    });
    expect(unlock.status, unlock.text).toBe(204);

    // Upstream: the content, and the properties in Cloudreve's own dead-property encoding.
    const info = await expectStored(rel, content);
    expect(storedProp(info, "Win32CreationTime")).toBe(created);
    expect(storedProp(info, "Win32LastAccessTime")).toBe(accessed);
    expect(storedProp(info, "Win32LastModifiedTime")).toBe(modified2);
    expect(storedProp(info, "Win32FileAttributes")).toBe("00000020");
    expect(info.metadata?.["sys:upload_session_id"]).toBeUndefined();

    // The gateway reports them back.
    const pf = await raw(fx.url, "PROPFIND", path, {
      headers: xmlHeaders(PROPFIND_WIN32, { Depth: "0", translate: "f" }),
      body: PROPFIND_WIN32,
    });
    expect(pf.status, pf.text).toBe(207);
    const [row] = parseMultistatus(pf.text);
    expect(propIn(row!, 200, MS, "Win32CreationTime")?.text).toBe(created);
    expect(propIn(row!, 200, MS, "Win32LastAccessTime")?.text).toBe(accessed);
    expect(propIn(row!, 200, MS, "Win32LastModifiedTime")?.text).toBe(modified2);
    expect(propIn(row!, 200, MS, "Win32FileAttributes")?.text).toBe("00000020");
    expect(propIn(row!, 200, DAV, "getcontentlength")?.text).toBe(String(content.length));
    expect(propIn(row!, 200, DAV, "getetag")?.text).toBe(`"${info.primary_entity}"`);

    const all = await raw(fx.url, "PROPFIND", path, {
      headers: xmlHeaders(PROPFIND_ALLPROP, { Depth: "0" }),
      body: PROPFIND_ALLPROP,
    });
    expect(all.status, all.text).toBe(207);
    const [allRow] = parseMultistatus(all.text);
    expect(propIn(allRow!, 200, MS, "Win32LastModifiedTime")?.text).toBe(modified2);

    // And the download is the content.
    const get = await raw(fx.url, "GET", path, { headers: h({ translate: "f" }) });
    expect(get.status).toBe(200);
    expect(get.body.equals(content)).toBe(true);
  });

  it("reads Win32 props stored upstream in Cloudreve's encoding by someone else", async () => {
    // Written the way Cloudreve's own WebDAV would have: straight through the API, in a folder
    // the gateway has not seen yet.
    const rel = "win-cloudreve/props.txt";
    const created = await api.client.call<CrFile>("PUT", "/file/content", {
      query: { uri: myUri(rel) },
      body: "hello",
      headers: { "content-type": "application/octet-stream" },
    });
    expect(created.json?.code, created.text).toBe(0);
    const value = "Sat, 01 Feb 2025 09:00:00 GMT";
    const patch = await api.client.call("PATCH", "/file/metadata", {
      json: {
        uris: [myUri(rel)],
        patches: [
          {
            key: `dav:${MS}|Win32LastModifiedTime`,
            value: JSON.stringify({ l: "", i: Buffer.from(value).toString("base64") }),
          },
        ],
      },
    });
    expect(patch.json?.code, patch.text).toBe(0);

    const pf = await raw(fx.url, "PROPFIND", "/win-cloudreve/props.txt", {
      headers: xmlHeaders(PROPFIND_WIN32, { Depth: "0" }),
      body: PROPFIND_WIN32,
    });
    expect(pf.status, pf.text).toBe(207);
    const [row] = parseMultistatus(pf.text);
    expect(propIn(row!, 200, MS, "Win32LastModifiedTime")?.text).toBe(value);
    expect(propIn(row!, 404, MS, "Win32FileAttributes")).toBeDefined();

    // A PROPPATCH of another property through the gateway keeps it.
    const attrs = proppatchBody({ Win32FileAttributes: "00000001" });
    const pp = await raw(fx.url, "PROPPATCH", "/win-cloudreve/props.txt", {
      headers: xmlHeaders(attrs),
      body: attrs,
    });
    expect(pp.status, pp.text).toBe(207);
    const info = await upstreamInfo(rel);
    expect(storedProp(info!, "Win32LastModifiedTime")).toBe(value);
    expect(storedProp(info!, "Win32FileAttributes")).toBe("00000001");
  });

  it("serves folders requested without a trailing slash", async () => {
    const mk = await raw(fx.url, "MKCOL", "/win/New%20folder", { headers: h() });
    expect(mk.status, mk.text).toBe(201);
    const up = await upstreamInfo("win/New folder");
    expect(up?.type).toBe(1);

    const list = await raw(fx.url, "PROPFIND", "/win", {
      headers: xmlHeaders(PROPFIND_WIN32, { Depth: "1", translate: "f" }),
      body: PROPFIND_WIN32,
    });
    expect(list.status, list.text).toBe(207);
    const rows = parseMultistatus(list.text);
    const hrefs = rows.map((r) => r.href);
    expect(hrefs[0]).toBe("/win/");
    expect(hrefs).toContain("/win/New%20folder/");
    const folderRow = rows.find((r) => r.href === "/win/New%20folder/")!;
    expect(propIn(folderRow, 200, DAV, "resourcetype")?.children).toEqual(["{DAV:}collection"]);

    const one = await raw(fx.url, "PROPFIND", "/win/New%20folder", {
      headers: xmlHeaders(PROPFIND_WIN32, { Depth: "0", translate: "f" }),
      body: PROPFIND_WIN32,
    });
    expect(one.status, one.text).toBe(207);
    expect(parseMultistatus(one.text)[0]!.href).toBe("/win/New%20folder/");

    // Explorer sets attributes on folders too.
    const attrs = proppatchBody({ Win32FileAttributes: "00000010" });
    const pp = await raw(fx.url, "PROPPATCH", "/win/New%20folder", {
      headers: xmlHeaders(attrs),
      body: attrs,
    });
    expect(pp.status, pp.text).toBe(207);
    allOk(pp.text, "/win/New%20folder/", ["Win32FileAttributes"]);
    expect(storedProp((await upstreamInfo("win/New folder"))!, "Win32FileAttributes")).toBe(
      "00000010",
    );

    // Rename (F2) and delete, again without slashes.
    const mv = await raw(fx.url, "MOVE", "/win/New%20folder", {
      headers: h({ Destination: `${fx.url}/win/Renamed`, Overwrite: "F" }),
    });
    expect(mv.status, mv.text).toBe(201);
    expect(await upstreamInfo("win/New folder")).toBeUndefined();
    expect((await upstreamInfo("win/Renamed"))?.type).toBe(1);
    const del = await raw(fx.url, "DELETE", "/win/Renamed", { headers: h() });
    expect(del.status, del.text).toBe(204);
    expect(await upstreamInfo("win/Renamed")).toBeUndefined();
  });

  it("reports creationdate in RFC 3339, equal to the upstream created_at", async () => {
    const put = await raw(fx.url, "PUT", "/win/dated.txt", {
      headers: h({ "Content-Length": "3" }),
      body: "abc",
    });
    expect(put.status).toBe(201);
    for (const path of ["/win/dated.txt", "/win"]) {
      const r = await raw(fx.url, "PROPFIND", path, {
        headers: xmlHeaders(PROPFIND_WIN32, { Depth: "0" }),
        body: PROPFIND_WIN32,
      });
      expect(r.status, r.text).toBe(207);
      const [row] = parseMultistatus(r.text);
      const cd = propIn(row!, 200, DAV, "creationdate")?.text.trim();
      expect(cd, `${path}: ${r.text}`).toMatch(RFC3339);
      const upstream = (await upstreamInfo(path.slice(1)))!;
      const want = Math.floor(Date.parse(upstream.created_at.replace(/(\.\d{3})\d+/, "$1")) / 1000);
      expect(Math.floor(Date.parse(cd!) / 1000), `${path}: ${cd} vs ${upstream.created_at}`).toBe(
        want,
      );
      const lm = propIn(row!, 200, DAV, "getlastmodified")?.text.trim();
      expect(lm).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    }
  });

  it("rclone: PROPFIND right after PUT shows the new size and ETag with no upstream call", async () => {
    const rc = (extra: Record<string, string>) => ({
      "User-Agent": "rclone/v1.60.1",
      "Accept-Encoding": "gzip",
      ...extra,
    });
    const propfind = () =>
      raw(fx.url, "PROPFIND", "/win/rclone.bin", {
        headers: rc({
          Depth: "0",
          "Content-Type": "application/xml",
          "Content-Length": String(Buffer.byteLength(PROPFIND_RCLONE)),
        }),
        body: PROPFIND_RCLONE,
      });

    const versions = [payload(300_000, 21), payload(45_678, 22)];
    const etags: string[] = [];
    for (const [i, body] of versions.entries()) {
      const put = await raw(fx.url, "PUT", "/win/rclone.bin", {
        headers: rc({
          "Content-Length": String(body.length),
          "Content-Type": "application/octet-stream",
        }),
        body,
      });
      expect(put.status, put.text).toBe(i === 0 ? 201 : 204);

      await fx.resetStats();
      const pf = await propfind();
      const stats = await fx.stats();
      expect(pf.status, pf.text).toBe(207);
      expect(stats.requests, "upstream calls for the PROPFIND after PUT").toEqual({});

      const [row] = parseMultistatus(pf.text);
      expect(propIn(row!, 200, DAV, "getcontentlength")?.text).toBe(String(body.length));
      const etag = propIn(row!, 200, DAV, "getetag")?.text;
      const info = await expectStored("win/rclone.bin", body);
      expect(etag).toBe(`"${info.primary_entity}"`);
      expect(put.headers["etag"]).toBe(etag);
      etags.push(etag!);
    }
    expect(etags[1]).not.toBe(etags[0]);
  });
});
