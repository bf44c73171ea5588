import { describe, expect, it } from "vitest";
import { Api, myUri, useEmulator } from "../helpers/emulator.js";

interface FileObj {
  type: number;
  id: string;
  name: string;
  path?: string;
  size: number;
}
interface ListData {
  files: FileObj[];
  parent: FileObj;
  pagination: { page: number; page_size: number; is_cursor?: boolean; next_token?: string };
}

function list(api: Api, uri: string, query: Record<string, string | number> = {}) {
  return api.call<ListData>("GET", "/file", { query: { uri, page_size: 500, ...query } });
}

async function create(api: Api, uri: string, type: "file" | "folder" = "folder") {
  return api.call<FileObj>("POST", "/file/create", { json: { uri, type } });
}

async function mustCreate(api: Api, uri: string, type: "file" | "folder" = "folder") {
  const r = await create(api, uri, type);
  expect(r.json.code, `create ${uri}: ${r.text}`).toBe(0);
  return r.json.data!;
}

function names(d: ListData | undefined): string[] {
  return (d?.files ?? []).map((f) => f.name).sort();
}

describe("§3.2 URI parsing", () => {
  const ctx = useEmulator();

  it("§3.2 a wrong scheme → 40001", async () => {
    for (const uri of ["http://my/", "cloudreve2://my", "my/folder", "/my"]) {
      const r = await list(ctx.api, uri);
      expect(r.status, uri).toBe(200);
      expect(r.json.code, uri).toBe(40001);
    }
  });

  it("§3.2 a lone % or bad escape → 40001", async () => {
    for (const uri of ["cloudreve://my/a%", "cloudreve://my/%zz", "cloudreve://my/%"]) {
      const r = await list(ctx.api, uri);
      expect(r.json.code, uri).toBe(40001);
    }
  });

  it("§3.2 cloudreve://my, cloudreve://my/ and cloudreve://MY are the same root", async () => {
    await mustCreate(ctx.api, myUri("root-marker"));
    const a = await list(ctx.api, "cloudreve://my");
    const b = await list(ctx.api, "cloudreve://my/");
    const c = await list(ctx.api, "cloudreve://MY");
    for (const r of [a, b, c]) {
      expect(r.json.code).toBe(0);
      expect(r.json.data!.parent.path).toBe("cloudreve://my/");
    }
    expect(b.json.data!.parent.id).toBe(a.json.data!.parent.id);
    expect(c.json.data!.parent.id).toBe(a.json.data!.parent.id);
    expect(names(a.json.data)).toContain("root-marker");
    expect(names(b.json.data)).toEqual(names(a.json.data));
    expect(names(c.json.data)).toEqual(names(a.json.data));
  });

  it("§3.1 the filesystem host is case-insensitive below the root too", async () => {
    const f = await mustCreate(ctx.api, myUri("case-host/child"));
    const r = await list(ctx.api, "cloudreve://My/case-host");
    expect(r.json.code).toBe(0);
    expect(r.json.data!.parent.path).toBe("cloudreve://my/case-host");
    expect(r.json.data!.files.map((x) => x.id)).toEqual([f.id]);
  });

  it("§3.4 root folder: path cloudreve://my/ and name ''", async () => {
    const r = await list(ctx.api, "cloudreve://my");
    expect(r.json.code).toBe(0);
    const p = r.json.data!.parent;
    expect(p.path).toBe("cloudreve://my/");
    expect(p.name).toBe("");
    expect(p.type).toBe(1);
    const child = r.json.data!.files.find((f) => f.name === "root-marker");
    expect(child?.path).toBe("cloudreve://my/root-marker");
  });

  it("§3.2 .. cannot escape the root", async () => {
    const root = await list(ctx.api, "cloudreve://my");
    for (const uri of [
      "cloudreve://my/..",
      "cloudreve://my/../../..",
      "cloudreve://my/a/../../..",
    ]) {
      const r = await list(ctx.api, uri);
      expect(r.json.code, uri).toBe(0);
      expect(r.json.data!.parent.path, uri).toBe("cloudreve://my/");
      expect(r.json.data!.parent.id, uri).toBe(root.json.data!.parent.id);
    }
  });

  it("§3.2 . and .. are resolved inside the path", async () => {
    const outer = await mustCreate(ctx.api, myUri("dots/inner"));
    const r = await list(ctx.api, "cloudreve://my/dots/./inner/../../dots/");
    expect(r.json.code).toBe(0);
    expect(r.json.data!.parent.name).toBe("dots");
    expect(r.json.data!.files.map((f) => f.id)).toEqual([outer.id]);
  });

  it("§3.2 // collapses", async () => {
    const leaf = await mustCreate(ctx.api, myUri("slashes/a/b"));
    const r = await list(ctx.api, "cloudreve://my/slashes//a");
    expect(r.json.code).toBe(0);
    expect(r.json.data!.parent.name).toBe("a");
    expect(r.json.data!.parent.path).toBe("cloudreve://my/slashes/a");
    expect(r.json.data!.files.map((f) => f.id)).toEqual([leaf.id]);
    const r2 = await list(ctx.api, "cloudreve://my//slashes///a/");
    expect(r2.json.code).toBe(0);
    expect(r2.json.data!.parent.path).toBe("cloudreve://my/slashes/a");
  });

  it("§3.2 one trailing slash is trimmed", async () => {
    await mustCreate(ctx.api, myUri("trail/x"));
    const a = await list(ctx.api, "cloudreve://my/trail");
    const b = await list(ctx.api, "cloudreve://my/trail/");
    expect(a.json.code).toBe(0);
    expect(b.json.code).toBe(0);
    expect(b.json.data!.parent.id).toBe(a.json.data!.parent.id);
    expect(b.json.data!.parent.path).toBe("cloudreve://my/trail");
  });

  it("§3.2 + is a literal plus, not a space", async () => {
    const f = await mustCreate(ctx.api, "cloudreve://my/plus/c+d");
    expect(f.name).toBe("c+d");
    expect(f.path).toBe("cloudreve://my/plus/c%2Bd");
    const viaEncoded = await list(ctx.api, "cloudreve://my/plus/c%2Bd");
    expect(viaEncoded.json.code).toBe(0);
    expect(viaEncoded.json.data!.parent.id).toBe(f.id);
    const space = await list(ctx.api, "cloudreve://my/plus/c%20d");
    expect(space.json.code).toBe(40016);
  });

  it("§3.2 an unencoded ? starts a search under the folder", async () => {
    await mustCreate(ctx.api, myUri("srch/inner/needle.txt"), "file");
    await mustCreate(ctx.api, myUri("srch/other.txt"), "file");
    const r = await ctx.api.call<ListData>("GET", "/file", {
      query: { uri: "cloudreve://my/srch?name=needle" },
    });
    expect(r.json.code).toBe(0);
    const found = r.json.data!.files.map((f) => f.name);
    expect(found).toContain("needle.txt");
    expect(found).not.toContain("other.txt");
    expect(found).not.toContain("inner");
    expect(r.json.data!.pagination.is_cursor).toBe(true);
  });

  it("§3.2 an encoded %3F is part of the name (not a search)", async () => {
    const r = await list(ctx.api, "cloudreve://my/srch%3Fname=needle");
    expect(r.json.code).toBe(40016);
  });

  it("§3.2 an unencoded # is a fragment and truncates the path", async () => {
    const plain = await mustCreate(ctx.api, myUri("hashdir/h1"), "file");
    const hashed = await mustCreate(ctx.api, myUri("hashdir#frag/h2"), "file");
    const a = await list(ctx.api, "cloudreve://my/hashdir#frag");
    expect(a.json.code).toBe(0);
    expect(a.json.data!.parent.name).toBe("hashdir");
    expect(a.json.data!.files.map((f) => f.id)).toEqual([plain.id]);
    const b = await list(ctx.api, "cloudreve://my/hashdir%23frag");
    expect(b.json.code).toBe(0);
    expect(b.json.data!.parent.name).toBe("hashdir#frag");
    expect(b.json.data!.files.map((f) => f.id)).toEqual([hashed.id]);
  });
});

