/**
 * A folder opened in a web browser (GET on a collection): headless Chromium loads the gateway's
 * index page, and the DOM it parsed (`--dump-dom`) must hold the folder's members in order, each
 * name as plain text, nothing injected. The page as sent must be well-formed markup, and a
 * screenshot goes to test-artifacts/ for a person to look at.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLockSystem } from "../../src/dav/locks.js";
import type { FileSystem, Member } from "../../src/drive/types.js";
import { NotFound } from "../../src/errors.js";
import { useDavOver } from "../helpers/dav-over.js";
import { useGateway } from "../helpers/gateway.js";
import { enc, raw } from "../helpers/http-raw.js";
import { tree, type Tree } from "../helpers/xml-tree.js";
import { ok, requireTool, run } from "./tools.js";

const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/", import.meta.url));

/** Runs headless Chromium on `url` with a throwaway profile; resolves to what it printed. */
async function chromium(url: string, ...args: string[]): Promise<string> {
  const bin = requireTool("chromium", "chromium");
  const profile = await mkdtemp(join(tmpdir(), "chromium-profile-"));
  try {
    const flags = ["--headless", "--no-sandbox", "--disable-gpu", `--user-data-dir=${profile}`];
    const r = await run(bin, [...flags, ...args, url], { timeoutMs: 60_000 });
    return ok(`chromium ${args.join(" ")} ${url}`, r);
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', nbsp: "\u00a0" };
/** The characters of serialised HTML (Chromium escapes only these), tags dropped. */
const textOf = (html: string) =>
  html.replace(/<[^>]*>/g, "").replace(/&(amp|lt|gt|quot|nbsp);/g, (_, e: string) => ENTITIES[e]!);
const attrsOf = (tag: string): Record<string, string> =>
  Object.fromEntries([...tag.matchAll(/([\w-]+)="([^"]*)"/g)].map(([, k, v]) => [k!, textOf(v!)]));

interface Row {
  /** The first cell's text. */
  name: string;
  link: Record<string, string>;
  size: string;
  sizeTitle: string | undefined;
  time: Record<string, string> | undefined;
  timeText: string;
}

/** The rows of the table's body in the DOM Chromium built. */
function rowsOf(dom: string): Row[] {
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(dom);
  expect(body, dom).not.toBeNull();
  return [...body![1]!.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map(([, tr]) => {
    const cells = [...tr!.matchAll(/<td([^>]*)>([\s\S]*?)<\/td>/g)];
    const cell = (i: number) => cells[i]?.[2] ?? "";
    const link = /<a ([^>]*)>/.exec(cell(0));
    const time = /<time ([^>]*)>/.exec(cell(2));
    return {
      name: textOf(cell(0)),
      link: link ? attrsOf(link[1]!) : {},
      size: textOf(cell(1)),
      sizeTitle: attrsOf(cells[1]?.[1] ?? "").title,
      time: time ? attrsOf(time[1]!) : undefined,
      timeText: textOf(cell(2)),
    };
  });
}

/** What the page is made of; Chromium escapes "<" in text and attribute values alike. */
const PAGE_ELEMENTS = [
  "a",
  "body",
  "h1",
  "head",
  "html",
  "meta",
  "style",
  "table",
  "tbody",
  "td",
  "th",
  "thead",
  "time",
  "title",
  "tr",
];

function expectNothingInjected(dom: string): void {
  const elements = new Set([...dom.matchAll(/<([a-zA-Z][\w-]*)/g)].map((m) => m[1]!.toLowerCase()));
  expect([...elements].sort()).toEqual(PAGE_ELEMENTS);
  expect(dom).not.toContain("<!--");
}

const el = (node: Tree, name: string): Tree[] =>
  node.children.filter((c): c is Tree => typeof c !== "string" && c.el === `{}${name}`);

/**
 * The page as sent parses as XML (every tag closed and nested right) into html > head + body,
 * with the table's rows in tbody; answers the rows' cells as text.
 */
function wellFormed(html: string): string[][] {
  const DOCTYPE = "<!DOCTYPE html>\n";
  expect(html.startsWith(DOCTYPE)).toBe(true);
  const doc = tree(html.slice(DOCTYPE.length));
  expect(doc.el).toBe("{}html");
  expect(doc.attrs["{}lang"]).toBe("en");
  const [head] = el(doc, "head");
  const [body] = el(doc, "body");
  expect(el(head!, "meta").some((m) => m.attrs["{}charset"] === "utf-8")).toBe(true);
  expect(el(head!, "title")).toHaveLength(1);
  const [table] = el(body!, "table");
  expect(el(table!, "thead")).toHaveLength(1);
  const [tbody] = el(table!, "tbody");
  const text = (n: Tree | string): string =>
    typeof n === "string" ? n : n.children.map(text).join("");
  return el(tbody!, "tr").map((tr) => el(tr, "td").map(text));
}

describe("the index of a folder on a Cloudreve drive, in Chromium", () => {
  const fx = useGateway();
  // Cloudreve refuses \ / : * ? " < > | in names; everything else awkward is here.
  const FOLDERS = ["Zebra", "alpha & omega", "日本語", "100% #1", "empty"];
  const FILES: [string, number][] = [
    ["File 1.txt", 3],
    ["file 2.txt", 1536],
    ["file 10.txt", 0],
    ["&lt;b&gt;not bold&amp;c.txt", 1],
    ["Tom & Jerry's.txt", 1],
    ["hash #tag; 50% off+more=@,$.txt", 1],
    ["naïve café ✓ 🎵.txt", 1],
    ["big.bin", 1.5 * 1024 * 1024],
  ];
  beforeAll(async () => {
    for (const name of FOLDERS)
      expect((await raw(fx.url, "MKCOL", `/${enc(name)}`)).status).toBe(201);
    for (const [name, size] of FILES) {
      const r = await raw(fx.url, "PUT", `/${enc(name)}`, { body: Buffer.alloc(size, 120) });
      expect(r.status, name).toBe(201);
    }
    const inner = await raw(fx.url, "PUT", `/${enc("alpha & omega")}/inner.txt`, { body: "x" });
    expect(inner.status).toBe(201);
  });

  it("lists folders first, then files, by name as people read it; every name as text", async () => {
    const rows = rowsOf(await chromium(`${fx.url}/`, "--dump-dom"));
    expect(rows.map((r) => r.name)).toEqual([
      "100% #1/",
      "alpha & omega/",
      "empty/",
      "Zebra/",
      "日本語/",
      "&lt;b&gt;not bold&amp;c.txt",
      "big.bin",
      "File 1.txt",
      "file 2.txt",
      "file 10.txt",
      "hash #tag; 50% off+more=@,$.txt",
      "naïve café ✓ 🎵.txt",
      "Tom & Jerry's.txt",
    ]);
    // Each link leads to its member: the browser resolves it against the page to the right URL.
    for (const row of rows) {
      const href = row.link.href!;
      expect(href.startsWith("/"), href).toBe(true);
      const name = row.name.replace(/\/$/, "");
      expect(decodeURIComponent(href), href).toBe(`/${name}${row.name.endsWith("/") ? "/" : ""}`);
      expect(new URL(href, fx.url).pathname).toBe(href); // nothing a URL parser would rewrite
      expect(row.time?.datetime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      expect(row.timeText).toBe(row.time!.datetime!.replace("T", " ").replace("Z", " UTC"));
    }
  });

  it("sizes are human-readable, with the exact bytes in the title; folders have none", async () => {
    const rows = rowsOf(await chromium(`${fx.url}/`, "--dump-dom"));
    const size = (name: string) => {
      const row = rows.find((r) => r.name === name)!;
      return [row.size, row.sizeTitle];
    };
    expect(size("File 1.txt")).toEqual(["3 B", "3 bytes"]);
    expect(size("file 2.txt")).toEqual(["1.5 KiB", "1536 bytes"]);
    expect(size("file 10.txt")).toEqual(["0 B", "0 bytes"]);
    expect(size("big.bin")).toEqual(["1.5 MiB", "1572864 bytes"]);
    expect(size("Zebra/")).toEqual(["—", undefined]);
  });

  it("no markup gets in from a name, and the root has no parent link", async () => {
    const dom = await chromium(`${fx.url}/`, "--dump-dom");
    expectNothingInjected(dom);
    expect(rowsOf(dom).some((r) => r.link.rel === "up")).toBe(false);
    expect(textOf(/<h1>([\s\S]*?)<\/h1>/.exec(dom)![1]!)).toBe("Index of /");
  });

  it("a subfolder: title, a parent link first, then its members", async () => {
    const dom = await chromium(`${fx.url}/${enc("alpha & omega")}/`, "--dump-dom");
    expect(textOf(/<title>([\s\S]*?)<\/title>/.exec(dom)![1]!)).toBe("Index of /alpha & omega/");
    const rows = rowsOf(dom);
    expect(rows.map((r) => [r.name, r.link.href, r.link.rel])).toEqual([
      ["Parent folder", "/", "up"],
      ["inner.txt", "/alpha%20&%20omega/inner.txt", undefined],
    ]);
    const empty = rowsOf(await chromium(`${fx.url}/empty/`, "--dump-dom"));
    expect(empty.map((r) => r.name)).toEqual(["Parent folder", "This folder is empty."]);
  });

  it("renders: a screenshot in test-artifacts/", async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    const file = join(ARTIFACTS, "browser-index.png");
    await rm(file, { force: true });
    await chromium(`${fx.url}/`, "--window-size=1024,768", `--screenshot=${file}`);
    const png = await readFile(file);
    expect(png.subarray(0, 8).toString("hex")).toBe("89504e470d0a1a0a");
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([1024, 768]); // IHDR
    // A blank page of that size compresses to about 3 KB; text and rules make it far larger.
    expect(png.length).toBeGreaterThan(8 * 1024);
  });

  it("the page as sent is well-formed; its style is the one the CSP lets in", async () => {
    const r = await raw(fx.url, "GET", "/");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("text/html; charset=utf-8");
    const cells = wellFormed(r.text);
    expect(cells).toHaveLength(FOLDERS.length + FILES.length);
    expect(cells.every((c) => c.length === 3)).toBe(true);
    const style = /<style>([^<]*)<\/style>/.exec(r.text)![1]!;
    const hash = createHash("sha256").update(style).digest("base64");
    const csp = String(r.headers["content-security-policy"]);
    expect(csp).toContain(`style-src 'sha256-${hash}'`);
    expect(csp).toContain("default-src 'none'");
    expect(r.text).not.toMatch(/<script|<link|<img|\bsrc=/);
  });

  it("HEAD answers the same headers without a body", async () => {
    const get = await raw(fx.url, "GET", "/");
    const head = await raw(fx.url, "HEAD", "/");
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    delete get.headers.date;
    delete head.headers.date;
    expect(head.headers).toEqual(get.headers);
    expect(Number(head.headers["content-length"])).toBe(get.body.length);
  });
});

describe("names Cloudreve refuses, under a base URL and a user's root folder", () => {
  // No name is trusted: a stub drive holds what Cloudreve would refuse to create.
  const ROOT = "/home/kim";
  const FOLDER = "<!-- <script>alert(1)";
  const FILES = [
    '<img src=x onerror="alert(1)">.txt',
    `"double" and 'single'.txt`,
    "what?.txt",
    "a>b|c*d:e.txt",
    "back\\slash.txt",
    "bell\u0007.txt",
  ];
  const MTIME = Date.UTC(2024, 0, 2, 3, 4, 5);
  const member = (path: string, isDir: boolean): Member => ({
    path,
    name: path.slice(path.lastIndexOf("/") + 1),
    isDir,
    size: isDir ? 0 : 7,
    etag: "e",
    mtimeMs: MTIME,
    ctimeMs: MTIME,
    uploading: false,
  });
  const folders: Record<string, Member[]> = {
    [ROOT]: [member(`${ROOT}/${FOLDER}`, true), ...FILES.map((n) => member(`${ROOT}/${n}`, false))],
    [`${ROOT}/${FOLDER}`]: [member(`${ROOT}/${FOLDER}/inner.txt`, false)],
  };
  // A folder page needs stat and list alone.
  const drive: Pick<FileSystem, "stat" | "list"> = {
    async stat(path) {
      if (folders[path]) return member(path, true);
      const found = Object.values(folders)
        .flat()
        .find((m) => m.path === path);
      if (!found) throw new NotFound(path);
      return found;
    },
    async list(path) {
      return folders[path] ?? [];
    },
  };
  const dav = useDavOver(drive as FileSystem, new MemoryLockSystem(), {
    baseUrl: "/dav",
    root: ROOT,
    readOnly: true,
  });

  it("each name shows as text and links to itself under the dav.base URL; nothing gets in", async () => {
    const dom = await chromium(`${dav.base}/dav/`, "--dump-dom");
    expectNothingInjected(dom);
    expect(textOf(/<h1>([\s\S]*?)<\/h1>/.exec(dom)![1]!)).toBe("Index of /dav/");
    const rows = rowsOf(dom);
    // The user's root has no parent link; a control character shows as U+FFFD.
    const shown = (name: string) => name.replace("\u0007", "\uFFFD");
    expect(rows[0]!.name).toBe(`${FOLDER}/`);
    expect(
      rows
        .slice(1)
        .map((r) => r.name)
        .sort(),
    ).toEqual(FILES.map(shown).sort());
    for (const row of rows) {
      const href = row.link.href!;
      expect(href).toMatch(/^\/dav\/[^?#"<>\\ ]+$/);
      const name = decodeURIComponent(href.slice("/dav/".length).replace(/\/$/, ""));
      expect(shown(name)).toBe(row.name.replace(/\/$/, ""));
      expect(row.time).toEqual({ datetime: "2024-01-02T03:04:05Z" });
      expect(row.timeText).toBe("2024-01-02 03:04:05 UTC");
    }
    wellFormed((await raw(dav.base, "GET", "/dav/")).text);
  });

  it("inside a folder so named: its title, and a parent link to the user's root", async () => {
    const url = `${dav.base}/dav/${enc(FOLDER)}/`;
    const dom = await chromium(url, "--dump-dom");
    expectNothingInjected(dom);
    expect(textOf(/<title>([\s\S]*?)<\/title>/.exec(dom)![1]!)).toBe(`Index of /dav/${FOLDER}/`);
    expect(rowsOf(dom).map((r) => [r.name, r.link.href, r.link.rel])).toEqual([
      ["Parent folder", "/dav/", "up"],
      ["inner.txt", `/dav/${enc(FOLDER)}/inner.txt`, undefined],
    ]);
  });
});
