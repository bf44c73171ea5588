import { describe, expect, it } from "vitest";
import { tree, type Tree } from "../helpers/xml-tree.js";
import {
  MultistatusWriter,
  XmlRejected,
  errorBodyXml,
  escapeAttr,
  escapeXml,
  lockDiscoveryXml,
  lockResponseXml,
  parseLockinfo,
  parsePropfind,
  parseProppatch,
  statusLine,
  supportedLockXml,
  type ProppatchOp,
} from "../../src/dav/xml.js";

/** A fragment (inner XML) as a tree, wrapped in a root that declares nothing. */
const fragment = (xml: string) => tree(`<root>${xml}</root>`).children;

const D = 'xmlns:D="DAV:"';

describe("parsePropfind", () => {
  it("treats an empty or blank body as allprop", () => {
    expect(parsePropfind("")).toEqual({ kind: "allprop" });
    expect(parsePropfind("  \r\n ")).toEqual({ kind: "allprop" });
  });

  it("reads allprop, propname and allprop with include", () => {
    const decl = '<?xml version="1.0" encoding="utf-8" ?>';
    expect(parsePropfind(`${decl}<D:propfind ${D}><D:allprop/></D:propfind>`)).toEqual({
      kind: "allprop",
    });
    expect(parsePropfind(`<propfind xmlns="DAV:"><propname/></propfind>`)).toEqual({
      kind: "propname",
    });
    const include = `<D:propfind ${D}><D:allprop/><D:include><D:quota-used-bytes/><x:y xmlns:x="urn:x"/></D:include></D:propfind>`;
    expect(parsePropfind(include)).toEqual({
      kind: "allprop",
      include: [
        { ns: "DAV:", name: "quota-used-bytes" },
        { ns: "urn:x", name: "y" },
      ],
    });
  });

  it("reads a prop list across several namespaces, including none", () => {
    const body =
      `<?xml version="1.0"?><a:propfind xmlns:a="DAV:" xmlns:Z="urn:schemas-microsoft-com:">` +
      `<a:prop><a:getlastmodified/><Z:Win32FileAttributes/><oc:size xmlns:oc="http://owncloud.org/ns"/>` +
      `<nullns xmlns=""/><a:resourcetype/><a:getlastmodified/></a:prop></a:propfind>`;
    expect(parsePropfind(body)).toEqual({
      kind: "prop",
      props: [
        { ns: "DAV:", name: "getlastmodified" },
        { ns: "urn:schemas-microsoft-com:", name: "Win32FileAttributes" },
        { ns: "http://owncloud.org/ns", name: "size" },
        { ns: "", name: "nullns" },
        { ns: "DAV:", name: "resourcetype" },
      ],
    });
  });

  it("reads rclone's default prop list", () => {
    const body = `<?xml version="1.0"?>
<d:propfind xmlns:d="DAV:">
 <d:prop>
  <d:displayname />
  <d:getlastmodified />
  <d:getcontentlength />
  <d:resourcetype />
 </d:prop>
</d:propfind>`;
    const parsed = parsePropfind(body);
    expect(parsed.kind === "prop" && parsed.props.map((p) => p.name)).toEqual([
      "displayname",
      "getlastmodified",
      "getcontentlength",
      "resourcetype",
    ]);
  });

  it("ignores unknown elements but needs exactly one request kind", () => {
    expect(parsePropfind(`<D:propfind ${D}><D:allprop/><x xmlns="urn:x"/></D:propfind>`)).toEqual({
      kind: "allprop",
    });
    for (const body of [
      `<D:propfind ${D}/>`,
      `<D:propfind ${D}><D:allprop/><D:propname/></D:propfind>`,
      `<D:propfind ${D}><D:prop/><D:propname/></D:propfind>`,
      `<D:propfind ${D}><D:include><D:getetag/></D:include></D:propfind>`,
      `<D:propfind ${D}>text<D:allprop/></D:propfind>`,
    ]) {
      expect(() => parsePropfind(body), body).toThrow(XmlRejected);
    }
  });

  it("rejects the wrong root element", () => {
    expect(() => parsePropfind(`<D:propertyupdate ${D}/>`)).toThrow(XmlRejected);
    // Right name, wrong namespace.
    expect(() => parsePropfind(`<propfind><allprop/></propfind>`)).toThrow(XmlRejected);
  });
});