describe("§3.3 names round-trip and the server's path escaping", () => {
  const ctx = useEmulator();

  const cases: [string, string][] = [
    ["a b.txt", "a%20b.txt"],
    ["c+d", "c%2Bd"],
    ["中文.txt", "%E4%B8%AD%E6%96%87.txt"],
    ["x%y", "x%25y"],
    ["semi;colon,=&@$", "semi%3Bcolon%2C%3D%26%40%24"],
    ["hash#tag", "hash%23tag"],
    ["it's (a)!~-_.", "it's%20(a)!~-_."],
    ["a[b]{c}^`", "a%5Bb%5D%7Bc%7D%5E%60"],
    ["émoji 😀", "%C3%A9moji%20%F0%9F%98%80"],
  ];

  it("§3.3 created names come back with encodeURIComponent-style paths (uppercase hex)", async () => {
    for (const [name, escaped] of cases) {
      expect(encodeURIComponent(name)).toBe(escaped);
      const f = await mustCreate(ctx.api, myUri(`rt/${name}`), "file");
      expect(f.name, name).toBe(name);
      expect(f.path, name).toBe(`cloudreve://my/rt/${escaped}`);
    }
  });

  it("§3.3 listing shows the same names and paths", async () => {
    const r = await list(ctx.api, myUri("rt"));
    expect(r.json.code).toBe(0);
    const byName = new Map(r.json.data!.files.map((f) => [f.name, f]));
    for (const [name, escaped] of cases) {
      expect(byName.get(name)?.path, name).toBe(`cloudreve://my/rt/${escaped}`);
    }
    expect(r.json.data!.files).toHaveLength(cases.length);
  });

  it("§3.3 a returned path can be used as a URI again", async () => {
    const r = await list(ctx.api, myUri("rt"));
    for (const f of r.json.data!.files) {
      const info = await ctx.api.call<FileObj>("GET", "/file/info", { query: { uri: f.path! } });
      expect(info.json.code, f.name).toBe(0);
      expect(info.json.data!.name).toBe(f.name);
      expect(info.json.data!.id).toBe(f.id);
    }
  });

  it("§3.3 lowercase hex input is accepted and written back uppercase", async () => {
    const f = await mustCreate(ctx.api, "cloudreve://my/rt2/low%2bhex%c3%a9", "file");
    expect(f.name).toBe("low+hexé");
    expect(f.path).toBe("cloudreve://my/rt2/low%2Bhex%C3%A9");
  });

  it("§3.3 a nested folder path escapes every segment", async () => {
    const f = await mustCreate(ctx.api, myUri("rt3/a b/c&d/e f.txt"), "file");
    expect(f.path).toBe("cloudreve://my/rt3/a%20b/c%26d/e%20f.txt");
    const r = await list(ctx.api, myUri("rt3/a b"));
    expect(r.json.data!.parent.path).toBe("cloudreve://my/rt3/a%20b");
    expect(r.json.data!.files[0]?.path).toBe("cloudreve://my/rt3/a%20b/c%26d");
  });
});

