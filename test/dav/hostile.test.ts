/**
 * Hostile input: XML attacks, path tricks, foreign destinations, broken encodings and oversized
 * bodies get a 4xx (or 502 for a foreign Destination) and never reach the upstream as a
 * malformed call.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { useGateway } from "../helpers/gateway.js";
import { LOCK_EXCLUSIVE, raw, totalCalls } from "../helpers/http-raw.js";

const fx = useGateway();
beforeAll(async () => {
  expect((await raw(fx.url, "MKCOL", "/h")).status).toBe(201);
  expect((await raw(fx.url, "PUT", "/h/f.txt", { body: "safe" })).status).toBe(201);
});

/** Upstream routes that only read. */
const READS = new Set(["GET /api/v4/file/info", "GET /api/v4/file", "GET /api/v4/user/capacity"]);

async function upstreamWrites(): Promise<string[]> {
  const { requests } = await fx.stats();
  return Object.keys(requests).filter((k) => !READS.has(k));
}

describe("XML bodies", () => {
  const DTD = `<?xml version="1.0"?><!DOCTYPE D:propfind [<!ELEMENT D:propfind ANY>]><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`;
  const XXE = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&xxe;</D:displayname></D:prop></D:propfind>`;
  const LAUGHS =
    `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">` +
    `<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
    `<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>` +
    `<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&lol3;</D:displayname></D:prop></D:propfind>`;
  const UNDECLARED = `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&foo;</D:displayname></D:prop></D:propfind>`;
  const PARAM_ENTITY = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % ext SYSTEM "http://127.0.0.1:1/x.dtd"> %ext;]><D:lockinfo xmlns:D="DAV:"/>`;

  const asPatch = (doc: string) =>
    doc
      .replace(/D:propfind/g, "D:propertyupdate")
      .replace("<D:prop>", "<D:set><D:prop>")
      .replace("</D:prop>", "</D:prop></D:set>")
      .replace("<D:allprop/>", "<D:set><D:prop><x xmlns='urn:x'>1</x></D:prop></D:set>");
  const asLock = (doc: string) =>
    doc
      .replace(/D:propfind/g, "D:lockinfo")
      .replace(
        /<D:prop>.*<\/D:prop>|<D:allprop\/>/,
        "<D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>&xxe;&lol3;&foo;</D:owner>",
      );

  const cases: [string, string][] = [
    ["a DTD", DTD],
    ["an external entity", XXE],
    ["entity expansion", LAUGHS],
    ["an undeclared entity", UNDECLARED],
    ["a parameter entity", PARAM_ENTITY],
  ];

  it.each(cases)("PROPFIND with %s → 400, no upstream call", async (_what, doc) => {
    await fx.resetStats();
    const r = await raw(fx.url, "PROPFIND", "/h/f.txt", { headers: { depth: "0" }, body: doc });
    expect(r.status).toBe(400);
    expect(r.text).not.toContain("root:");
    expect(totalCalls(await fx.stats())).toBe(0);
  });

  it.each(cases)("PROPPATCH with %s → 400, no upstream call", async (_what, doc) => {
    await fx.resetStats();
    const r = await raw(fx.url, "PROPPATCH", "/h/f.txt", { body: asPatch(doc) });
    expect(r.status).toBe(400);
    expect(totalCalls(await fx.stats())).toBe(0);
  });

  it.each(cases)("LOCK with %s → 400, no upstream call, no lock", async (_what, doc) => {
    await fx.resetStats();
    const r = await raw(fx.url, "LOCK", "/h/new-by-lock.txt", { body: asLock(doc) });
    expect(r.status).toBe(400);
    expect(r.headers["lock-token"]).toBeUndefined();
    expect(totalCalls(await fx.stats())).toBe(0);
  });

  it("an oversized XML body → 413, no upstream call", async () => {
    await fx.resetStats();
    const filler = `<x xmlns="urn:x">${"a".repeat(2 * 1024 * 1024)}</x>`;
    const body = `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>${filler}</D:prop></D:set></D:propertyupdate>`;
    const r = await raw(fx.url, "PROPPATCH", "/h/f.txt", { body });
    expect(r.status).toBe(413);
    const pf = await raw(fx.url, "PROPFIND", "/h/f.txt", {
      headers: { depth: "0" },
      body: body.replace(/propertyupdate/g, "propfind"),
    });
    expect(pf.status).toBe(413);
    expect(totalCalls(await fx.stats())).toBe(0);
  });

  it("deeply nested XML → 400", async () => {
    const body = `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="urn:x">${"<a>".repeat(500)}${"</a>".repeat(500)}</x></D:prop></D:set></D:propertyupdate>`;
    await fx.resetStats();
    expect((await raw(fx.url, "PROPPATCH", "/h/f.txt", { body })).status).toBe(400);
    expect(totalCalls(await fx.stats())).toBe(0);
  });

  it("not XML at all → 400", async () => {
    const r = await raw(fx.url, "PROPFIND", "/h/f.txt", {
      headers: { depth: "0" },
      body: '{"json": true}',
    });
    expect(r.status).toBe(400);
  });
});