describe("parseProppatch", () => {
  it("keeps set and remove interleaved in document order", () => {
    const body =
      `<D:propertyupdate ${D} xmlns:L="http://example.com/neon/litmus/">` +
      `<D:remove><D:prop><L:a/></D:prop></D:remove>` +
      `<D:set><D:prop><L:a>1</L:a><L:b>2</L:b></D:prop></D:set>` +
      `<D:remove><D:prop><L:b/></D:prop></D:remove>` +
      `<D:set><D:prop><L:c/></D:prop></D:set>` +
      `</D:propertyupdate>`;
    const ns = "http://example.com/neon/litmus/";
    expect(parseProppatch(body)).toEqual<ProppatchOp[]>([
      { op: "remove", name: { ns, name: "a" } },
      { op: "set", prop: { ns, name: "a", innerXml: "1" } },
      { op: "set", prop: { ns, name: "b", innerXml: "2" } },
      { op: "remove", name: { ns, name: "b" } },
      { op: "set", prop: { ns, name: "c", innerXml: "" } },
    ]);
  });

  it("reads Windows Explorer's Win32 props", () => {
    const body =
      `<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:">` +
      `<D:set><D:prop>` +
      `<Z:Win32CreationTime>Thu, 01 Jan 2026 10:00:00 GMT</Z:Win32CreationTime>` +
      `<Z:Win32LastAccessTime>Thu, 01 Jan 2026 10:00:01 GMT</Z:Win32LastAccessTime>` +
      `<Z:Win32LastModifiedTime>Thu, 01 Jan 2026 10:00:02 GMT</Z:Win32LastModifiedTime>` +
      `<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes>` +
      `</D:prop></D:set></D:propertyupdate>`;
    const ns = "urn:schemas-microsoft-com:";
    expect(parseProppatch(body)).toEqual([
      {
        op: "set",
        prop: { ns, name: "Win32CreationTime", innerXml: "Thu, 01 Jan 2026 10:00:00 GMT" },
      },
      {
        op: "set",
        prop: { ns, name: "Win32LastAccessTime", innerXml: "Thu, 01 Jan 2026 10:00:01 GMT" },
      },
      {
        op: "set",
        prop: { ns, name: "Win32LastModifiedTime", innerXml: "Thu, 01 Jan 2026 10:00:02 GMT" },
      },
      { op: "set", prop: { ns, name: "Win32FileAttributes", innerXml: "00000020" } },
    ]);
  });

  it("reads litmus-style props, including the empty namespace", () => {
    const body =
      `<?xml version="1.0" encoding="utf-8"?><propertyupdate xmlns="DAV:"><set><prop>` +
      `<prop0 xmlns="http://example.com/neon/litmus/">value0</prop0>` +
      `<nonamespace xmlns="">randomvalue</nonamespace>` +
      `</prop></set></propertyupdate>`;
    expect(parseProppatch(body)).toEqual([
      {
        op: "set",
        prop: { ns: "http://example.com/neon/litmus/", name: "prop0", innerXml: "value0" },
      },
      { op: "set", prop: { ns: "", name: "nonamespace", innerXml: "randomvalue" } },
    ]);
  });

  it("takes xml:lang from the property or its nearest ancestor", () => {
    const body =
      `<D:propertyupdate ${D} xmlns:x="urn:x" xml:lang="de"><D:set xml:lang="en-US"><D:prop>` +
      `<x:a>inherited</x:a><x:b xml:lang="fr">own</x:b><x:c xml:lang="">none</x:c>` +
      `</D:prop></D:set><D:set><D:prop><x:d>root</x:d></D:prop></D:set></D:propertyupdate>`;
    const props = parseProppatch(body).map((op) => (op.op === "set" ? op.prop : undefined));
    expect(props.map((p) => p?.lang)).toEqual(["en-US", "fr", undefined, "de"]);
    // The property's own xml:lang is not part of its value.
    expect(props[1]?.innerXml).toBe("own");
  });

  it("re-serialises nested inner XML self-contained and faithful", () => {
    const body =
      `<D:propertyupdate ${D} xmlns:x="urn:x" xmlns="urn:default"><D:set><D:prop>` +
      `<x:complex>lead <x:child a="1" x:b="two &amp; &quot;three&quot;" xml:lang="en">` +
      `<inner>é 𐀀 &lt;tag&gt; &amp; ]]&gt;</inner><D:href>/p</D:href>` +
      `<plain xmlns=""><deep xmlns:y="urn:y" y:k="v"/></plain></x:child>` +
      `<![CDATA[<raw & cdata>]]> tail\t&#13;end</x:complex>` +
      `</D:prop></D:set></D:propertyupdate>`;
    const [op] = parseProppatch(body);
    expect(op?.op).toBe("set");
    const inner = op?.op === "set" ? op.prop.innerXml : "";
    // Every prefix the fragment uses is declared inside it.
    expect(inner).toContain('xmlns:x="urn:x"');
    expect(inner).toContain('xmlns="urn:default"');
    expect(inner).toContain('xmlns:D="DAV:"');
    // Stands on its own, and means the same as the original.
    const original =
      `<x:child xmlns:x="urn:x" xmlns:D="DAV:" a="1" x:b="two &amp; &quot;three&quot;" xml:lang="en">` +
      `<inner xmlns="urn:default">é 𐀀 &lt;tag&gt; &amp; ]]&gt;</inner><D:href>/p</D:href>` +
      `<plain><deep xmlns:y="urn:y" y:k="v"/></plain></x:child>`;
    expect(fragment(inner)).toEqual(["lead ", ...fragment(original), "<raw & cdata> tail\t\rend"]);
  });

  it("round-trips: parse, re-serialise, parse again gives the same value", () => {
    const values = [
      "plain text",
      "<a xmlns='urn:a'><b c='d'/>text</a>",
      "<foo xmlns='bar'/>",
      "<x:a xmlns:x='urn:x' xmlns:q='urn:q' x:att='&lt;&amp;&gt;' q:w='\t\n'>\u{10FFFF} 日本 ☃</x:a>",
      "mixed <e/> content <f>with</f> tail",
      "<a xmlns='urn:1'><b xmlns='urn:2'><c xmlns=''/></b></a>",
    ];
    for (const value of values) {
      // A prefixed property element, so no default namespace leaks into the value.
      const patch = (inner: string) =>
        `<D:propertyupdate ${D}><D:set><D:prop><P:p xmlns:P="urn:p">${inner}</P:p></D:prop></D:set></D:propertyupdate>`;
      const first = parseProppatch(patch(value))[0];
      const once = first?.op === "set" ? first.prop.innerXml : "";
      const second = parseProppatch(patch(once))[0];
      const twice = second?.op === "set" ? second.prop.innerXml : "";
      expect(twice, value).toBe(once);
      expect(fragment(once), value).toEqual(fragment(value));
    }
  });

  it("keeps high unicode intact (litmus prophighunicode)", () => {
    const body = `<D:propertyupdate ${D}><D:set><D:prop><h xmlns="urn:h">\u{10348}\u{1F600}</h></D:prop></D:set></D:propertyupdate>`;
    expect(parseProppatch(body)).toEqual([
      { op: "set", prop: { ns: "urn:h", name: "h", innerXml: "\u{10348}\u{1F600}" } },
    ]);
  });

  it("rejects empty, wrong-root and structurally broken bodies", () => {
    for (const body of [
      "",
      `<D:propertyupdate ${D}/>`,
      `<D:propfind ${D}><D:allprop/></D:propfind>`,
      `<D:propertyupdate ${D}><D:set/></D:propertyupdate>`,
      `<D:propertyupdate ${D}><D:set>junk<D:prop/></D:set></D:propertyupdate>`,
    ]) {
      expect(() => parseProppatch(body), body).toThrow(XmlRejected);
    }
  });
});

