import { SaxesParser } from "saxes";
import { describe, expect, it } from "vitest";
import type { Entry } from "../../src/drive/types.js";
import {
  LIVE_PROPS,
  contentTypeOf,
  findLiveProp,
  hrefOf,
  livePropsFor,
  renderLiveProp,
  rfc3339,
  type PropContext,
} from "../../src/dav/props.js";
import { httpDate } from "../../src/dav/headers.js";
import { MultistatusWriter } from "../../src/dav/xml.js";

const T = Date.UTC(2026, 0, 1, 10, 0, 0);

const file: Entry = {
  path: "/docs/a <b> & c.txt",
  name: "a <b> & c.txt",
  isDir: false,
  size: 1234,
  etag: "v42",
  mtimeMs: T,
  ctimeMs: T - 86_400_000 + 123,
  uploading: false,
};

const folder: Entry = { ...file, path: "/docs", name: "docs", isDir: true, size: 0, etag: "d7" };

function ctx(entry: Entry, extra: Partial<PropContext> = {}): PropContext {
  return { entry, contentType: contentTypeOf, ...extra };
}

function render(name: string, c: PropContext): string | undefined {
  const row = findLiveProp({ ns: "DAV:", name });
  if (row === undefined) throw new Error(`no row ${name}`);
  return renderLiveProp(row, c);
}

describe("live property formats", () => {
  it("renders a file's properties exactly", () => {
    const c = ctx(file);
    expect(render("resourcetype", c)).toBe("");
    expect(render("displayname", c)).toBe("a &lt;b&gt; &amp; c.txt");
    expect(render("getcontentlength", c)).toBe("1234");
    expect(render("getcontenttype", c)).toBe("text/plain");
    expect(render("getetag", c)).toBe('"v42"');
    expect(render("getlastmodified", c)).toBe("Thu, 01 Jan 2026 10:00:00 GMT");
    expect(render("creationdate", c)).toBe("2025-12-31T10:00:00Z");
  });

  it("renders a folder's properties", () => {
    const c = ctx(folder);
    expect(render("resourcetype", c)).toBe("<D:collection/>");
    expect(render("getcontentlength", c)).toBeUndefined();
    expect(render("getcontenttype", c)).toBeUndefined();
    expect(render("getetag", c)).toBe('"d7"');
    expect(render("getlastmodified", c)).toBe("Thu, 01 Jan 2026 10:00:00 GMT");
  });

  it("formats dates as RFC 1123 and RFC 3339 in UTC", () => {
    expect(httpDate(Date.UTC(2026, 2, 5, 4, 3, 2))).toBe("Thu, 05 Mar 2026 04:03:02 GMT");
    expect(rfc3339(Date.UTC(2026, 2, 5, 4, 3, 2, 999))).toBe("2026-03-05T04:03:02Z");
    expect(httpDate(Number.NaN)).toBeUndefined();
    expect(rfc3339(Number.NaN)).toBeUndefined();
  });

  it("uses the context's content type function", () => {
    expect(render("getcontenttype", ctx(file, { contentType: () => "x/&y" }))).toBe("x/&amp;y");
  });

  it("renders quota only for folders and only when given", () => {
    const quota = { used: 500, available: -3 };
    expect(render("quota-used-bytes", ctx(folder, { quota }))).toBe("500");
    expect(render("quota-available-bytes", ctx(folder, { quota }))).toBe("0");
    expect(render("quota-used-bytes", ctx(folder))).toBeUndefined();
    expect(render("quota-used-bytes", ctx(file, { quota }))).toBeUndefined();
  });

  it("renders oc:checksums as rclone reads it, only for a file whose checksums are known", () => {
    const row = findLiveProp({ ns: "http://owncloud.org/ns", name: "checksums" })!;
    const checksums = { sha1: "a".repeat(40), md5: "b".repeat(32) };
    expect(renderLiveProp(row, ctx({ ...file, checksums }))).toBe(
      `<checksum xmlns="http://owncloud.org/ns">SHA1:${checksums.sha1} MD5:${checksums.md5}</checksum>`,
    );
    expect(renderLiveProp(row, ctx(file))).toBeUndefined();
    expect(renderLiveProp(row, ctx({ ...folder, checksums }))).toBeUndefined();
    expect(row.allprop).toBe(false);
  });

  it("never has getcontentlanguage", () => {
    expect(render("getcontentlanguage", ctx(file))).toBeUndefined();
    expect(render("getcontentlanguage", ctx(folder))).toBeUndefined();
    expect(findLiveProp({ ns: "DAV:", name: "getcontentlanguage" })?.protected).toBe(true);
  });

  it("renders supportedlock and lockdiscovery with lock roots as hrefs", () => {
    expect(render("supportedlock", ctx(file))).toContain("<D:shared/>");
    expect(render("lockdiscovery", ctx(file))).toBe("");
    const locks = [
      {
        token: "urn:uuid:1",
        root: "/docs",
        scope: "shared" as const,
        depth: "infinity" as const,
        ownerXml: "me",
        expiresAt: Date.now() + 60_000,
      },
      {
        token: "urn:uuid:2",
        root: file.path,
        scope: "shared" as const,
        depth: 0 as const,
        ownerXml: "",
        expiresAt: Infinity,
      },
    ];
    const xml = render("lockdiscovery", ctx(file, { locks })) ?? "";
    expect(xml).toContain("<D:lockroot><D:href>/docs/</D:href></D:lockroot>");
    expect(xml).toContain(
      "<D:lockroot><D:href>/docs/a%20%3Cb%3E%20&amp;%20c.txt</D:href></D:lockroot>",
    );
    expect(xml).toContain("<D:timeout>Second-60</D:timeout>");
    expect(xml).toContain("<D:timeout>Infinite</D:timeout>");
  });
});

