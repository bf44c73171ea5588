import { beforeAll, describe, expect, it } from "vitest";
import { decodeId, IdType } from "../../src/emulator/hashid.js";
import { Api, myUri, useEmulator, type CrFile } from "../helpers/emulator.js";

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const MY_CAPABILITY = "w8edAQ==";
const TRASH_CAPABILITY = "AMIK";

interface Pagination {
  page: number;
  page_size: number;
  total_items?: number;
  next_token?: string;
  is_cursor?: boolean;
}
interface ListData {
  files: CrFile[];
  parent: CrFile;
  pagination: Pagination;
  props: { capability: string; max_page_size: number };
  storage_policy?: { id: string; name: string; type: string; max_size: number };
}

type Query = Record<string, string | number>;

function list(api: Api, uri: string, query: Query = {}) {
  return api.call<ListData>("GET", "/file", { query: { uri, ...query } });
}

async function mustList(api: Api, uri: string, query: Query = {}): Promise<ListData> {
  const r = await list(api, uri, query);
  expect(r.status).toBe(200);
  expect(r.json.code, r.text.slice(0, 300)).toBe(0);
  return r.json.data!;
}

async function mustCreate(api: Api, uri: string, type: "file" | "folder" = "folder") {
  const r = await api.call<CrFile>("POST", "/file/create", { json: { uri, type } });
  expect(r.json.code, `create ${uri}: ${r.text}`).toBe(0);
  return r.json.data!;
}

async function put(api: Api, uri: string, size: number) {
  const r = await api.call<CrFile>("PUT", "/file/content", {
    query: { uri },
    body: new Uint8Array(size).fill(120),
    headers: { "content-type": "application/octet-stream" },
  });
  expect(r.json.code, `put ${uri}: ${r.text}`).toBe(0);
  return r.json.data!;
}

async function seed(api: Api, uri: string, files: number, folders = 0, size = 1) {
  const r = await api.call("POST", "/__emulator/seed", { json: { uri, files, folders, size } });
  expect(r.status).toBe(200);
  expect(r.json).toEqual({ files, folders });
}

async function advance(api: Api, seconds: number) {
  const r = await api.call("POST", "/__emulator/clock", { json: { advanceSeconds: seconds } });
  expect(r.status).toBe(200);
}

/** Iterates a cursor listing, checking the per-page cursor invariants. */
async function walkCursor(api: Api, uri: string, pageSize: number, query: Query = {}) {
  const pages: CrFile[][] = [];
  let token: string | undefined;
  for (let guard = 0; guard < 1000; guard++) {
    const q: Query = { page_size: pageSize, ...query };
    if (token !== undefined) q["next_page_token"] = token;
    const d = await mustList(api, uri, q);
    expect(d.pagination.is_cursor).toBe(true);
    expect(d.pagination.page).toBe(0);
    expect(d.pagination.page_size).toBe(pageSize);
    pages.push(d.files);
    if (!("next_token" in d.pagination)) break;
    expect(typeof d.pagination.next_token).toBe("string");
    expect(d.pagination.next_token).not.toBe("");
    token = d.pagination.next_token;
  }
  return pages;
}

function seededNames(files: number, folders: number): string[] {
  const pad = (i: number) => String(i).padStart(5, "0");
  return [
    ...Array.from({ length: folders }, (_, i) => `folder-${pad(i)}`),
    ...Array.from({ length: files }, (_, i) => `file-${pad(i)}.bin`),
  ];
}