describe("parseLockinfo", () => {
  it("returns undefined for an empty body (a refresh)", () => {
    expect(parseLockinfo("")).toBeUndefined();
    expect(parseLockinfo("\n")).toBeUndefined();
  });

  it("reads scope, type and the owner's inner XML", () => {
    const body =
      `<?xml version="1.0" encoding="utf-8"?><D:lockinfo ${D}><D:lockscope><D:exclusive/></D:lockscope>` +
      `<D:locktype><D:write/></D:locktype><D:owner><D:href>http://example.org/~me</D:href></D:owner></D:lockinfo>`;
    const info = parseLockinfo(body);
    expect(info).toEqual({
      scope: "exclusive",
      type: "write",
      ownerXml: '<D:href xmlns:D="DAV:">http://example.org/~me</D:href>',
    });
  });

  it("reads a shared lock with a text owner and one without owner", () => {
    const shared = `<lockinfo xmlns="DAV:"><lockscope><shared/></lockscope><locktype><write/></locktype><owner>litmus test suite</owner></lockinfo>`;
    expect(parseLockinfo(shared)).toEqual({
      scope: "shared",
      type: "write",
      ownerXml: "litmus test suite",
    });
    const bare = `<lockinfo xmlns="DAV:"><locktype><write/></locktype><lockscope><exclusive/></lockscope></lockinfo>`;
    expect(parseLockinfo(bare)).toEqual({ scope: "exclusive", type: "write", ownerXml: "" });
  });

  it("rejects missing or bad scope and type", () => {
    for (const body of [
      `<D:lockinfo ${D}><D:locktype><D:write/></D:locktype></D:lockinfo>`,
      `<D:lockinfo ${D}><D:lockscope><D:exclusive/></D:lockscope></D:lockinfo>`,
      `<D:lockinfo ${D}><D:lockscope><D:exclusive/><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`,
      `<D:lockinfo ${D}><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:read/></D:locktype></D:lockinfo>`,
      `<D:propfind ${D}><D:allprop/></D:propfind>`,
    ]) {
      expect(() => parseLockinfo(body), body).toThrow(XmlRejected);
    }
  });
});

