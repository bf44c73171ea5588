/**
 * ownCloud's oc:checksums (issue 14): SHA-1 and MD5 of what the gateway uploads, stored with
 * the version they belong to, served by name (rclone asks so) and never for another version.
 * The cache is off, so every answer comes from what is stored upstream.
 */
import { describe, expect, it } from "vitest";
import {
  checksumsIn,
  checksumsOf,
  RCLONE_PROPFIND,
  servedChecksums,
} from "../helpers/checksums.js";
import { R } from "../helpers/control.js";
import { Api, myUri, put, upstreamInfo } from "../helpers/emulator.js";
import { content } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";
import { PROPFIND_ALL, raw } from "../helpers/http-raw.js";

const DIRECT_MAX = 16 * 1024;
const CHUNK = 64 * 1024;
const PATCH = "PATCH /api/v4/file/metadata";
const OWN_KEY = "dav:urn:cloudreve-dav:|checksums";
const XML = { "content-type": "application/xml" };

const fx = useGateway(
  { chunkSize: CHUNK },
  { cacheTtlSeconds: 0, directUploadMaxBytes: DIRECT_MAX },
);
let api: Api;
const served = (path: string) => servedChecksums(fx.url, path);

async function putThrough(path: string, body: Buffer | string, headers = {}): Promise<number> {
  return (await raw(fx.url, "PUT", path, { body, headers })).status;
}

/** Upstream calls of one request, by route. */
async function callsOf(request: () => Promise<unknown>): Promise<Record<string, number>> {
  await fx.resetStats();
  await request();
  const { requests } = await fx.stats();
  delete requests["GET /api/v4/file/events"];
  return requests;
}

describe("oc:checksums of what the gateway writes", () => {
  it("a small file sent in one call: the checksums go in the metadata call of its time", async () => {
    api = new Api(fx.emu.url);
    await api.login();
    const body = content(DIRECT_MAX - 1, 1);
    const calls = await callsOf(async () =>
      expect(await putThrough("/small.bin", body, { "x-oc-mtime": "1500000000" })).toBe(201),
    );
    expect(calls[R.putContent]).toBe(1);
    expect(calls[PATCH]).toBe(1);
    expect(await served("/small.bin")).toBe(checksumsOf(body));
  });

  it("a small file without a time costs one metadata call for them", async () => {
    const body = content(100, 2);
    const calls = await callsOf(async () => expect(await putThrough("/plain.bin", body)).toBe(201));
    expect(calls[R.putContent]).toBe(1);
    expect(calls[PATCH]).toBe(1);
    expect(await served("/plain.bin")).toBe(checksumsOf(body));
  });

  it("a file sent by upload session, part by part: one metadata call after it", async () => {
    const body = content(3 * CHUNK + 5, 3);
    const calls = await callsOf(async () =>
      expect(await putThrough("/session.bin", body, { "x-oc-mtime": "1500000000" })).toBe(201),
    );
    expect(calls[R.createSession]).toBe(1);
    expect(calls[R.chunk]).toBe(4);
    expect(calls[PATCH]).toBe(1);
    expect(await served("/session.bin")).toBe(checksumsOf(body));
  });

  it("a body of unknown length, spooled first, gets them too", async () => {
    const body = content(2 * CHUNK, 4);
    const r = await raw(fx.url, "PUT", "/spooled.bin", { body, chunked: true });
    expect(r.status).toBe(201);
    expect(await served("/spooled.bin")).toBe(checksumsOf(body));
  });

  it("an empty file has the checksums of no bytes, which need no call", async () => {
    const calls = await callsOf(async () => expect(await putThrough("/empty.bin", "")).toBe(201));
    expect(calls[PATCH] ?? 0).toBe(0);
    expect(await served("/empty.bin")).toBe(checksumsOf(""));
  });

  it("an overwrite through the gateway replaces them", async () => {
    const next = content(3 * CHUNK + 5, 5);
    expect(await putThrough("/session.bin", next)).toBe(204);
    expect(await served("/session.bin")).toBe(checksumsOf(next));
    const small = content(10, 6);
    expect(await putThrough("/session.bin", small)).toBe(204);
    expect(await served("/session.bin")).toBe(checksumsOf(small));
  });

  it("MOVE and COPY keep them, for both the copy and the original", async () => {
    const body = content(CHUNK + 1, 7);
    expect(await putThrough("/orig.bin", body)).toBe(201);
    const dest = (to: string) => ({ destination: `${fx.url}${to}` });
    expect((await raw(fx.url, "MOVE", "/orig.bin", { headers: dest("/moved.bin") })).status).toBe(
      201,
    );
    expect(await served("/moved.bin")).toBe(checksumsOf(body));
    expect((await raw(fx.url, "MKCOL", "/sub")).status).toBe(201);
    expect(
      (await raw(fx.url, "COPY", "/moved.bin", { headers: dest("/sub/copy.bin") })).status,
    ).toBe(201);
    expect(await served("/sub/copy.bin")).toBe(checksumsOf(body));
    expect(await served("/moved.bin")).toBe(checksumsOf(body));
    // A folder copied whole carries its files' checksums along.
    expect((await raw(fx.url, "COPY", "/sub", { headers: dest("/sub2") })).status).toBe(201);
    expect(await served("/sub2/copy.bin")).toBe(checksumsOf(body));
  });

  it("Depth 1 serves every member's checksums from the listing, with no call per member", async () => {
    const bodies = [content(5, 8), content(DIRECT_MAX + 1, 9), content(0, 10)];
    expect((await raw(fx.url, "MKCOL", "/many")).status).toBe(201);
    for (const [i, b] of bodies.entries()) expect(await putThrough(`/many/f${i}`, b)).toBe(201);
    let text = "";
    const calls = await callsOf(async () => {
      const r = await raw(fx.url, "PROPFIND", "/many/", {
        headers: { depth: "1", ...XML },
        body: RCLONE_PROPFIND,
      });
      expect(r.status).toBe(207);
      text = r.text;
    });
    expect(calls[R.list]).toBe(1);
    expect(calls[R.info] ?? 0).toBeLessThanOrEqual(1);
    const sums = checksumsIn(text);
    expect(sums.get("/many/")).toBeUndefined();
    for (const [i, b] of bodies.entries()) expect(sums.get(`/many/f${i}`)).toBe(checksumsOf(b));
  });
});

