/**
 * Properties of the XML request reader: generated PROPFIND, PROPPATCH and LOCK bodies parse to
 * what was generated, whatever prefixes, white space and escapes they are written with; DTDs,
 * undeclared entities and documents nested beyond the limit are refused with XmlRejected; bodies
 * beyond the size cap are refused with 413 before any parsing.
 */
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { tree, type Tree } from "../helpers/xml-tree.js";
import { readSmallBody } from "../../src/dav/context.js";
import { HttpError } from "../../src/dav/status.js";
import {
  parseLockinfo,
  parsePropfind,
  parseProppatch,
  XmlRejected,
  type ProppatchOp,
  type QName,
} from "../../src/dav/xml.js";

const NUM_RUNS = 150;
/** The nesting limit of src/dav/xml.ts: documents up to this many levels deep are read. */
const MAX_DEPTH = 100;

// ---------------------------------------------------------------------------------------------
// Writing XML independently of the code under test

/** Escapes text for element content, now and then as character references. */
const escapeText = (text: string, asReferences: boolean) =>
  text.replace(/[&<>\r]|[^\x20-\x7e]/gu, (ch) => {
    if (ch === "\t" || ch === "\n") return ch;
    if (asReferences || ch === "\r") return `&#x${ch.codePointAt(0)!.toString(16)};`;
    return ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" } as Record<string, string>)[ch] ?? ch;
  });

const escapeAttrValue = (value: string) =>
  value.replace(/[&<"\t\n\r]/g, (ch) => `&#${ch.charCodeAt(0)};`);

/** Text XML can carry: no control characters but tab, LF and CR; any plane. */
const xmlText = fc.string({
  unit: fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(..."ab Z09&<>\"'];", "]]>") },
    { weight: 1, arbitrary: fc.constantFrom("\t", "\n", "\r", "\r\n", "é", "日", "\u{1F600}") },
  ),
  maxLength: 12,
});

/** Text written as escaped characters, or as a CDATA section when it can be one. */
const writtenText = (text: string) =>
  fc
    .constantFrom("escaped", "references", "cdata")
    .map((how) =>
      how === "cdata" && !text.includes("]]>") && !text.includes("\r") && text !== ""
        ? `<![CDATA[${text}]]>`
        : escapeText(text, how === "references"),
    );

/** Markup the reader must skip wherever it may appear between elements. */
const filler = fc.constantFrom("", "", " ", "\n  ", "<!-- note -->", "<?pi data?>", "\t");

const NAMESPACES = ["DAV:", "urn:x", "http://example.com/ns/", "", "urn:ä"];
const ncName = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9._-]{0,7}$/);
const qname: fc.Arbitrary<QName> = fc.record({
  ns: fc.constantFrom(...NAMESPACES),
  name: fc.oneof(ncName, fc.constantFrom("getetag", "displayname", "Win32FileAttributes", "é")),
});

/** A prefix that is not reserved (xml*, xmlns) and not the D of the documents. */
const prefix = fc.stringMatching(/^[a-wyzA-CE-Z][a-z0-9]{0,3}$/);

/**
 * An empty element for `q`, written one of three ways: with a default namespace declaration,
 * with its own prefix, or (for DAV:) with the document's D prefix.
 */
const emptyElement = (q: QName) =>
  fc.tuple(fc.constantFrom("default", "prefixed", "D"), prefix, filler).map(([how, p, pad]) => {
    if (how === "D" && q.ns === "DAV:") return `<D:${q.name}${pad === "" ? "" : " "}/>`;
    if (how === "prefixed" && q.ns !== "") return `<${p}:${q.name} xmlns:${p}="${q.ns}"/>`;
    return `<${q.name} xmlns="${escapeAttrValue(q.ns)}"/>`;
  });

const join = (parts: readonly string[]) =>
  fc
    .array(filler, { minLength: parts.length + 1, maxLength: parts.length + 1 })
    .map((pads) => pads.map((pad, i) => pad + (parts[i] ?? "")).join(""));

const DECL = fc.constantFrom(
  "",
  '<?xml version="1.0" encoding="utf-8"?>',
  "<?xml version='1.0'?>\n",
);