describe("hostile and malformed bodies", () => {
  const propfind = `<D:propfind ${D}><D:allprop/></D:propfind>`;
  const hostile: Record<string, string> = {
    "internal entity": `<?xml version="1.0"?><!DOCTYPE D:propfind [<!ENTITY x "expanded">]><D:propfind ${D}><D:prop><x xmlns="urn:x">&x;</x></D:prop></D:propfind>`,
    "external SYSTEM entity": `<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><D:propfind ${D}><D:prop><x xmlns="urn:x">&xxe;</x></D:prop></D:propfind>`,
    "billion laughs":
      `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">` +
      Array.from(
        { length: 9 },
        (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i === 0 ? "" : i};`.repeat(10)}">`,
      ).join("") +
      `]><D:propfind ${D}><D:prop><x xmlns="urn:x">&lol9;</x></D:prop></D:propfind>`,
    "plain DOCTYPE": `<!DOCTYPE propfind SYSTEM "http://example.com/dav.dtd">${propfind}`,
    "undeclared entity": `<D:propfind ${D}><D:prop><x xmlns="urn:x">&nbsp;</x></D:prop></D:propfind>`,
    "entity in attribute": `<D:propfind ${D} a="&foo;"><D:allprop/></D:propfind>`,
    "unclosed element": `<D:propfind ${D}><D:allprop></D:propfind>`,
    "not XML": "this is not xml",
    truncated: `<D:propfind ${D}><D:pr`,
    "unbound prefix": `<D:propfind><D:allprop/></D:propfind>`,
    "two roots": `${propfind}${propfind}`,
    "deep nesting": `<D:propfind ${D}>${"<a>".repeat(5000)}${"</a>".repeat(5000)}<D:allprop/></D:propfind>`,
    "bad character reference": `<D:propfind ${D}><D:prop><x xmlns="urn:x">&#0;</x></D:prop></D:propfind>`,
  };

  for (const [name, body] of Object.entries(hostile)) {
    it(`rejects ${name}`, () => {
      expect(() => parsePropfind(body)).toThrow(XmlRejected);
      const asPatch = body.replaceAll("propfind", "propertyupdate");
      expect(() => parseProppatch(asPatch)).toThrow(XmlRejected);
      const asLock = body.replaceAll("propfind", "lockinfo");
      expect(() => parseLockinfo(asLock)).toThrow(XmlRejected);
    });
  }

  it("gives XmlRejected a short message and a name", () => {
    try {
      parsePropfind(hostile["billion laughs"]!);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(XmlRejected);
      expect((error as Error).name).toBe("XmlRejected");
      expect((error as Error).message.length).toBeLessThan(60);
    }
  });

  it("accepts the predefined entities and character references", () => {
    const body = `<D:propertyupdate ${D}><D:set><D:prop><x xmlns="urn:x">&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</x></D:prop></D:set></D:propertyupdate>`;
    const [op] = parseProppatch(body);
    expect(op?.op === "set" && fragment(op.prop.innerXml)).toEqual([`<>&'"AB`]);
  });
});

