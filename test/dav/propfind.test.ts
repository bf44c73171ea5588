/**
 * OPTIONS, PROPFIND and PROPPATCH through the gateway against the emulator.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { hashPassword } from "../../src/passwords.js";
import { seed } from "../helpers/control.js";
import { Api, myUri } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import {
  enc,
  hrefs,
  LOCK_EXCLUSIVE,
  PROPFIND_ALL,
  propfindBody,
  raw,
  responseFor,
  totalCalls,
} from "../helpers/http-raw.js";

const HASH = await hashPassword("pw");
const fx = useGateway();
let api: Api;
beforeAll(async () => {
  api = new Api(fx.emu.url);
  await api.login();
});

const put = (path: string, body = "x", headers: Record<string, string> = {}) =>
  raw(fx.url, "PUT", enc(path), { body, headers });
const mkcol = (path: string) => raw(fx.url, "MKCOL", enc(path));
const propfind = (path: string, depth: string | undefined, body?: string) =>
  raw(fx.url, "PROPFIND", path, {
    headers: depth === undefined ? {} : { depth },
    body,
  });

async function info(path: string) {
  const r = await api.call<{ updated_at: string; created_at: string; size: number }>(
    "GET",
    "/file/info",
    { query: { uri: myUri(path) } },
  );
  expect(r.json.code, r.text).toBe(0);
  return r.json.data!;
}

describe("OPTIONS", () => {
  it("advertises DAV 1 and 2, MS-Author-Via and the methods of each kind of resource", async () => {
    const allowOf = async (path: string) => {
      const r = await raw(fx.url, "OPTIONS", path);
      expect(r.status).toBe(200);
      expect(r.headers["dav"]).toBe("1, 2");
      expect(r.headers["ms-author-via"]).toBe("DAV");
      return String(r.headers["allow"]).split(/,\s*/);
    };
    expect((await raw(fx.url, "PUT", "/options-file.txt", { body: "x" })).status).toBe(201);
    const collection = await allowOf("/");
    for (const m of [
      "OPTIONS",
      "GET",
      "HEAD",
      "DELETE",
      "COPY",
      "MOVE",
      "PROPFIND",
      "PROPPATCH",
      "LOCK",
      "UNLOCK",
    ]) {
      expect(collection).toContain(m);
    }
    expect(collection).not.toContain("PUT");
    expect(collection).not.toContain("MKCOL");
    const file = await allowOf("/options-file.txt");
    expect(file).toContain("PUT");
    expect(file).not.toContain("MKCOL");
    expect(await allowOf("/options-nothing-here")).toEqual(["OPTIONS", "PUT", "MKCOL", "LOCK"]);
  });

  describe("with gateway users", () => {
    const authed = useGateway({}, { users: [{ name: "alice", passwordHash: HASH }] });

    it("answers OPTIONS without credentials, and nothing else", async () => {
      const r = await raw(authed.url, "OPTIONS", "/");
      expect(r.status).toBe(200);
      expect(r.headers["dav"]).toBe("1, 2");
      expect((await raw(authed.url, "PROPFIND", "/", { headers: { depth: "0" } })).status).toBe(
        401,
      );
    });
  });
});