/**
 * A DAV: element holding `inner`, written with the D prefix or in the default namespace. `decls`
 * go on the element either way (the root declares D there for everything inside).
 */
const davElement = (name: string, inner: string, decls = "") =>
  fc.constantFrom(
    `<D:${name}${decls}>${inner}</D:${name}>`,
    `<${name} xmlns="DAV:"${decls}>${inner}</${name}>`,
  );

const uniqueInOrder = (names: readonly QName[]) =>
  names.filter((q, i) => names.findIndex((o) => o.ns === q.ns && o.name === q.name) === i);

// ---------------------------------------------------------------------------------------------
// Reading XML back independently, to compare fragments by meaning rather than by spelling

function treeOf(xml: string): (Tree | string)[] {
  return tree(`<root>${xml}</root>`).children;
}

/** A property value: mixed content of elements in a few namespaces, attributes and text. */
const valueTree: fc.Arbitrary<(Tree | string)[]> = fc
  .letrec<{
    node: Tree | string;
    nodes: (Tree | string)[];
  }>((tie) => ({
    node: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      xmlText,
      fc.record({
        el: fc
          .tuple(fc.constantFrom("urn:v", "DAV:", "urn:w"), ncName)
          .map(([ns, n]) => `{${ns}}${n}`),
        attrs: fc
          .dictionary(fc.stringMatching(/^[a-z]{1,4}$/), xmlText, { maxKeys: 2 })
          .map((d) => Object.fromEntries(Object.entries(d).map(([k, v]) => [`{}${k}`, v]))),
        children: tie("nodes"),
      }),
    ),
    nodes: fc.array(tie("node"), { maxLength: 3 }),
  }))
  .nodes.map(normalised);

/** Adjacent text merged and empty text dropped, as any XML reader reports it. */
function normalised(nodes: (Tree | string)[]): (Tree | string)[] {
  const out: (Tree | string)[] = [];
  for (const node of nodes) {
    const last = out[out.length - 1];
    if (typeof node === "string") {
      if (node === "") continue;
      if (typeof last === "string") out[out.length - 1] = last + node;
      else out.push(node);
    } else out.push({ ...node, children: normalised(node.children) });
  }
  return out;
}

/** Writes a value tree, each element with its own prefix declared on it. */
function writeTree(nodes: (Tree | string)[]): fc.Arbitrary<string> {
  return fc.tuple(...nodes.map((node) => writeNode(node))).map((parts) => parts.join(""));
}

function writeNode(node: Tree | string): fc.Arbitrary<string> {
  if (typeof node === "string") return writtenText(node);
  const [, ns, local] = /^\{(.*)\}(.*)$/.exec(node.el)!;
  return fc.tuple(prefix, writeTree(node.children)).map(([p, inner]) => {
    const attrs = Object.entries(node.attrs)
      .map(([k, v]) => ` ${k.slice(2)}="${escapeAttrValue(v)}"`)
      .join("");
    const open = `${p}:${local} xmlns:${p}="${ns}"${attrs}`;
    return inner === "" ? `<${open}/>` : `<${open}>${inner}</${p}:${local}>`;
  });
}

// ---------------------------------------------------------------------------------------------