describe("the table", () => {
  it("has the DAV: live properties and ownCloud's checksums, all protected", () => {
    expect(LIVE_PROPS.map((r) => `${r.ns ?? "DAV:"} ${r.name}`).sort()).toEqual(
      [
        "http://owncloud.org/ns checksums",
        "creationdate",
        "displayname",
        "getcontentlanguage",
        "getcontentlength",
        "getcontenttype",
        "getetag",
        "getlastmodified",
        "lockdiscovery",
        "quota-available-bytes",
        "quota-used-bytes",
        "resourcetype",
        "supportedlock",
      ]
        .map((name) => (name.includes(" ") ? name : `DAV: ${name}`))
        .sort(),
    );
    expect(LIVE_PROPS.every((r) => r.protected)).toBe(true);
  });

  it("finds rows by namespace and name", () => {
    expect(findLiveProp({ ns: "DAV:", name: "getetag" })?.name).toBe("getetag");
    expect(findLiveProp({ ns: "urn:x", name: "getetag" })).toBeUndefined();
    expect(findLiveProp({ ns: "DAV:", name: "lastmodified" })).toBeUndefined();
    expect(findLiveProp({ ns: "http://owncloud.org/ns", name: "checksums" })?.name).toBe(
      "checksums",
    );
    expect(findLiveProp({ ns: "DAV:", name: "checksums" })).toBeUndefined();
  });

  it("keeps quota out of allprop (RFC 4331) but in propname", () => {
    const allprop = livePropsFor(folder, "allprop").map((r) => r.name);
    expect(allprop).not.toContain("quota-used-bytes");
    expect(allprop).toContain("resourcetype");
    expect(livePropsFor(folder, "propname").map((r) => r.name)).toContain("quota-used-bytes");
    expect(livePropsFor(file, "propname").map((r) => r.name)).not.toContain("quota-used-bytes");
    expect(livePropsFor(folder, "allprop").map((r) => r.name)).not.toContain("getcontentlength");
    expect(livePropsFor(file, "allprop").map((r) => r.name)).toContain("getcontentlength");
  });

  it("renders a well-formed multistatus for a hostile file name", () => {
    const weird: Entry = { ...file, path: "/x/<&>\"'\u0001 é#?%", name: "<&>\"'\u0001 é#?%" };
    const c = ctx(weird, { quota: { used: 1, available: 2 } });
    const props = livePropsFor(weird, "allprop").map((row) => ({
      ns: "DAV:",
      name: row.name,
      innerXml: renderLiveProp(row, c) ?? "",
    }));
    const body = new MultistatusWriter()
      .propstats(hrefOf(weird.path, false), [{ status: 200, props }])
      .end();
    const texts: string[] = [];
    const parser = new SaxesParser({ xmlns: true });
    parser.on("text", (t) => texts.push(t));
    parser.write(body).close();
    expect(texts).toContain("/x/%3C&%3E%22'%01%20%C3%A9%23%3F%25");
    expect(texts).toContain("<&>\"'\uFFFD é#?%");
  });
});