describe("§4.2 ordering: folders first, then order_by/order_direction", () => {
  const ctx = useEmulator();
  const dir = myUri("order");

  // name order:    a-second, b-third, c-first
  // created order: c-first, a-second, b-third
  // updated order: c-first, b-third, a-second (a-second rewritten last)
  // size order:    b-third (1), a-second (4), c-first (9)
  // folders: "zf" created before "af"
  beforeAll(async () => {
    await mustCreate(ctx.api, `${dir}/zf`);
    await advance(ctx.api, 10);
    await mustCreate(ctx.api, `${dir}/af`);
    await advance(ctx.api, 10);
    await put(ctx.api, `${dir}/c-first`, 9);
    await advance(ctx.api, 10);
    await put(ctx.api, `${dir}/a-second`, 2);
    await advance(ctx.api, 10);
    await put(ctx.api, `${dir}/b-third`, 1);
    await advance(ctx.api, 10);
    await put(ctx.api, `${dir}/a-second`, 4);
    const d = await mustList(ctx.api, dir);
    expect(d.files).toHaveLength(5);
  });

  const cases: [string, string, string[]][] = [
    ["name", "asc", ["af", "zf", "a-second", "b-third", "c-first"]],
    ["name", "desc", ["zf", "af", "c-first", "b-third", "a-second"]],
    ["size", "asc", ["zf", "af", "b-third", "a-second", "c-first"]],
    ["size", "desc", ["af", "zf", "c-first", "a-second", "b-third"]],
    ["created_at", "asc", ["zf", "af", "c-first", "a-second", "b-third"]],
    ["created_at", "desc", ["af", "zf", "b-third", "a-second", "c-first"]],
    ["updated_at", "asc", ["zf", "af", "c-first", "b-third", "a-second"]],
    ["updated_at", "desc", ["af", "zf", "a-second", "b-third", "c-first"]],
  ];

  for (const [orderBy, direction, expected] of cases) {
    it(`§4.1/§4.2 order_by=${orderBy} order_direction=${direction}`, async () => {
      const d = await mustList(ctx.api, dir, { order_by: orderBy, order_direction: direction });
      const got = d.files.map((f) => f.name);
      if (orderBy === "size") {
        // folders all have size 0: their relative order is the id tie-breaker, whichever way
        expect(got.slice(0, 2).sort()).toEqual(["af", "zf"]);
        expect(got.slice(2)).toEqual(expected.slice(2));
      } else {
        expect(got).toEqual(expected);
      }
      expect(d.files.slice(0, 2).every((f) => f.type === 1)).toBe(true);
      expect(d.files.slice(2).every((f) => f.type === 0)).toBe(true);
    });
  }

  it("§4.1 an unknown order_direction sorts ascending", async () => {
    const d = await mustList(ctx.api, dir, { order_by: "name", order_direction: "sideways" });
    expect(d.files.map((f) => f.name)).toEqual(["af", "zf", "a-second", "b-third", "c-first"]);
  });

  it("§4.4 sizes: files report their bytes, folders 0", async () => {
    const d = await mustList(ctx.api, dir, { order_by: "name", order_direction: "asc" });
    expect(d.files.map((f) => f.size)).toEqual([0, 0, 4, 1, 9]);
  });
});

describe("§4.1/§4.2 page size and cursor pagination", () => {
  const ctx = useEmulator();

  it("§4.1 page_size absent → 100", async () => {
    await seed(ctx.api, myUri("p150"), 150);
    const d = await mustList(ctx.api, myUri("p150"));
    expect(d.pagination.page_size).toBe(100);
    expect(d.files).toHaveLength(100);
    expect(d.pagination.is_cursor).toBe(true);
    expect(typeof d.pagination.next_token).toBe("string");
  });

  it("§4.1 page_size above max_page_size is clamped to 2000, not rejected", async () => {
    const d = await mustList(ctx.api, myUri("p150"), { page_size: 5000 });
    expect(d.pagination.page_size).toBe(2000);
    expect(d.props.max_page_size).toBe(2000);
    expect(d.files).toHaveLength(150);
    expect(d.pagination).not.toHaveProperty("next_token");
  });

  it("§4.2 cursor mode: every entry exactly once, folders first, next_token absent on the last page", async () => {
    await seed(ctx.api, myUri("cur"), 250, 30);
    const pages = await walkCursor(ctx.api, myUri("cur"), 100, { order_by: "name" });
    expect(pages.map((p) => p.length)).toEqual([100, 100, 80]);
    const all = pages.flat();
    const names = all.map((f) => f.name);
    expect(new Set(names).size).toBe(280);
    expect(names).toEqual(seededNames(250, 30));
    expect(all.slice(0, 30).every((f) => f.type === 1)).toBe(true);
    expect(all.slice(30).every((f) => f.type === 0 && f.size === 1)).toBe(true);
    expect(new Set(all.map((f) => f.id)).size).toBe(280);
  });

  it("§4.2 cursor mode descending walks the same entries in reverse per group", async () => {
    const pages = await walkCursor(ctx.api, myUri("cur"), 64, {
      order_by: "name",
      order_direction: "desc",
    });
    const names = pages.flat().map((f) => f.name);
    const folders = seededNames(0, 30).reverse();
    const files = seededNames(250, 0).reverse();
    expect(names).toEqual([...folders, ...files]);
  });

  it("§4.2 cursor mode: a page boundary exactly at the end leaves no next_token", async () => {
    await seed(ctx.api, myUri("exact"), 200);
    const pages = await walkCursor(ctx.api, myUri("exact"), 100);
    expect(pages.map((p) => p.length)).toEqual([100, 100]);
  });

  it("§4.2 cursor mode ignores page and reports page 0", async () => {
    const first = await mustList(ctx.api, myUri("cur"), { page_size: 10, order_by: "name" });
    const paged = await mustList(ctx.api, myUri("cur"), {
      page_size: 10,
      page: 3,
      order_by: "name",
    });
    expect(paged.pagination.page).toBe(0);
    expect(paged.files.map((f) => f.id)).toEqual(first.files.map((f) => f.id));
  });

  it("§4.2 an empty folder: files [] and no next_token", async () => {
    await mustCreate(ctx.api, myUri("empty"));
    const d = await mustList(ctx.api, myUri("empty"));
    expect(d.files).toEqual([]);
    expect(d.pagination).not.toHaveProperty("next_token");
    expect(d.pagination.is_cursor).toBe(true);
  });
});