describe("parsePropfind properties", () => {
  it("reads a prop list as generated, without repeats, in document order", () => {
    const body = fc
      .array(qname, { minLength: 0, maxLength: 6 })
      .chain((names) =>
        fc.tuple(
          fc.constant(names),
          fc.tuple(...names.map(emptyElement)).chain(join),
          fc.tuple(DECL, join([])),
        ),
      )
      .chain(([names, props, [decl, lead]]) =>
        davElement("prop", props).chain((prop) =>
          davElement("propfind", prop, ' xmlns:D="DAV:"').map((root) => ({
            names,
            text: `${decl}${lead}${root}`,
          })),
        ),
      );
    fc.assert(
      fc.property(body, ({ names, text }) => {
        expect(parsePropfind(text)).toEqual({ kind: "prop", props: uniqueInOrder(names) });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("reads allprop with or without include, and propname, skipping unknown elements", () => {
    const unknown = fc.constantFrom("", "<x:other xmlns:x='urn:x'><x:y/></x:other>", "<D:foo/>");
    const body = fc
      .tuple(
        fc.constantFrom("allprop", "propname"),
        fc.option(fc.array(qname, { maxLength: 4 }), { nil: undefined }),
        unknown,
      )
      .chain(([kind, include, other]) => {
        const withInclude = kind === "allprop" ? include : undefined;
        const includeXml =
          withInclude === undefined
            ? fc.constant("")
            : fc
                .tuple(...withInclude.map(emptyElement))
                .map((els) => `<D:include>${els.join("")}</D:include>`);
        return fc.tuple(includeXml, fc.boolean()).map(([inc, includeFirst]) => ({
          expected:
            kind === "propname"
              ? { kind: "propname" }
              : withInclude === undefined
                ? { kind: "allprop" }
                : { kind: "allprop", include: uniqueInOrder(withInclude) },
          text:
            `<D:propfind xmlns:D="DAV:">${other}` +
            (includeFirst ? `${inc}<D:${kind}/>` : `<D:${kind}/>${inc}`) +
            `</D:propfind>`,
        }));
      });
    fc.assert(
      fc.property(body, ({ expected, text }) => {
        expect(parsePropfind(text)).toEqual(expected);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

describe("parseProppatch properties", () => {
  interface Generated {
    op: "set" | "remove";
    q: QName;
    value: (Tree | string)[];
    lang: string | undefined;
  }
  const LANGS = [undefined, "en", "en-US", "fr", ""];

  const instruction = fc.record({
    op: fc.constantFrom("set" as const, "remove" as const),
    instructionLang: fc.constantFrom(...LANGS),
    props: fc.array(fc.record({ q: qname, value: valueTree, lang: fc.constantFrom(...LANGS) }), {
      minLength: 1,
      maxLength: 3,
    }),
  });

  /** One property element of a set or remove, and what parseProppatch must make of it. */
  const propXml = (
    op: "set" | "remove",
    q: QName,
    value: (Tree | string)[],
    lang: string | undefined,
    inherited: string | undefined,
  ): fc.Arbitrary<{ text: string; expected: Generated }> =>
    fc.tuple(prefix, writeTree(value)).map(([p, inner]) => {
      const langAttr = lang === undefined ? "" : ` xml:lang="${lang}"`;
      const name = q.ns === "" ? q.name : `${p}:${q.name}`;
      const decl = q.ns === "" ? ` xmlns=""` : ` xmlns:${p}="${escapeAttrValue(q.ns)}"`;
      const content = op === "set" ? inner : "";
      const text =
        content === ""
          ? `<${name}${decl}${langAttr}/>`
          : `<${name}${decl}${langAttr}>${content}</${name}>`;
      const effectiveLang = lang ?? inherited;
      return {
        text,
        expected: { op, q, value: op === "set" ? value : [], lang: effectiveLang || undefined },
      };
    });

  const body = fc.array(instruction, { minLength: 1, maxLength: 4 }).chain((instructions) =>
    fc
      .tuple(
        ...instructions.map((ins) =>
          fc
            .tuple(
              ...ins.props.map((prop) =>
                propXml(ins.op, prop.q, prop.value, prop.lang, ins.instructionLang),
              ),
            )
            .chain((props) =>
              join(props.map((p) => p.text)).map((inner) => {
                const lang =
                  ins.instructionLang === undefined ? "" : ` xml:lang="${ins.instructionLang}"`;
                return {
                  text: `<D:${ins.op}${lang}><D:prop>${inner}</D:prop></D:${ins.op}>`,
                  expected: props.map((p) => p.expected),
                };
              }),
            ),
        ),
      )
      .chain((parts) =>
        join(parts.map((p) => p.text)).map((inner) => ({
          text: `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:">${inner}</D:propertyupdate>`,
          expected: parts.flatMap((p) => p.expected),
        })),
      ),
  );

  it("reads set and remove in document order, with values and languages as generated", () => {
    fc.assert(
      fc.property(body, ({ text, expected }) => {
        const ops = parseProppatch(text);
        expect(ops.map((o) => o.op)).toEqual(expected.map((e) => e.op));
        ops.forEach((op: ProppatchOp, i) => {
          const want = expected[i]!;
          if (op.op === "remove") {
            expect(op.name).toEqual(want.q);
            return;
          }
          expect({ ns: op.prop.ns, name: op.prop.name }).toEqual(want.q);
          expect(op.prop.lang).toBe(want.lang);
          // The stored value stands on its own and means what was sent.
          expect(treeOf(op.prop.innerXml)).toEqual(want.value);
        });
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

describe("parseLockinfo properties", () => {
  it("reads scope and owner whatever the order, spacing and unknown elements", () => {
    const body = fc
      .tuple(
        fc.constantFrom("exclusive" as const, "shared" as const),
        fc.option(valueTree, { nil: undefined }),
        fc.constantFrom("", "<x:ext xmlns:x='urn:x'>1</x:ext>", "<D:unknown/>"),
        fc.boolean(),
      )
      .chain(([scope, owner, other, ownerFirst]) =>
        fc
          .tuple(
            owner === undefined
              ? fc.constant("")
              : writeTree(owner).map((o) => `<D:owner>${o}</D:owner>`),
            join([
              `<D:lockscope><D:${scope}/></D:lockscope>`,
              "<D:locktype><D:write/></D:locktype>",
            ]),
          )
          .map(([ownerXml, rest]) => ({
            scope,
            owner,
            text: `<D:lockinfo xmlns:D="DAV:">${other}${ownerFirst ? ownerXml + rest : rest + ownerXml}</D:lockinfo>`,
          })),
      );
    fc.assert(
      fc.property(body, ({ scope, owner, text }) => {
        const info = parseLockinfo(text);
        expect(info?.scope).toBe(scope);
        expect(info?.type).toBe("write");
        expect(treeOf(info?.ownerXml ?? "!")).toEqual(owner ?? []);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Refusals

/** The error a parse throws; fails the property when it throws anything but XmlRejected. */
function rejection(parse: () => unknown): XmlRejected | undefined {
  try {
    parse();
    return undefined;
  } catch (err) {
    if (err instanceof XmlRejected) return err;
    throw err;
  }
}

/** A body of each kind with `inside` placed where each parser reads free-form XML. */
const bodies = (inside: string) => ({
  propfind: () => parsePropfind(`<D:propfind xmlns:D="DAV:"><D:allprop/>${inside}</D:propfind>`),
  proppatch: () =>
    parseProppatch(
      `<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="urn:x">${inside}</x></D:prop></D:set></D:propertyupdate>`,
    ),
  lockinfo: () =>
    parseLockinfo(
      `<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>${inside}</D:owner></D:lockinfo>`,
    ),
});
/** Levels above `inside` in each body of `bodies`. */
const LEVELS_ABOVE = { propfind: 1, proppatch: 4, lockinfo: 2 };

describe("limits and refusals", () => {
  it("reads documents up to the depth limit and refuses deeper ones", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("propfind" as const, "proppatch" as const, "lockinfo" as const),
        fc.integer({ min: 0, max: 2 * MAX_DEPTH }),
        fc.constantFrom("a", "y:a"),
        (kind, nesting, name) => {
          const open = name === "a" ? "<a>" : `<y:a xmlns:y="urn:y">`;
          const inside = open.repeat(nesting) + `</${name}>`.repeat(nesting);
          const error = rejection(bodies(inside)[kind]);
          if (LEVELS_ABOVE[kind] + nesting <= MAX_DEPTH) expect(error).toBeUndefined();
          else expect(error?.message).toBe("XML nested too deeply");
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("refuses any DOCTYPE, whatever it declares", () => {
    const declaration = fc.oneof(
      fc
        .tuple(
          ncName,
          xmlText.filter((t) => !/["%&]/.test(t)),
        )
        .map(([n, v]) => `<!ENTITY ${n} "${v}">`),
      ncName.map((n) => `<!ENTITY ${n} SYSTEM "file:///etc/passwd">`),
      ncName.map((n) => `<!ENTITY % ${n} SYSTEM "http://127.0.0.1:1/x.dtd">`),
      ncName.map((n) => `<!ELEMENT ${n} ANY>`),
      ncName.map((n) => `<!ATTLIST ${n} a CDATA "d">`),
      fc.constant("<!-- in the subset -->"),
    );
    const doctype = fc
      .tuple(
        fc.constantFrom("D:propfind", "D:propertyupdate", "D:lockinfo", "root"),
        fc.constantFrom("", ' SYSTEM "http://example.com/dav.dtd"', ' PUBLIC "-//x//y" "z.dtd"'),
        fc.option(fc.array(declaration, { maxLength: 4 }), { nil: undefined }),
      )
      .map(
        ([root, external, subset]) =>
          `<!DOCTYPE ${root}${external}${subset === undefined ? "" : ` [${subset.join("\n")}]`}>`,
      );
    fc.assert(
      fc.property(DECL, doctype, filler, (decl, dtd, pad) => {
        const prolog = `${decl}${pad}${dtd}`;
        for (const parse of [
          () => parsePropfind(`${prolog}<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`),
          () =>
            parseProppatch(
              `${prolog}<D:propertyupdate xmlns:D="DAV:"><D:remove><D:prop><D:x/></D:prop></D:remove></D:propertyupdate>`,
            ),
          () =>
            parseLockinfo(
              `${prolog}<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`,
            ),
        ]) {
          expect(rejection(parse)?.message).toBe("DTDs are not allowed");
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("refuses references to undeclared entities in text and attributes", () => {
    const entity = ncName.filter((n) => !["lt", "gt", "amp", "apos", "quot"].includes(n));
    fc.assert(
      fc.property(
        entity,
        fc.constantFrom("propfind" as const, "proppatch" as const, "lockinfo" as const),
        fc.boolean(),
        (name, kind, inAttribute) => {
          const inside = inAttribute ? `<v a="&${name};"/>` : `text &${name}; more`;
          expect(rejection(bodies(inside)[kind])).toBeInstanceOf(XmlRejected);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("throws nothing but XmlRejected on arbitrary input", () => {
    const piece = fc.oneof(
      fc.constantFrom("<", ">", "</", "/>", "&", ";", "<!", "<?", "?>", "]]>", "<![CDATA[", '"'),
      fc.constantFrom("<D:propfind xmlns:D='DAV:'>", "</D:propfind>", "<D:prop>", "<D:allprop/>"),
      fc.constantFrom("<!DOCTYPE x>", "&#0;", "&#x110000;", "xmlns:", "D:", "=", "\uFEFF"),
      fc.string({ unit: "binary", maxLength: 4 }),
    );
    const input = fc.array(piece, { maxLength: 30 }).map((parts) => parts.join(""));
    fc.assert(
      fc.property(input, (text) => {
        rejection(() => parsePropfind(text));
        rejection(() => parseProppatch(text.replaceAll("propfind", "propertyupdate")));
        rejection(() => parseLockinfo(text.replaceAll("propfind", "lockinfo")));
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

describe("request body size", () => {
  /** A request whose body arrives in the given chunks, announced as chunked. */
  const request = (chunks: Buffer[]) =>
    Object.assign(Readable.from(chunks), {
      headers: { "transfer-encoding": "chunked" },
    }) as unknown as IncomingMessage;

  it("reads bodies up to the cap and answers 413 beyond it, however they are chunked", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4096 }),
        fc.array(fc.integer({ min: 1, max: 1500 }), { minLength: 1, maxLength: 8 }),
        async (limit, sizes) => {
          const chunks = sizes.map((n, i) => Buffer.alloc(n, 97 + (i % 26)));
          const total = sizes.reduce((a, b) => a + b, 0);
          try {
            const body = await readSmallBody(request(chunks), limit);
            expect(total).toBeLessThanOrEqual(limit);
            expect(body).toBe(Buffer.concat(chunks).toString("utf8"));
          } catch (err) {
            expect(err).toBeInstanceOf(HttpError);
            expect((err as HttpError).status).toBe(413);
            expect(total).toBeGreaterThan(limit);
          }
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});