describe("contentTypeOf", () => {
  it("maps extensions and falls back to octet-stream", () => {
    expect(contentTypeOf("movie.MP4")).toBe("video/mp4");
    expect(contentTypeOf("a.b.json")).toBe("application/json");
    expect(contentTypeOf("photo.jpeg")).toBe("image/jpeg");
    expect(contentTypeOf("README")).toBe("application/octet-stream");
    expect(contentTypeOf("js")).toBe("application/octet-stream");
    expect(contentTypeOf(".txt")).toBe("application/octet-stream");
    expect(contentTypeOf("file.unknownext")).toBe("application/octet-stream");
    expect(contentTypeOf("trailing.")).toBe("application/octet-stream");
  });
});

describe("hrefOf", () => {
  it("encodes what a path segment cannot carry", () => {
    expect(hrefOf("/a b/c#d?e%f", false)).toBe("/a%20b/c%23d%3Fe%25f");
    expect(hrefOf("/日本/ü.txt", false)).toBe("/%E6%97%A5%E6%9C%AC/%C3%BC.txt");
    expect(hrefOf("/😀", false)).toBe("/%F0%9F%98%80");
    expect(hrefOf('/<a>"b"\\c', false)).toBe("/%3Ca%3E%22b%22%5Cc");
  });

  it("keeps unreserved characters and sub-delims", () => {
    expect(hrefOf("/a+b&c=d;e,f$g!h'i(j)k*l:m@n~o-p_q.r", false)).toBe(
      "/a+b&c=d;e,f$g!h'i(j)k*l:m@n~o-p_q.r",
    );
  });

  it("puts a trailing slash on collections only", () => {
    expect(hrefOf("/", true)).toBe("/");
    expect(hrefOf("/", false)).toBe("/");
    expect(hrefOf("/a/b", true)).toBe("/a/b/");
    expect(hrefOf("/a/b", false)).toBe("/a/b");
  });

  it("survives lone surrogates", () => {
    expect(hrefOf("/a\uD800b", false)).toBe("/a%EF%BF%BDb");
  });

  it("decodes back to the same path", () => {
    const path = "/a b/+&=/日本#?%/x";
    const decoded = hrefOf(path, false)
      .split("/")
      .map((s) => decodeURIComponent(s))
      .join("/");
    expect(decoded).toBe(path);
  });

  it("leaves alone exactly the ASCII characters a path segment may carry as they are", () => {
    const kept = new Set("!$&'()*+,-.:;=@_~");
    for (let code = 0x20; code < 0x7f; code++) {
      const ch = String.fromCharCode(code);
      if (ch === "/") continue; // the separator, not part of a segment
      const plain = /[A-Za-z0-9]/.test(ch) || kept.has(ch);
      const expected = plain ? ch : `%${code.toString(16).toUpperCase().padStart(2, "0")}`;
      expect(hrefOf(`/a${ch}b`, false)).toBe(`/a${expected}b`);
    }
  });
});