describe("paths", () => {
  const methods: [string, Record<string, string>, string | undefined][] = [
    ["GET", {}, undefined],
    ["PROPFIND", { depth: "0" }, undefined],
    ["PUT", {}, "evil"],
    ["MKCOL", {}, undefined],
    ["DELETE", {}, undefined],
    ["LOCK", {}, LOCK_EXCLUSIVE],
    ["MOVE", { destination: "/h/moved" }, undefined],
  ];
  const paths: [string, string][] = [
    ["an encoded ../", "/h/%2e%2e%2fescape"],
    ["an encoded .. segment", "/h/%2e%2e/f.txt"],
    ["an encoded . segment", "/h/%2e/f.txt"],
    ["uppercase %2E%2E%2F", "/h/%2E%2E%2Fescape"],
    ["an encoded slash", "/h/a%2fb"],
    ["NUL", "/h/f%00.txt"],
    ["a backslash", "/h/%5c..%5cescape"],
    ["a segment over 255 bytes", `/h/${"n".repeat(256)}`],
    ["a 255-byte segment of 3-byte characters", `/h/${"%E6%97%A5".repeat(86)}`],
    ["malformed percent-encoding", "/h/%zz"],
    ["a truncated UTF-8 sequence", "/h/%E6%97"],
    ["a lone percent", "/h/100%"],
  ];

  for (const [what, path] of paths) {
    it.each(methods)(`%s with ${what} → 400, no upstream call`, async (method, headers, body) => {
      await fx.resetStats();
      const r = await raw(fx.url, method, path, { headers, body });
      expect(r.status).toBe(400);
      expect(totalCalls(await fx.stats())).toBe(0);
    });
  }

  it("a 255-byte segment is still allowed", async () => {
    const name = "n".repeat(255);
    expect((await raw(fx.url, "PUT", `/h/${name}`, { body: "x" })).status).toBe(201);
  });

  it("the same tricks in Destination → 400, no upstream call", async () => {
    for (const [, path] of paths) {
      await fx.resetStats();
      for (const method of ["COPY", "MOVE"]) {
        const r = await raw(fx.url, method, "/h/f.txt", { headers: { destination: path } });
        expect(r.status, `${method} → ${path}`).toBe(400);
        const abs = await raw(fx.url, method, "/h/f.txt", {
          headers: { destination: `${fx.url}${path}` },
        });
        expect(abs.status, `${method} → ${fx.url}${path}`).toBe(400);
      }
      expect(totalCalls(await fx.stats()), path).toBe(0);
    }
    expect((await raw(fx.url, "GET", "/h/f.txt")).text).toBe("safe");
  });

  it("a Destination on another host → 502, no upstream call", async () => {
    await fx.resetStats();
    for (const dest of [
      "http://evil.example/h/x",
      "https://127.0.0.1:1/h/x",
      `${fx.url.replace("127.0.0.1", "localhost")}/h/x`,
    ]) {
      const r = await raw(fx.url, "MOVE", "/h/f.txt", { headers: { destination: dest } });
      expect(r.status, dest).toBe(502);
    }
    expect(totalCalls(await fx.stats())).toBe(0);
    expect((await raw(fx.url, "GET", "/h/f.txt")).text).toBe("safe");
  });

  it("a Destination that is not a URL → 400", async () => {
    const r = await raw(fx.url, "COPY", "/h/f.txt", { headers: { destination: "::not a url" } });
    expect(r.status).toBe(400);
  });

  it("forbidden names → 400 and no upstream write", async () => {
    for (const [method, path, headers, body] of [
      ["PUT", "/h/a%3Ab.txt", {}, "x"],
      ["PUT", "/h/star%2A.txt", {}, "x"],
      ["MKCOL", "/h/q%3Fdir", {}, undefined],
      ["LOCK", "/h/a%7Cb.txt", {}, LOCK_EXCLUSIVE],
      ["MOVE", "/h/f.txt", { destination: "/h/a%3Ab.txt" }, undefined],
      ["COPY", "/h/f.txt", { destination: "/h/a%3Cb%3E.txt" }, undefined],
    ] as const) {
      await fx.resetStats();
      const r = await raw(fx.url, method, path, { headers, body });
      expect(r.status, `${method} ${path}`).toBe(400);
      expect(await upstreamWrites(), `${method} ${path}`).toEqual([]);
    }
    expect((await raw(fx.url, "GET", "/h/f.txt")).text).toBe("safe");
  });

  it("a method the gateway does not serve → 405 with Allow", async () => {
    const r = await raw(fx.url, "REPORT", "/h/f.txt");
    expect(r.status).toBe(405);
    expect(r.headers["allow"]).toContain("PROPFIND");
  });
});