describe("escaping", () => {
  it("escapes text and attributes", () => {
    expect(escapeXml(`a<b>&"c'\r`)).toBe(`a&lt;b&gt;&amp;"c'&#13;`);
    expect(escapeAttr(`a<b>&"c'\t\n`)).toBe(`a&lt;b&gt;&amp;&quot;c'&#9;&#10;`);
  });

  it("replaces characters XML cannot carry", () => {
    expect(escapeXml("a\u0001b\uD800c\uFFFF")).toBe("a\uFFFDb\uFFFDc\uFFFD");
    expect(escapeXml("ok 😀")).toBe("ok 😀");
  });

  it("changes exactly the characters that need it, one code unit at a time", () => {
    for (let code = 0; code <= 0xffff; code++) {
      const ch = String.fromCharCode(code);
      const invalid =
        (code < 0x20 && ch !== "\t" && ch !== "\n" && ch !== "\r") ||
        code === 0xfffe ||
        code === 0xffff ||
        (code >= 0xd800 && code <= 0xdfff);
      const expected = invalid
        ? "\uFFFD"
        : ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;" }[ch] ?? ch);
      expect(escapeXml(`a${ch}b`)).toBe(`a${expected}b`);
    }
  });
});

describe("MultistatusWriter", () => {
  it("writes propstats per status with foreign namespaces declared in place", () => {
    const w = new MultistatusWriter();
    w.propstats("/a%20b/x&y.txt", [
      {
        status: 200,
        props: [
          { ns: "DAV:", name: "getcontentlength", innerXml: "12" },
          { ns: "DAV:", name: "resourcetype" },
          { ns: "urn:x", name: "p", innerXml: '<q xmlns="urn:q">1 &lt; 2</q>', lang: "en" },
          { ns: "", name: "nullns", innerXml: "<child/>" },
          { ns: "urn:schemas-microsoft-com:", name: "Win32FileAttributes", innerXml: "00000020" },
          { ns: "urn:x", name: "r", innerXml: "value" },
        ],
      },
      { status: 404, props: [{ ns: "urn:missing", name: "gone" }] },
      {
        status: 403,
        props: [{ ns: "DAV:", name: "getetag" }],
        error: "cannot-modify-protected-property",
      },
      { status: 424, props: [{ ns: "urn:x", name: "s" }] },
    ]);
    const body = w.end();
    expect(body).toBe(
      '<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:"><D:response>' +
        "<D:href>/a%20b/x&amp;y.txt</D:href>" +
        "<D:propstat><D:prop><D:getcontentlength>12</D:getcontentlength><D:resourcetype/>" +
        '<ns1:p xmlns:ns1="urn:x" xml:lang="en"><q xmlns="urn:q">1 &lt; 2</q></ns1:p>' +
        '<nullns xmlns=""><child/></nullns>' +
        '<ns2:Win32FileAttributes xmlns:ns2="urn:schemas-microsoft-com:">00000020</ns2:Win32FileAttributes>' +
        '<ns1:r xmlns:ns1="urn:x">value</ns1:r>' +
        "</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>" +
        '<D:propstat><D:prop><ns3:gone xmlns:ns3="urn:missing"/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>' +
        "<D:propstat><D:prop><D:getetag/></D:prop><D:status>HTTP/1.1 403 Forbidden</D:status>" +
        "<D:error><D:cannot-modify-protected-property/></D:error></D:propstat>" +
        '<D:propstat><D:prop><ns1:s xmlns:ns1="urn:x"/></D:prop><D:status>HTTP/1.1 424 Failed Dependency</D:status></D:propstat>' +
        "</D:response></D:multistatus>",
    );
    const parsed = tree(body);
    const response = parsed.children[0] as Tree;
    expect((response.children[0] as Tree).children).toEqual(["/a%20b/x&y.txt"]);
    const okProps = ((response.children[1] as Tree).children[0] as Tree).children as Tree[];
    expect(okProps.map((p) => p.el)).toEqual([
      "{DAV:}getcontentlength",
      "{DAV:}resourcetype",
      "{urn:x}p",
      "{}nullns",
      "{urn:schemas-microsoft-com:}Win32FileAttributes",
      "{urn:x}r",
    ]);
    expect(okProps[2]!.children).toEqual([{ el: "{urn:q}q", attrs: {}, children: ["1 < 2"] }]);
    expect(okProps[3]!.children).toEqual([{ el: "{}child", attrs: {}, children: [] }]);
  });

  it("drops stored inner XML in unchanged, whatever prefixes it uses", () => {
    const [op] = parseProppatch(
      `<D:propertyupdate ${D} xmlns:ns1="urn:other"><D:set><D:prop><ns1:v>` +
        `<ns1:w/><D:href>x</D:href><bare/></ns1:v></D:prop></D:set></D:propertyupdate>`,
    );
    if (op?.op !== "set") throw new Error("expected a set");
    const body = new MultistatusWriter()
      .propstats("/f", [{ status: 200, props: [{ ...op.prop, ns: "urn:elsewhere" }] }])
      .end();
    const prop = (((tree(body).children[0] as Tree).children[1] as Tree).children[0] as Tree)
      .children[0] as Tree;
    expect(prop.el).toBe("{urn:elsewhere}v");
    expect(prop.children.map((c) => (c as Tree).el)).toEqual([
      "{urn:other}w",
      "{DAV:}href",
      "{}bare",
    ]);
  });

  it("formats status lines", () => {
    expect(statusLine(207)).toBe("HTTP/1.1 207 Multi-Status");
    expect(statusLine(507)).toBe("HTTP/1.1 507 Insufficient Storage");
    expect(statusLine(799)).toBe("HTTP/1.1 799");
  });

  it("stays lean: no whitespace between elements", () => {
    const body = new MultistatusWriter()
      .propstats("/x", [{ status: 200, props: [{ ns: "DAV:", name: "getetag", innerXml: '"1"' }] }])
      .end();
    expect(body).not.toMatch(/>\s+</);
  });
});

