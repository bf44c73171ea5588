/**
 * MKCOL, DELETE, COPY and MOVE through the gateway against the emulator, with the upstream
 * state checked directly.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { Api, myUri } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { enc, LOCK_EXCLUSIVE, raw, totalCalls } from "../helpers/http-raw.js";

interface CrFile {
  name: string;
  type: number;
  size: number;
}

async function names(api: Api, uri: string): Promise<string[]> {
  const r = await api.call<{ files: CrFile[] }>("GET", "/file", {
    query: { uri, page_size: 2000 },
  });
  expect(r.json.code, r.text).toBe(0);
  return r.json.data!.files.map((f) => f.name).sort();
}

async function exists(api: Api, path: string): Promise<boolean> {
  const r = await api.call("GET", "/file/info", { query: { uri: myUri(path) } });
  return r.json.code === 0;
}

describe("MKCOL and DELETE", () => {
  const fx = useGateway();
  let api: Api;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });

  it("MKCOL → 201 and the folder exists upstream", async () => {
    expect((await raw(fx.url, "MKCOL", "/m")).status).toBe(201);
    expect(await names(api, myUri("/"))).toContain("m");
    // A trailing slash names the same collection.
    expect((await raw(fx.url, "MKCOL", "/m/slash/")).status).toBe(201);
    expect(await exists(api, "/m/slash")).toBe(true);
  });

  it("MKCOL with a missing parent → 409", async () => {
    expect((await raw(fx.url, "MKCOL", "/m/a/b")).status).toBe(409);
    expect(await exists(api, "/m/a")).toBe(false);
  });

  it("MKCOL on something that exists → 405 (folder or file)", async () => {
    expect((await raw(fx.url, "MKCOL", "/m")).status).toBe(405);
    expect((await raw(fx.url, "PUT", "/m/f.txt", { body: "x" })).status).toBe(201);
    expect((await raw(fx.url, "MKCOL", "/m/f.txt")).status).toBe(405);
    expect((await raw(fx.url, "MKCOL", "/")).status).toBe(405);
  });

  it("MKCOL with a body → 415, nothing created", async () => {
    const r = await raw(fx.url, "MKCOL", "/m/withbody", {
      body: "<x/>",
      headers: { "content-type": "text/xml" },
    });
    expect(r.status).toBe(415);
    expect(await exists(api, "/m/withbody")).toBe(false);
  });

  it("DELETE of a folder removes everything in it, into the Cloudreve trash", async () => {
    expect((await raw(fx.url, "MKCOL", "/del")).status).toBe(201);
    expect((await raw(fx.url, "MKCOL", "/del/inner")).status).toBe(201);
    expect((await raw(fx.url, "PUT", "/del/inner/f.txt", { body: "x" })).status).toBe(201);
    const r = await raw(fx.url, "DELETE", "/del/");
    expect(r.status).toBe(204);
    expect(await exists(api, "/del")).toBe(false);
    expect(await exists(api, "/del/inner/f.txt")).toBe(false);
    expect(await names(api, "cloudreve://trash")).toContain("del");
    expect((await raw(fx.url, "PROPFIND", "/del/", { headers: { depth: "0" } })).status).toBe(404);
  });

  it("DELETE of a file → 204, in the trash", async () => {
    expect((await raw(fx.url, "PUT", "/trashme.txt", { body: "x" })).status).toBe(201);
    expect((await raw(fx.url, "DELETE", "/trashme.txt")).status).toBe(204);
    expect(await exists(api, "/trashme.txt")).toBe(false);
    expect(await names(api, "cloudreve://trash")).toContain("trashme.txt");
  });

  it("DELETE of a missing path → 404", async () => {
    expect((await raw(fx.url, "DELETE", "/no-such-thing")).status).toBe(404);
  });

  it("DELETE of the root → 403", async () => {
    expect((await raw(fx.url, "DELETE", "/")).status).toBe(403);
  });
});

describe("DELETE with permanentDelete", () => {
  const fx = useGateway({}, { permanentDelete: true });
  let api: Api;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });

  it("skips the trash", async () => {
    expect((await raw(fx.url, "MKCOL", "/gone")).status).toBe(201);
    expect((await raw(fx.url, "PUT", "/gone/f.txt", { body: "x" })).status).toBe(201);
    expect((await raw(fx.url, "DELETE", "/gone")).status).toBe(204);
    expect(await exists(api, "/gone")).toBe(false);
    expect(await names(api, "cloudreve://trash")).not.toContain("gone");
    expect(await names(api, "cloudreve://trash")).not.toContain("f.txt");
  });
});

describe("COPY and MOVE", () => {
  const fx = useGateway();
  let api: Api;
  const text = async (path: string) => (await raw(fx.url, "GET", enc(path))).text;
  const put = async (path: string, body: string) =>
    expect((await raw(fx.url, "PUT", enc(path), { body })).status).toBeLessThan(300);
  const mkcol = async (path: string) =>
    expect((await raw(fx.url, "MKCOL", enc(path))).status).toBe(201);
  const copyMove = (
    method: "COPY" | "MOVE",
    from: string,
    to: string,
    headers: Record<string, string> = {},
  ) => raw(fx.url, method, enc(from), { headers: { destination: to, ...headers } });

  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
    await mkcol("/cm");
    await mkcol("/cm/src");
    await put("/cm/src/a.txt", "alpha");
    await mkcol("/cm/src/deep");
    await put("/cm/src/deep/b.txt", "beta");
    await put("/cm/one.txt", "one");
  });

  it("COPY to an absolute URL → 201, source kept", async () => {
    const r = await copyMove("COPY", "/cm/one.txt", `${fx.url}/cm/one-copy.txt`);
    expect(r.status).toBe(201);
    expect(await text("/cm/one-copy.txt")).toBe("one");
    expect(await text("/cm/one.txt")).toBe("one");
  });

  it("COPY to an absolute path → 201", async () => {
    const r = await copyMove("COPY", "/cm/one.txt", "/cm/one%20path.txt");
    expect(r.status).toBe(201);
    expect(await text("/cm/one path.txt")).toBe("one");
  });

  it("Destination on another host → 502, nothing done upstream", async () => {
    await fx.resetStats();
    const r = await copyMove("COPY", "/cm/one.txt", "http://elsewhere.example:81/cm/x.txt");
    expect(r.status).toBe(502);
    expect(totalCalls(await fx.stats())).toBe(0);
  });

  it("Overwrite absent means T: an existing destination is replaced → 204", async () => {
    await put("/cm/target.txt", "old");
    const r = await copyMove("COPY", "/cm/one.txt", "/cm/target.txt");
    expect(r.status).toBe(204);
    expect(await text("/cm/target.txt")).toBe("one");
  });

  it("Overwrite: T replaces → 204", async () => {
    await put("/cm/one.txt", "one-v2");
    const r = await copyMove("COPY", "/cm/one.txt", "/cm/target.txt", { overwrite: "T" });
    expect(r.status).toBe(204);
    expect(await text("/cm/target.txt")).toBe("one-v2");
  });

  it("Overwrite: F with an existing destination → a plain 412, destination kept", async () => {
    await put("/cm/keep.txt", "keep");
    for (const method of ["COPY", "MOVE"] as const) {
      const r = await copyMove(method, "/cm/one.txt", "/cm/keep.txt", { overwrite: "F" });
      expect(r.status, method).toBe(412);
      expect(r.text).not.toContain("multistatus");
    }
    expect(await text("/cm/keep.txt")).toBe("keep");
    expect(await text("/cm/one.txt")).toBe("one-v2");
  });

  it("Overwrite: F with a free destination → 201", async () => {
    const r = await copyMove("COPY", "/cm/one.txt", "/cm/free.txt", { overwrite: "F" });
    expect(r.status).toBe(201);
  });

  it("COPY Depth infinity copies the whole tree", async () => {
    const r = await copyMove("COPY", "/cm/src", "/cm/tree", { depth: "infinity" });
    expect(r.status).toBe(201);
    expect(await text("/cm/tree/a.txt")).toBe("alpha");
    expect(await text("/cm/tree/deep/b.txt")).toBe("beta");
    expect(await text("/cm/src/deep/b.txt")).toBe("beta");
  });

  it("COPY Depth 0 of a collection copies only the collection", async () => {
    const r = await copyMove("COPY", "/cm/src/", "/cm/shallow/", { depth: "0" });
    expect(r.status).toBe(201);
    expect(await exists(api, "/cm/shallow")).toBe(true);
    expect(await names(api, myUri("/cm/shallow"))).toEqual([]);
  });

  it("COPY a folder over an existing folder replaces it → 204", async () => {
    await mkcol("/cm/over");
    await put("/cm/over/stale.txt", "stale");
    const r = await copyMove("COPY", "/cm/src", "/cm/over");
    expect(r.status).toBe(204);
    expect(await names(api, myUri("/cm/over"))).toEqual(["a.txt", "deep"]);
  });

  it("MOVE renames → 201; source gone", async () => {
    await put("/cm/mv.txt", "mv");
    const r = await copyMove("MOVE", "/cm/mv.txt", `${fx.url}/cm/src/moved.txt`);
    expect(r.status).toBe(201);
    expect(await text("/cm/src/moved.txt")).toBe("mv");
    expect((await raw(fx.url, "HEAD", "/cm/mv.txt")).status).toBe(404);
    expect(await exists(api, "/cm/mv.txt")).toBe(false);
  });

  it("MOVE over an existing file → 204", async () => {
    await put("/cm/mv2.txt", "new");
    await put("/cm/mv2-dest.txt", "old");
    const r = await copyMove("MOVE", "/cm/mv2.txt", "/cm/mv2-dest.txt");
    expect(r.status).toBe(204);
    expect(await text("/cm/mv2-dest.txt")).toBe("new");
  });

  it("MOVE of a folder with a Depth 0 → 400", async () => {
    const r = await copyMove("MOVE", "/cm/tree", "/cm/tree2", { depth: "0" });
    expect(r.status).toBe(400);
  });

  it("MOVE to a missing parent → 409", async () => {
    const r = await copyMove("MOVE", "/cm/free.txt", "/cm/nope/free.txt");
    expect(r.status).toBe(409);
    expect(await text("/cm/free.txt")).toBe("one-v2");
  });

  it("COPY of a missing source → 404", async () => {
    expect((await copyMove("COPY", "/cm/missing.txt", "/cm/x.txt")).status).toBe(404);
  });

  it("COPY onto itself or into itself → 403", async () => {
    expect((await copyMove("COPY", "/cm/src", "/cm/src")).status).toBe(403);
    expect((await copyMove("MOVE", "/cm/src", "/cm/src/deep/inside")).status).toBe(403);
  });

  it("a missing Destination → 400; bad Overwrite → 400", async () => {
    expect((await raw(fx.url, "COPY", "/cm/one.txt")).status).toBe(400);
    expect((await copyMove("COPY", "/cm/one.txt", "/cm/o.txt", { overwrite: "X" })).status).toBe(
      400,
    );
  });

  describe("locks", () => {
    const lock = async (path: string, depth = "infinity") => {
      const r = await raw(fx.url, "LOCK", enc(path), {
        body: LOCK_EXCLUSIVE,
        headers: { depth, timeout: "Second-600" },
      });
      expect(r.status).toBeLessThan(300);
      return String(r.headers["lock-token"]);
    };

    it("MOVE of a locked source → 423 without the token, success with it", async () => {
      await put("/cm/locked-src.txt", "ls");
      const token = await lock("/cm/locked-src.txt");
      const denied = await copyMove("MOVE", "/cm/locked-src.txt", "/cm/ls-moved.txt");
      expect(denied.status).toBe(423);
      expect(await exists(api, "/cm/locked-src.txt")).toBe(true);
      // COPY only reads the source: allowed.
      expect((await copyMove("COPY", "/cm/locked-src.txt", "/cm/ls-copy.txt")).status).toBe(201);
      const ok = await copyMove("MOVE", "/cm/locked-src.txt", "/cm/ls-moved.txt", {
        if: `(${token})`,
      });
      expect(ok.status).toBe(201);
      expect(await text("/cm/ls-moved.txt")).toBe("ls");
    });

    it("COPY/MOVE onto a locked destination → 423 without the token, success with it", async () => {
      await put("/cm/locked-dst.txt", "dst");
      const token = await lock("/cm/locked-dst.txt");
      for (const method of ["COPY", "MOVE"] as const) {
        const r = await copyMove(method, "/cm/one.txt", "/cm/locked-dst.txt");
        expect(r.status, method).toBe(423);
      }
      expect(await text("/cm/locked-dst.txt")).toBe("dst");
      const tagged = `<${fx.url}/cm/locked-dst.txt>(${token})`;
      const ok = await copyMove("COPY", "/cm/one.txt", "/cm/locked-dst.txt", { if: tagged });
      expect(ok.status).toBe(204);
      expect(await text("/cm/locked-dst.txt")).toBe("one-v2");
    });

    it("a new member of a locked folder needs the token (MOVE into it)", async () => {
      await mkcol("/cm/lockdir");
      const token = await lock("/cm/lockdir", "0");
      await put("/cm/mover.txt", "m");
      expect((await copyMove("MOVE", "/cm/mover.txt", "/cm/lockdir/mover.txt")).status).toBe(423);
      const ok = await copyMove("MOVE", "/cm/mover.txt", "/cm/lockdir/mover.txt", {
        if: `<${fx.url}/cm/lockdir>(${token})`,
      });
      expect(ok.status).toBe(201);
    });

    it("DELETE of a folder with a locked member → 423; nothing deleted", async () => {
      await mkcol("/cm/haslock");
      await put("/cm/haslock/l.txt", "l");
      await lock("/cm/haslock/l.txt");
      expect((await raw(fx.url, "DELETE", "/cm/haslock")).status).toBe(423);
      expect(await exists(api, "/cm/haslock/l.txt")).toBe(true);
    });
  });
});