describe("§3.4 name rules → 40052", () => {
  const ctx = useEmulator();

  it("§3.4 forbidden characters in an encoded segment → 40052", async () => {
    for (const ch of ["\\", ":", "*", "?", '"', "<", ">", "|"]) {
      const uri = `cloudreve://my/bad${encodeURIComponent(ch)}name`;
      const folder = await create(ctx.api, uri, "folder");
      expect(folder.status, ch).toBe(200);
      expect(folder.json.code, `folder with ${ch}`).toBe(40052);
      const file = await create(ctx.api, uri, "file");
      expect(file.json.code, `file with ${ch}`).toBe(40052);
    }
    const r = await list(ctx.api, "cloudreve://my");
    expect(r.json.data!.files.filter((f) => f.name.startsWith("bad"))).toEqual([]);
  });

  it("§3.4 names up to 255 bytes are fine, 256 bytes → 40052", async () => {
    expect((await create(ctx.api, myUri("a".repeat(255)))).json.code).toBe(0);
    expect((await create(ctx.api, myUri("b".repeat(256)))).json.code).toBe(40052);
  });

  it("§3.4 the limit counts UTF-8 bytes, not characters", async () => {
    // 85 × 3 bytes = 255 bytes; 86 × 3 bytes = 258 bytes (only 86 characters)
    expect((await create(ctx.api, myUri("中".repeat(85)), "file")).json.code).toBe(0);
    expect((await create(ctx.api, myUri("文".repeat(86)), "file")).json.code).toBe(40052);
  });

  it("§3.4/§5.3 rename to a name with / . .. or forbidden characters → 40052", async () => {
    const f = await mustCreate(ctx.api, myUri("victim.txt"), "file");
    for (const bad of ["a/b", ".", "..", "a:b", "x|y", "q?", "中".repeat(86)]) {
      const r = await ctx.api.call("POST", "/file/rename", {
        json: { uri: f.path, new_name: bad },
      });
      expect(r.json.code, JSON.stringify(bad)).toBe(40052);
    }
    const still = await ctx.api.call<FileObj>("GET", "/file/info", {
      query: { uri: myUri("victim.txt") },
    });
    expect(still.json.code).toBe(0);
    expect(still.json.data!.id).toBe(f.id);
  });

  it("§3.4 allowed oddities: leading/trailing spaces and dots are accepted", async () => {
    for (const name of [" lead", "trail ", "dots...", ".hidden"]) {
      const f = await create(ctx.api, myUri(`odd/${name}`), "file");
      expect(f.json.code, JSON.stringify(name)).toBe(0);
      expect(f.json.data!.name).toBe(name);
    }
  });

  it("§3.4 names are case-sensitive (SQLite default)", async () => {
    const a = await mustCreate(ctx.api, myUri("cs/Name"), "file");
    const b = await mustCreate(ctx.api, myUri("cs/name"), "file");
    expect(a.id).not.toBe(b.id);
    const r = await list(ctx.api, myUri("cs"));
    expect(names(r.json.data)).toEqual(["Name", "name"]);
  });
});