describe("§4.1 a small max_page_size", () => {
  const ctx = useEmulator({ maxPageSize: 50 });

  it("§4.1 page_size is clamped to the configured max_page_size", async () => {
    await seed(ctx.api, myUri("s120"), 120);
    const d = await mustList(ctx.api, myUri("s120"), { page_size: 1000 });
    expect(d.pagination.page_size).toBe(50);
    expect(d.props.max_page_size).toBe(50);
    expect(d.files).toHaveLength(50);
    expect(typeof d.pagination.next_token).toBe("string");
  });

  it("§4.2 iterating at the clamped size lists everything once", async () => {
    const pages = await walkCursor(ctx.api, myUri("s120"), 50, { order_by: "name" });
    expect(pages.map((p) => p.length)).toEqual([50, 50, 20]);
    expect(pages.flat().map((f) => f.name)).toEqual(seededNames(120, 0));
  });
});

describe("§4.2 offset pagination", () => {
  const ctx = useEmulator({ pagination: "offset" });

  it("§4.2 offset mode: total_items, zero-based page, no next_token", async () => {
    await seed(ctx.api, myUri("off"), 25, 3);
    const seen: string[] = [];
    for (let page = 0; page < 3; page++) {
      const d = await mustList(ctx.api, myUri("off"), {
        page,
        page_size: 10,
        order_by: "name",
        order_direction: "asc",
      });
      expect(d.pagination.page).toBe(page);
      expect(d.pagination.page_size).toBe(10);
      expect(d.pagination.total_items).toBe(28);
      expect(d.pagination.is_cursor ?? false).toBe(false);
      expect(d.pagination).not.toHaveProperty("next_token");
      expect(d.files).toHaveLength(page < 2 ? 10 : 8);
      seen.push(...d.files.map((f) => f.name));
    }
    expect(seen).toEqual(seededNames(25, 3));
  });

  it("§4.2 offset mode: page 0 is the first page (zero-based)", async () => {
    const p0 = await mustList(ctx.api, myUri("off"), { page: 0, page_size: 5, order_by: "name" });
    const absent = await mustList(ctx.api, myUri("off"), { page_size: 5, order_by: "name" });
    expect(p0.files.map((f) => f.name)).toEqual(seededNames(0, 3).concat(seededNames(2, 0)));
    expect(absent.files.map((f) => f.id)).toEqual(p0.files.map((f) => f.id));
  });
});