describe("lock fragments", () => {
  const lock = {
    scope: "exclusive" as const,
    depth: "infinity" as const,
    ownerXml: '<D:href xmlns:D="DAV:">me &amp; you</D:href>',
    timeoutSeconds: 3600.7,
    token: "urn:uuid:e71d4fae-5dec-22d6-fea5-00a0c91e6be4",
    rootHref: "/dir%20a/",
  };

  it("writes activelock in RFC 4918 order", () => {
    expect(lockDiscoveryXml([lock])).toBe(
      "<D:activelock><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>" +
        '<D:depth>infinity</D:depth><D:owner><D:href xmlns:D="DAV:">me &amp; you</D:href></D:owner>' +
        "<D:timeout>Second-3600</D:timeout>" +
        "<D:locktoken><D:href>urn:uuid:e71d4fae-5dec-22d6-fea5-00a0c91e6be4</D:href></D:locktoken>" +
        "<D:lockroot><D:href>/dir%20a/</D:href></D:lockroot></D:activelock>",
    );
  });

  it("writes Infinite timeouts, depth 0, no owner, and several locks", () => {
    const xml = lockDiscoveryXml([
      { ...lock, scope: "shared", depth: 0, ownerXml: "", timeoutSeconds: undefined },
      { ...lock, timeoutSeconds: Infinity },
    ]);
    expect(xml).toContain("<D:lockscope><D:shared/></D:lockscope>");
    expect(xml).toContain("<D:depth>0</D:depth>");
    expect(xml.match(/<D:timeout>Infinite<\/D:timeout>/g)).toHaveLength(2);
    expect(xml.match(/<D:owner>/g)).toHaveLength(1);
    expect(lockDiscoveryXml([])).toBe("");
  });

  it("writes a LOCK response body that parses", () => {
    const body = lockResponseXml(lock);
    const parsed = tree(body);
    expect(parsed.el).toBe("{DAV:}prop");
    const active = (parsed.children[0] as Tree).children[0] as Tree;
    expect(active.children.map((c) => (c as Tree).el.replace("{DAV:}", ""))).toEqual([
      "lockscope",
      "locktype",
      "depth",
      "owner",
      "timeout",
      "locktoken",
      "lockroot",
    ]);
  });

  it("writes supportedlock with exclusive and shared write entries", () => {
    const parsed = tree(`<D:supportedlock ${D}>${supportedLockXml()}</D:supportedlock>`);
    expect(parsed.children).toHaveLength(2);
    expect(supportedLockXml()).toContain("<D:exclusive/>");
    expect(supportedLockXml()).toContain("<D:shared/>");
  });
});

describe("errorBodyXml", () => {
  it("writes a precondition body", () => {
    expect(errorBodyXml("propfind-finite-depth")).toBe(
      '<?xml version="1.0" encoding="utf-8"?><D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>',
    );
  });

  it("names resources inside the condition when given", () => {
    const body = errorBodyXml("lock-token-submitted", ["/a&b/"]);
    expect(body).toContain(
      "<D:lock-token-submitted><D:href>/a&amp;b/</D:href></D:lock-token-submitted>",
    );
    expect(tree(body).el).toBe("{DAV:}error");
  });
});