describe("§3.1 other users and anonymous access", () => {
  const OTHER = { email: "other@example.com", password: "other-pass" };
  const ctx = useEmulator({ extraUsers: [OTHER] });

  async function ids(): Promise<{ mine: string; theirs: string; other: Api }> {
    const other = new Api(ctx.emu.url);
    await other.login(OTHER.email, OTHER.password);
    const me = await ctx.api.call<{ id: string }>("GET", "/user/me");
    const them = await other.call<{ id: string }>("GET", "/user/me");
    expect(me.json.code).toBe(0);
    expect(them.json.code).toBe(0);
    expect(me.json.data!.id).not.toBe(them.json.data!.id);
    return { mine: me.json.data!.id, theirs: them.json.data!.id, other };
  }

  it("§3.1 cloudreve://<other uid>@my → 403", async () => {
    const { theirs, other } = await ids();
    await other.call("POST", "/file/create", {
      json: { uri: myUri("private"), type: "folder" },
    });
    const r = await list(ctx.api, `cloudreve://${theirs}@my`);
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(403);
    const deep = await list(ctx.api, `cloudreve://${theirs}@my/private`);
    expect(deep.json.code).toBe(403);
    const mk = await create(ctx.api, `cloudreve://${theirs}@my/intrude`);
    expect(mk.json.code).toBe(403);
    const theirList = await list(other, "cloudreve://my");
    expect(names(theirList.json.data)).toEqual(["private"]);
  });

  it("§3.1 cloudreve://<own uid>@my is the caller's own root", async () => {
    const { mine } = await ids();
    await mustCreate(ctx.api, myUri("mine-marker"));
    const r = await list(ctx.api, `cloudreve://${mine}@my`);
    expect(r.json.code).toBe(0);
    expect(names(r.json.data)).toContain("mine-marker");
  });

  it("§3.1 an undecodable user id → 40016", async () => {
    const r = await list(ctx.api, "cloudreve://invalid-id@my");
    expect(r.json.code).toBe(40016);
  });

  it("§3.1/§4.3 anonymous on cloudreve://my → 401", async () => {
    const anon = new Api(ctx.emu.url);
    const r = await list(anon, "cloudreve://my");
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(401);
    const mk = await create(anon, myUri("anon-folder"));
    expect(mk.json.code).toBe(401);
  });
});