describe("§4.3 list response", () => {
  const ctx = useEmulator();

  it("§4.3 listing a file → 40016", async () => {
    await put(ctx.api, myUri("lr/file.txt"), 3);
    const r = await list(ctx.api, myUri("lr/file.txt"));
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40016);
  });

  it("§4.3 a missing folder → 40016 (also below a missing parent)", async () => {
    expect((await list(ctx.api, myUri("lr/missing"))).json.code).toBe(40016);
    expect((await list(ctx.api, myUri("nowhere/at/all"))).json.code).toBe(40016);
    expect((await list(ctx.api, myUri("lr/file.txt/below"))).json.code).toBe(40016);
  });

  it("§4.3 parent is always present and describes the listed folder", async () => {
    const folder = await mustCreate(ctx.api, myUri("lr/sub dir"));
    const d = await mustList(ctx.api, myUri("lr/sub dir"));
    expect(d.parent.id).toBe(folder.id);
    // §0: file responses encode a folder's id with the file tag too.
    expect(decodeId(folder.id, IdType.file)).toBeDefined();
    expect(decodeId(folder.id, IdType.folder)).toBeUndefined();
    expect(d.parent.name).toBe("sub dir");
    expect(d.parent.type).toBe(1);
    expect(d.parent.path).toBe("cloudreve://my/lr/sub%20dir");
    expect(d.files).toEqual([]);
  });

  it("§4.3/§8.1 every file's capability equals props.capability (my = w8edAQ==)", async () => {
    await mustCreate(ctx.api, myUri("lr/f1"));
    const d = await mustList(ctx.api, myUri("lr"));
    expect(d.props.capability).toBe(MY_CAPABILITY);
    expect(d.files.length).toBeGreaterThanOrEqual(3);
    for (const f of d.files) expect(f.capability).toBe(d.props.capability);
    expect(d.parent.capability).toBe(MY_CAPABILITY);
  });

  it("§4.3 props.max_page_size and storage_policy for my folders", async () => {
    const d = await mustList(ctx.api, myUri("lr"));
    expect(d.props.max_page_size).toBe(2000);
    expect(d.storage_policy).toBeDefined();
    expect(typeof d.storage_policy!.id).toBe("string");
    expect(d.storage_policy!.id.length).toBeGreaterThan(0);
    expect(typeof d.storage_policy!.name).toBe("string");
    expect(d.storage_policy!.type).toBe("local");
    const root = await mustList(ctx.api, "cloudreve://my");
    expect(root.storage_policy?.type).toBe("local");
  });

  it("§4.3 mixed_type, context_hint and order options have the documented shapes", async () => {
    const r = await list(ctx.api, myUri("lr"));
    expect(r.json.code).toBe(0);
    const raw = r.json.data as unknown as Record<string, unknown>;
    expect(raw["mixed_type"]).toBe(false);
    expect(raw).toHaveProperty("context_hint");
    const hint = raw["context_hint"];
    if (hint !== null) expect(hint).toMatch(/^[0-9a-f-]{36}$/i);
    const props = raw["props"] as Record<string, unknown>;
    const ob = props["order_by_options"];
    if (ob !== null) expect(ob).toEqual(["name", "size", "updated_at", "created_at"]);
    const od = props["order_direction_options"];
    if (od !== null) expect(od).toEqual(["asc", "desc"]);
  });

  it("§4.4 file objects carry the documented fields", async () => {
    const d = await mustList(ctx.api, myUri("lr"), { order_by: "name" });
    const file = d.files.find((f) => f.name === "file.txt")!;
    const folder = d.files.find((f) => f.name === "f1")!;
    for (const f of [file, folder]) {
      expect(typeof f.id).toBe("string");
      expect(f.id.length).toBeGreaterThan(0);
      expect(f.created_at).toMatch(RFC3339);
      expect(f.updated_at).toMatch(RFC3339);
      expect(f).toHaveProperty("metadata");
      expect(f.owned).toBe(true);
      expect(typeof f.primary_entity).toBe("string");
      expect(f.primary_entity.length).toBeGreaterThan(0);
      expect(f).not.toHaveProperty("permission");
    }
    expect(file.type).toBe(0);
    expect(file.size).toBe(3);
    expect(file.path).toBe("cloudreve://my/lr/file.txt");
    expect(folder.type).toBe(1);
    expect(folder.size).toBe(0);
    expect(folder.path).toBe("cloudreve://my/lr/f1");
    expect(file.primary_entity).not.toBe(folder.primary_entity);
  });

  it("§4.3 the root listing's parent is the root folder", async () => {
    const d = await mustList(ctx.api, "cloudreve://my");
    expect(d.parent.path).toBe("cloudreve://my/");
    expect(d.parent.name).toBe("");
    expect(d.parent.type).toBe(1);
    expect(d.parent.id.length).toBeGreaterThan(0);
    expect(d.files.map((f) => f.name)).toContain("lr");
  });

  it("§4.3/§5.6 trash root: zero-valued parent, trash capability", async () => {
    await put(ctx.api, myUri("lr/trash-me.txt"), 2);
    const del = await ctx.api.call("DELETE", "/file", {
      json: { uris: [myUri("lr/trash-me.txt")] },
    });
    expect(del.json.code).toBe(0);
    const d = await mustList(ctx.api, "cloudreve://trash");
    expect(d.parent).toBeDefined();
    expect(d.parent.id).toBe("");
    expect(d.parent.name).toBe("");
    expect(d.props.capability).toBe(TRASH_CAPABILITY);
    expect(Array.isArray(d.files)).toBe(true);
    expect(d.files.map((f) => f.name)).toContain("trash-me.txt");
    for (const f of d.files) expect(f.capability).toBe(TRASH_CAPABILITY);
  });

  it("§4.3 anonymous listing of my → 401", async () => {
    const anon = new Api(ctx.emu.url);
    const r = await list(anon, myUri("lr"));
    expect(r.json.code).toBe(401);
  });
});