describe("PROPFIND", () => {
  beforeAll(async () => {
    expect((await mkcol("/pf")).status).toBe(201);
    expect((await put("/pf/file.txt", "hello")).status).toBe(201);
    expect((await mkcol("/pf/sub")).status).toBe(201);
  });

  it("Depth 0 on a folder: one response, trailing slash, collection", async () => {
    const r = await propfind("/pf/", "0", PROPFIND_ALL);
    expect(r.status).toBe(207);
    expect(r.headers["content-type"]).toMatch(/^application\/xml/);
    expect(hrefs(r.text)).toEqual(["/pf/"]);
    expect(r.text).toContain("<D:resourcetype><D:collection/></D:resourcetype>");
  });

  it("Depth 1 lists the members; collections end with a slash", async () => {
    const r = await propfind("/pf", "1");
    expect(r.status).toBe(207);
    expect(hrefs(r.text).sort()).toEqual(["/pf/", "/pf/file.txt", "/pf/sub/"]);
    const file = responseFor(r.text, "/pf/file.txt")!;
    expect(file).toContain("<D:getcontentlength>5</D:getcontentlength>");
    expect(file).toContain("<D:getcontenttype>text/plain</D:getcontenttype>");
    expect(file).toContain("<D:resourcetype/>");
    expect(file).toMatch(
      /<D:getetag>&quot;[^<]+&quot;<\/D:getetag>|<D:getetag>"[^<]+"<\/D:getetag>/,
    );
  });

  it("Depth 1: each member shows its own locks and dead properties, the others none", async () => {
    expect((await mkcol("/pfm")).status).toBe(201);
    for (const name of ["locked.txt", "noted.txt", "plain.txt"]) {
      expect((await put(`/pfm/${name}`)).status).toBe(201);
    }
    const lock = await raw(fx.url, "LOCK", "/pfm/locked.txt", { body: LOCK_EXCLUSIVE });
    expect(lock.status).toBe(200);
    const note = await raw(fx.url, "PROPPATCH", "/pfm/noted.txt", {
      body: `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><Z:n xmlns:Z="urn:z">1</Z:n></D:prop></D:set></D:propertyupdate>`,
    });
    expect(note.status).toBe(207);
    const r = await propfind("/pfm/", "1");
    const locked = responseFor(r.text, "/pfm/locked.txt")!;
    const noted = responseFor(r.text, "/pfm/noted.txt")!;
    const plain = responseFor(r.text, "/pfm/plain.txt")!;
    expect(locked).toContain("<D:lockroot><D:href>/pfm/locked.txt</D:href></D:lockroot>");
    expect(noted).toMatch(/<ns\d+:n xmlns:ns\d+="urn:z">1<\/ns\d+:n>/);
    for (const other of [noted, plain]) expect(other).toContain("<D:lockdiscovery/>");
    for (const other of [locked, plain]) expect(other).not.toContain("urn:z");
    expect(
      await raw(fx.url, "UNLOCK", "/pfm/locked.txt", {
        headers: { "lock-token": String(lock.headers["lock-token"]) },
      }),
    ).toMatchObject({ status: 204 });
    expect(responseFor((await propfind("/pfm/", "1")).text, "/pfm/locked.txt")).toContain(
      "<D:lockdiscovery/>",
    );
  });

  it("Depth 1 on a file answers for the file alone", async () => {
    const r = await propfind("/pf/file.txt", "1");
    expect(r.status).toBe(207);
    expect(hrefs(r.text)).toEqual(["/pf/file.txt"]);
  });

  it.each([["infinity"], ["Infinity"], [undefined]])(
    "Depth %s → 403 propfind-finite-depth, no upstream call",
    async (depth) => {
      await fx.resetStats();
      const r = await propfind("/pf/", depth, PROPFIND_ALL);
      expect(r.status).toBe(403);
      expect(r.text).toMatch(/<D:error xmlns:D="DAV:"><D:propfind-finite-depth\/><\/D:error>/);
      expect(totalCalls(await fx.stats())).toBe(0);
    },
  );

  it("propname lists names without values", async () => {
    const r = await propfind(
      "/pf/file.txt",
      "0",
      `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>`,
    );
    expect(r.status).toBe(207);
    for (const n of ["getcontentlength", "getlastmodified", "getetag", "resourcetype"]) {
      expect(r.text).toContain(`<D:${n}/>`);
    }
    expect(r.text).not.toContain("<D:getcontentlength>5");
  });

  it("prop: known values 200, unknown ones in a 404 propstat", async () => {
    const r = await propfind(
      "/pf/file.txt",
      "0",
      propfindBody("<D:getcontentlength/>", '<X:nothing xmlns:X="urn:x"/>'),
    );
    expect(r.status).toBe(207);
    const parts = r.text.split("<D:propstat>");
    expect(parts).toHaveLength(3);
    expect(parts[1]).toContain("<D:getcontentlength>5</D:getcontentlength>");
    expect(parts[1]).toContain("HTTP/1.1 200 OK");
    expect(parts[2]).toMatch(/<ns\d+:nothing xmlns:ns\d+="urn:x"\/>/);
    expect(parts[2]).toContain("HTTP/1.1 404 Not Found");
  });

  it("getlastmodified is RFC 1123 and creationdate RFC 3339, both from Cloudreve", async () => {
    const r = await propfind(
      "/pf/file.txt",
      "0",
      propfindBody("<D:getlastmodified/>", "<D:creationdate/>"),
    );
    const lm = /<D:getlastmodified>([^<]+)<\/D:getlastmodified>/.exec(r.text)![1]!;
    const cd = /<D:creationdate>([^<]+)<\/D:creationdate>/.exec(r.text)![1]!;
    expect(lm).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    expect(cd).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    const upstream = await info("/pf/file.txt");
    expect(Date.parse(lm)).toBe(Math.floor(Date.parse(upstream.updated_at) / 1000) * 1000);
    expect(Date.parse(cd)).toBe(Math.floor(Date.parse(upstream.created_at) / 1000) * 1000);
  });

  it("quota props come from /user/capacity", async () => {
    const cap = await api.call<{ total: number; used: number }>("GET", "/user/capacity");
    const { total, used } = cap.json.data!;
    expect(used).toBeGreaterThan(0);
    const r = await propfind(
      "/",
      "0",
      propfindBody("<D:quota-available-bytes/>", "<D:quota-used-bytes/>"),
    );
    expect(r.status).toBe(207);
    expect(r.text).toContain(`<D:quota-used-bytes>${used}</D:quota-used-bytes>`);
    expect(r.text).toContain(`<D:quota-available-bytes>${total - used}</D:quota-available-bytes>`);
  });

  it("allprop does not fetch the quota (RFC 4331)", async () => {
    await fx.resetStats();
    const r = await propfind("/", "0", PROPFIND_ALL);
    expect(r.status).toBe(207);
    expect(r.text).not.toContain("quota-used-bytes");
    expect((await fx.stats()).requests["GET /api/v4/user/capacity"]).toBeUndefined();
  });

  it("an empty body is allprop", async () => {
    const r = await propfind("/pf/file.txt", "0");
    expect(r.status).toBe(207);
    expect(r.text).toContain("<D:getcontentlength>5</D:getcontentlength>");
    expect(r.text).toContain("<D:supportedlock>");
  });

  it("PROPFIND of a missing path → 404", async () => {
    expect((await propfind("/pf/nope", "0")).status).toBe(404);
  });

  describe("hrefs are percent-encoded", () => {
    // Cloudreve forbids "?" in names (see the BadName test); "?" in a URL must be encoded anyway.
    const names = ["with space.txt", "hash#tag.txt", "100%.txt", "日本語 ü.txt", "a+b&c;d=e.txt"];
    beforeAll(async () => {
      expect((await mkcol("/enc")).status).toBe(201);
      for (const n of names) expect((await put(`/enc/${n}`)).status).toBe(201);
      expect((await mkcol("/enc/dir one")).status).toBe(201);
    });

    it("in a Depth 1 listing, and they resolve back to the same entry", async () => {
      const r = await propfind("/enc/", "1");
      expect(r.status).toBe(207);
      const got = hrefs(r.text);
      const decoded = got.map((h) => h.split("/").map(decodeURIComponent).join("/"));
      for (const n of names) expect(decoded).toContain(`/enc/${n}`);
      expect(got).toContain("/enc/with%20space.txt");
      expect(got).toContain("/enc/hash%23tag.txt");
      expect(got).toContain("/enc/100%25.txt");
      expect(got).toContain(`/enc/${encodeURIComponent("日本語 ü.txt")}`);
      expect(got).toContain("/enc/dir%20one/");
      for (const h of got) {
        // Nothing that would cut the URL short or be read as a path separator stays raw.
        expect(h).not.toMatch(/[ #?]/);
        expect(h).not.toMatch(/%(?![0-9A-F]{2})/);
        const back = await propfind(h, "0");
        expect(back.status, h).toBe(207);
        expect(hrefs(back.text)).toEqual([h]);
      }
    });

    it('"?" encoded in a name reaches the drive as part of the name (refused there: 400)', async () => {
      expect((await raw(fx.url, "PUT", "/enc/what%3F.txt", { body: "x" })).status).toBe(400);
      // Unencoded, it starts the query: the file is "what".
      expect((await raw(fx.url, "PUT", "/enc/what?.txt", { body: "x" })).status).toBe(201);
      expect((await propfind("/enc/what", "0")).status).toBe(207);
    });

    it("displayname is the decoded name", async () => {
      const r = await propfind(
        `/enc/${enc("日本語 ü.txt")}`,
        "0",
        propfindBody("<D:displayname/>"),
      );
      expect(r.text).toContain("<D:displayname>日本語 ü.txt</D:displayname>");
    });
  });
});

describe("PROPPATCH", () => {
  const NS = 'xmlns:D="DAV:" xmlns:Z="urn:z"';
  const patch = (path: string, inner: string) =>
    raw(fx.url, "PROPPATCH", path, {
      body: `<?xml version="1.0"?><D:propertyupdate ${NS}>${inner}</D:propertyupdate>`,
    });
  const dead = async (path: string) =>
    (await propfind(path, "0", propfindBody('<Z:a xmlns:Z="urn:z"/>', '<Z:b xmlns:Z="urn:z"/>')))
      .text;

  beforeAll(async () => {
    expect((await put("/pp.txt", "p")).status).toBe(201);
  });

  it("sets dead properties and PROPFIND returns them (prop and allprop)", async () => {
    const r = await patch(
      "/pp.txt",
      "<D:set><D:prop><Z:a>one</Z:a><Z:b><Z:x>nested</Z:x></Z:b></D:prop></D:set>",
    );
    expect(r.status).toBe(207);
    expect(r.text).toContain("HTTP/1.1 200 OK");
    const text = await dead("/pp.txt");
    expect(text).toMatch(/<ns\d+:a xmlns:ns\d+="urn:z">one<\/ns\d+:a>/);
    expect(text).toMatch(/<Z:x xmlns:Z="urn:z">nested<\/Z:x>/);
    const all = await propfind("/pp.txt", "0", PROPFIND_ALL);
    expect(all.text).toMatch(/<ns\d+:a xmlns:ns\d+="urn:z">one<\/ns\d+:a>/);
    const names = await propfind(
      "/pp.txt",
      "0",
      `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>`,
    );
    expect(names.text).toMatch(/<ns\d+:a xmlns:ns\d+="urn:z"\/>/);
  });

  it("applies set and remove in document order", async () => {
    // set then remove → gone; remove then set → present with the new value.
    let r = await patch(
      "/pp.txt",
      "<D:set><D:prop><Z:a>temp</Z:a></D:prop></D:set><D:remove><D:prop><Z:a/></D:prop></D:remove>" +
        "<D:remove><D:prop><Z:b/></D:prop></D:remove><D:set><D:prop><Z:b>last</Z:b></D:prop></D:set>",
    );
    expect(r.status).toBe(207);
    const text = await dead("/pp.txt");
    const parts = text.split("<D:propstat>");
    const ok = parts.find((p) => p.includes("200 OK"))!;
    const missing = parts.find((p) => p.includes("404 Not Found"))!;
    expect(ok).toMatch(/>last</);
    expect(missing).toMatch(/:a xmlns/);
    r = await patch("/pp.txt", "<D:remove><D:prop><Z:b/></D:prop></D:remove>");
    expect(r.status).toBe(207);
    expect(await dead("/pp.txt")).not.toContain("last");
  });

  it("the values are stored in Cloudreve as dav: metadata", async () => {
    await patch("/pp.txt", "<D:set><D:prop><Z:a>stored</Z:a></D:prop></D:set>");
    const r = await api.call<{ metadata: Record<string, string> }>("GET", "/file/info", {
      query: { uri: myUri("/pp.txt") },
    });
    const keys = Object.keys(r.json.data!.metadata ?? {});
    expect(keys).toContain("dav:urn:z|a");
  });

  it("a protected live property → 403 for it, 424 for the rest, nothing stored", async () => {
    await patch("/pp.txt", "<D:remove><D:prop><Z:a/><Z:b/></D:prop></D:remove>");
    await fx.resetStats();
    const r = await patch(
      "/pp.txt",
      "<D:set><D:prop><Z:a>never</Z:a></D:prop></D:set>" +
        "<D:set><D:prop><D:getetag>x</D:getetag></D:prop></D:set>" +
        "<D:remove><D:prop><Z:b/></D:prop></D:remove>",
    );
    expect(r.status).toBe(207);
    const parts = r.text.split("<D:propstat>").slice(1);
    const forbidden = parts.find((p) => p.includes("403 Forbidden"))!;
    const failed = parts.find((p) => p.includes("424 Failed Dependency"))!;
    expect(forbidden).toContain("<D:getetag/>");
    expect(forbidden).toContain("cannot-modify-protected-property");
    expect(failed).toMatch(/:a xmlns/);
    expect(failed).toMatch(/:b xmlns/);
    expect((await fx.stats()).requests["PATCH /api/v4/file/metadata"]).toBeUndefined();
    expect(await dead("/pp.txt")).not.toContain("never");
  });

  it("Win32 properties are dead properties and get 200", async () => {
    const r = await raw(fx.url, "PROPPATCH", "/pp.txt", {
      body:
        `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:">` +
        `<D:set><D:prop><Z:Win32LastModifiedTime>Wed, 01 Jan 2025 00:00:00 GMT</Z:Win32LastModifiedTime>` +
        `<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>`,
    });
    expect(r.status).toBe(207);
    expect(r.text).toContain("HTTP/1.1 200 OK");
    expect(r.text).not.toMatch(/HTTP\/1.1 (403|424|409)/);
  });

  it("PROPPATCH on a missing path → 404", async () => {
    expect((await patch("/nope.txt", "<D:set><D:prop><Z:a>1</Z:a></D:prop></D:set>")).status).toBe(
      404,
    );
  });

  it("a malformed body → 400", async () => {
    expect((await patch("/pp.txt", "<D:set><D:prop>")).status).toBe(400);
  });
});

describe("upstream work", () => {
  // A gateway of its own: the seeded folder appears behind its back, so no listing of the
  // root may be cached yet.
  const fx = useGateway();
  const propfind = (path: string, depth: string, body?: string) =>
    raw(fx.url, "PROPFIND", path, { headers: { depth }, body });
  beforeAll(async () => {
    await seed(fx.emu.url, { uri: "cloudreve://my/many", files: 300, folders: 5, size: 100_000 });
  });

  it("a Depth 1 allprop of 305 entries is one listing call; repeats and members are cached", async () => {
    await fx.resetStats();
    const r = await propfind("/many/", "1", PROPFIND_ALL);
    expect(r.status).toBe(207);
    expect(hrefs(r.text)).toHaveLength(306);
    const { requests } = await fx.stats();
    expect(requests["GET /api/v4/file"]).toBe(1);
    // Besides the listing: at most a stat of the folder (and the gateway's first login).
    const others = Object.keys(requests).filter(
      (k) => k !== "GET /api/v4/file" && k !== "POST /api/v4/session/token",
    );
    expect(others.every((k) => k === "GET /api/v4/file/info")).toBe(true);
    expect(requests["GET /api/v4/file/info"] ?? 0).toBeLessThanOrEqual(1);

    await fx.resetStats();
    expect((await propfind("/many/", "1", PROPFIND_ALL)).status).toBe(207);
    expect((await propfind("/many/file-00042.bin", "0")).status).toBe(207);
    // Finder's probe names inside a listed folder are answered from the listing.
    expect((await propfind("/many/._file-00042.bin", "0")).status).toBe(404);
    expect(totalCalls(await fx.stats())).toBe(0);
  });

  it("a range GET fetches only the range from the upstream", async () => {
    await fx.resetStats();
    const r = await raw(fx.url, "GET", "/many/file-00001.bin", {
      headers: { range: "bytes=50000-50009" },
    });
    expect(r.status).toBe(206);
    expect([...r.body]).toEqual([...Array(10).keys()].map((i) => (50000 + i) % 251));
    const stats = await fx.stats();
    expect(stats.requests["GET /api/v4/file/content/:id/:speed/:name"]).toBe(1);
    expect(stats.bytesOut).toBeLessThan(2000);
  });
});