describe("oc:checksums are never those of another version", () => {
  it("a file written by another client has none", async () => {
    await put(api, "theirs.bin", content(300, 11));
    expect(await served("/theirs.bin")).toBeUndefined();
  });

  it("a file overwritten by another client loses them, though the record stays upstream", async () => {
    const mine = content(300, 12);
    expect(await putThrough("/shared.bin", mine)).toBe(201);
    expect(await served("/shared.bin")).toBe(checksumsOf(mine));
    // Another client writes other bytes of the same length: a new version.
    await put(api, "shared.bin", content(300, 13));
    expect(await served("/shared.bin")).toBeUndefined();
    const info = await upstreamInfo(api, "shared.bin");
    expect(info?.metadata?.[OWN_KEY]).toBeDefined();
    // Written through the gateway again, they are back, for the new version.
    const again = content(300, 14);
    expect(await putThrough("/shared.bin", again)).toBe(204);
    expect(await served("/shared.bin")).toBe(checksumsOf(again));
  });

  it("a PROPPATCH cannot set them, and a stored oc:checksums dead property is never shown", async () => {
    const body = content(50, 15);
    expect(await putThrough("/planted.bin", body)).toBe(201);
    const r = await raw(fx.url, "PROPPATCH", "/planted.bin", {
      headers: XML,
      body:
        `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">` +
        `<d:set><d:prop><oc:checksums><oc:checksum>SHA1:0 MD5:0</oc:checksum></oc:checksums>` +
        `</d:prop></d:set></d:propertyupdate>`,
    });
    expect(r.status).toBe(207);
    expect(r.text).toContain("cannot-modify-protected-property");
    // As Cloudreve's own WebDAV server would store it for a PROPPATCH.
    const stale = `<oc:checksum xmlns:oc="http://owncloud.org/ns">SHA1:0 MD5:0</oc:checksum>`;
    const patched = await api.call("PATCH", "/file/metadata", {
      json: {
        uris: [myUri("planted.bin"), myUri("theirs.bin")],
        patches: [
          {
            key: "dav:http://owncloud.org/ns|checksums",
            value: JSON.stringify({ l: "", i: Buffer.from(stale).toString("base64") }),
          },
        ],
      },
    });
    expect(patched.json.code, patched.text).toBe(0);
    expect(await served("/planted.bin")).toBe(checksumsOf(body));
    expect(await served("/theirs.bin")).toBeUndefined();
    for (const path of ["/planted.bin", "/theirs.bin"]) {
      const all = await raw(fx.url, "PROPFIND", path, {
        headers: { depth: "0", ...XML },
        body: PROPFIND_ALL,
      });
      expect(all.text).not.toContain("SHA1:0");
      const names = await raw(fx.url, "PROPFIND", path, {
        headers: { depth: "0", ...XML },
        body: `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>`,
      });
      expect(names.text.match(/checksums/g)).toHaveLength(1);
    }
  });
});

describe("oc:checksums in PROPFIND", () => {
  it("by name as rclone asks; allprop leaves them out, include brings them, propname names them", async () => {
    const body = content(40, 16);
    expect(await putThrough("/named.bin", body)).toBe(201);
    const propfind = async (xml: string) => {
      const r = await raw(fx.url, "PROPFIND", "/named.bin", {
        headers: { depth: "0", ...XML },
        body: xml,
      });
      expect(r.status).toBe(207);
      return r.text;
    };
    expect(checksumsIn(await propfind(RCLONE_PROPFIND)).get("/named.bin")).toBe(checksumsOf(body));
    const all = await propfind(PROPFIND_ALL);
    expect(all).toContain("getcontentlength");
    expect(all).not.toContain("checksum");
    const included = await propfind(
      `<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns">` +
        `<D:allprop/><D:include><oc:checksums/></D:include></D:propfind>`,
    );
    expect(checksumsIn(included).get("/named.bin")).toBe(checksumsOf(body));
    const names = await propfind(
      `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>`,
    );
    expect(names).toMatch(/<(\w+):checksums xmlns:\1="http:\/\/owncloud\.org\/ns"\/>/);
  });

  it("a folder has none: 404 for it by name", async () => {
    const r = await raw(fx.url, "PROPFIND", "/many/", {
      headers: { depth: "0", ...XML },
      body: RCLONE_PROPFIND,
    });
    expect(r.status).toBe(207);
    expect(r.text).toMatch(/checksums[^>]*\/><\/D:prop><D:status>HTTP\/1\.1 404/);
  });
});
