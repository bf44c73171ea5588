/**
 * Modification times that survive (issue: rclone's nextcloud/owncloud vendors, Windows):
 * X-OC-Mtime on PUT, PROPPATCH DAV:lastmodified and Win32LastModifiedTime after the upload,
 * kept across MOVE although Cloudreve bumps updated_at on every move.
 */
import { describe, expect, it } from "vitest";
import { useGateway } from "../helpers/gateway.js";
import { raw } from "../helpers/http-raw.js";

const fx = useGateway();

async function lastModified(path: string): Promise<number> {
  const r = await raw(fx.url, "PROPFIND", path, {
    headers: { depth: "0", "content-type": "application/xml" },
    body: '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getlastmodified/></d:prop></d:propfind>',
  });
  expect(r.status, r.text).toBe(207);
  const m = /<D:getlastmodified>([^<]+)<\/D:getlastmodified>/.exec(r.text);
  expect(m, r.text).not.toBeNull();
  return Date.parse(m![1]!);
}

const proppatch = (body: string) =>
  `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:z="urn:schemas-microsoft-com:"><d:set><d:prop>${body}</d:prop></d:set></d:propertyupdate>`;

describe("modification times", () => {
  it("X-OC-Mtime on PUT becomes getlastmodified, to the second", async () => {
    const r = await raw(fx.url, "PUT", "/oc.txt", {
      body: "x",
      headers: { "x-oc-mtime": "1500000000.75" },
    });
    expect(r.status).toBe(201);
    expect(r.headers["x-oc-mtime"]).toBe("accepted");
    expect(await lastModified("/oc.txt")).toBe(1_500_000_000_000);
  });

  it("PROPPATCH DAV:lastmodified (rclone's SetModTime) sets it and a MOVE keeps it", async () => {
    expect((await raw(fx.url, "PUT", "/rc.txt", { body: "abc" })).status).toBe(201);
    const r = await raw(fx.url, "PROPPATCH", "/rc.txt", {
      headers: { "content-type": "application/xml" },
      body: proppatch("<d:lastmodified>1400000000</d:lastmodified>"),
    });
    expect(r.status).toBe(207);
    expect(r.text).toContain("HTTP/1.1 200 OK");
    expect(await lastModified("/rc.txt")).toBe(1_400_000_000_000);
    const moved = await raw(fx.url, "MOVE", "/rc.txt", {
      headers: { destination: `${fx.url}/rc-moved.txt` },
    });
    expect(moved.status).toBe(201);
    expect(await lastModified("/rc-moved.txt")).toBe(1_400_000_000_000);
  });

  it("Win32LastModifiedTime (Windows Explorer) sets it and stays a dead property", async () => {
    expect((await raw(fx.url, "PUT", "/win.txt", { body: "w" })).status).toBe(201);
    const when = "Wed, 02 Jan 2019 03:04:05 GMT";
    const r = await raw(fx.url, "PROPPATCH", "/win.txt", {
      headers: { "content-type": "application/xml" },
      body: proppatch(`<z:Win32LastModifiedTime>${when}</z:Win32LastModifiedTime>`),
    });
    expect(r.status).toBe(207);
    expect(await lastModified("/win.txt")).toBe(Date.parse(when));
    const props = await raw(fx.url, "PROPFIND", "/win.txt", { headers: { depth: "0" } });
    expect(props.text).toContain(when);
  });

  it("new content without a time gets Cloudreve's time again, not the stale one", async () => {
    expect((await raw(fx.url, "PUT", "/fresh.txt", { body: "1" })).status).toBe(201);
    await raw(fx.url, "PROPPATCH", "/fresh.txt", {
      headers: { "content-type": "application/xml" },
      body: proppatch("<d:lastmodified>1000000000</d:lastmodified>"),
    });
    expect(await lastModified("/fresh.txt")).toBe(1_000_000_000_000);
    expect((await raw(fx.url, "PUT", "/fresh.txt", { body: "22" })).status).toBe(204);
    expect(await lastModified("/fresh.txt")).toBeGreaterThan(1_000_000_000_000);
  });
});
