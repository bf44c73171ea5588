/**
 * LOCK and UNLOCK over HTTP: scopes, depths, timeouts, refresh, lock-null creation,
 * lockdiscovery, conflicts and the If header.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { Api, myUri } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { LOCK_EXCLUSIVE, LOCK_SHARED, propfindBody, raw } from "../helpers/http-raw.js";

const MAX = 600;
const fx = useGateway({}, { lockTimeoutMaxSeconds: MAX });
let api: Api;
beforeAll(async () => {
  api = new Api(fx.emu.url);
  await api.login();
  expect((await raw(fx.url, "MKCOL", "/l")).status).toBe(201);
});

let n = 0;
/** A fresh file for each test. */
async function freshFile(): Promise<string> {
  const path = `/l/f${++n}.txt`;
  expect((await raw(fx.url, "PUT", path, { body: "content" })).status).toBe(201);
  return path;
}
async function freshDir(): Promise<string> {
  const path = `/l/d${++n}`;
  expect((await raw(fx.url, "MKCOL", path)).status).toBe(201);
  return path;
}

function lock(path: string, body = LOCK_EXCLUSIVE, headers: Record<string, string> = {}) {
  return raw(fx.url, "LOCK", path, { body, headers: { timeout: "Second-300", ...headers } });
}

const tokenOf = (r: { headers: Record<string, unknown> }) =>
  /^<(.+)>$/.exec(String(r.headers["lock-token"]))![1]!;
const timeoutOf = (xml: string) => /<D:timeout>([^<]+)<\/D:timeout>/.exec(xml)?.[1];

describe("LOCK", () => {
  it("an exclusive lock: 200, Lock-Token header, lockdiscovery body", async () => {
    const path = await freshFile();
    const r = await lock(path);
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^application\/xml/);
    const token = tokenOf(r);
    expect(token).toMatch(/^opaquelocktoken:[0-9a-f-]{36}$/);
    expect(r.text).toContain("<D:lockdiscovery>");
    expect(r.text).toContain("<D:exclusive/>");
    expect(r.text).toContain(`<D:locktoken><D:href>${token}</D:href></D:locktoken>`);
    expect(r.text).toContain(`<D:lockroot><D:href>${path}</D:href></D:lockroot>`);
    expect(r.text).toContain("<D:owner>tester</D:owner>");
    expect(r.text).toContain("<D:depth>infinity</D:depth>");
    expect(timeoutOf(r.text)).toBe("Second-300");
  });

  it("a second exclusive lock → 423; a shared one on an exclusive → 423", async () => {
    const path = await freshFile();
    expect((await lock(path)).status).toBe(200);
    expect((await lock(path)).status).toBe(423);
    expect((await lock(path, LOCK_SHARED)).status).toBe(423);
  });

  it("shared locks coexist; an exclusive one on top → 423", async () => {
    const path = await freshFile();
    const a = await lock(path, LOCK_SHARED);
    const b = await lock(path, LOCK_SHARED);
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(tokenOf(a)).not.toBe(tokenOf(b));
    expect(a.text).toContain("<D:shared/>");
    expect((await lock(path)).status).toBe(423);
    // Both show in lockdiscovery.
    const pf = await raw(fx.url, "PROPFIND", path, {
      headers: { depth: "0" },
      body: propfindBody("<D:lockdiscovery/>"),
    });
    expect(pf.text).toContain(tokenOf(a));
    expect(pf.text).toContain(tokenOf(b));
  });

  it("Depth infinity on a folder covers its members", async () => {
    const dir = await freshDir();
    expect((await raw(fx.url, "PUT", `${dir}/inside.txt`, { body: "1" })).status).toBe(201);
    const r = await lock(dir, LOCK_EXCLUSIVE, { depth: "infinity" });
    expect(r.status).toBe(200);
    const token = tokenOf(r);
    // A write to a member and a new member both need the token.
    expect((await raw(fx.url, "PUT", `${dir}/inside.txt`, { body: "2" })).status).toBe(423);
    expect((await raw(fx.url, "PUT", `${dir}/new.txt`, { body: "2" })).status).toBe(423);
    // A lock on a member conflicts.
    expect((await lock(`${dir}/inside.txt`)).status).toBe(423);
    // The member reports the inherited lock, rooted at the folder.
    const pf = await raw(fx.url, "PROPFIND", `${dir}/inside.txt`, {
      headers: { depth: "0" },
      body: propfindBody("<D:lockdiscovery/>"),
    });
    expect(pf.text).toContain(token);
    expect(pf.text).toContain(`<D:lockroot><D:href>${dir}/</D:href></D:lockroot>`);
    const ok = await raw(fx.url, "PUT", `${dir}/inside.txt`, {
      body: "3",
      headers: { if: `(<${token}>)` },
    });
    expect(ok.status).toBe(204);
  });

  it("Depth 0 on a folder: members may change, membership may not", async () => {
    const dir = await freshDir();
    expect((await raw(fx.url, "PUT", `${dir}/m.txt`, { body: "1" })).status).toBe(201);
    const r = await lock(dir, LOCK_EXCLUSIVE, { depth: "0" });
    expect(r.status).toBe(200);
    expect(r.text).toContain("<D:depth>0</D:depth>");
    expect((await raw(fx.url, "PUT", `${dir}/m.txt`, { body: "2" })).status).toBe(204);
    const pp = await raw(fx.url, "PROPPATCH", `${dir}/m.txt`, {
      body: `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="urn:x">1</x></D:prop></D:set></D:propertyupdate>`,
    });
    expect(pp.status).toBe(207);
    expect((await raw(fx.url, "PUT", `${dir}/added.txt`, { body: "2" })).status).toBe(423);
    expect((await raw(fx.url, "MKCOL", `${dir}/sub`)).status).toBe(423);
    expect((await raw(fx.url, "DELETE", `${dir}/m.txt`)).status).toBe(423);
  });

  it("a bad Depth → 400", async () => {
    const path = await freshFile();
    expect((await lock(path, LOCK_EXCLUSIVE, { depth: "1" })).status).toBe(400);
  });

  it.each([
    ["Second-100", "Second-100"],
    [`Second-${MAX * 10}`, `Second-${MAX}`],
    ["Infinite", `Second-${MAX}`],
    ["Infinite, Second-50", `Second-${MAX}`],
    ["Second-40, Infinite", "Second-40"],
    ["garbage", `Second-${MAX}`],
  ])("Timeout %s is granted as %s (maximum %#)", async (header, granted) => {
    const path = await freshFile();
    const r = await lock(path, LOCK_EXCLUSIVE, { timeout: header });
    expect(r.status).toBe(200);
    expect(timeoutOf(r.text)).toBe(granted);
  });

  it("no Timeout header: the default, capped at the maximum", async () => {
    const path = await freshFile();
    const r = await raw(fx.url, "LOCK", path, { body: LOCK_EXCLUSIVE });
    expect(r.status).toBe(200);
    expect(timeoutOf(r.text)).toBe(`Second-${MAX}`);
  });

  it("refresh: an empty body with the token in If → 200 with the new timeout", async () => {
    const path = await freshFile();
    const first = await lock(path, LOCK_EXCLUSIVE, { timeout: "Second-60" });
    const token = tokenOf(first);
    const r = await raw(fx.url, "LOCK", path, {
      headers: { if: `(<${token}>)`, timeout: "Second-500" },
    });
    expect(r.status).toBe(200);
    expect(timeoutOf(r.text)).toBe("Second-500");
    expect(r.text).toContain(token);
    // A tagged If works too.
    const tagged = await raw(fx.url, "LOCK", path, {
      headers: { if: `<${fx.url}${path}>(<${token}>)`, timeout: "Second-70" },
    });
    expect(tagged.status).toBe(200);
    expect(timeoutOf(tagged.text)).toBe("Second-70");
  });

  it("refresh with an unknown token → 412; without If → 400", async () => {
    const path = await freshFile();
    await lock(path);
    const r = await raw(fx.url, "LOCK", path, {
      headers: { if: "(<opaquelocktoken:00000000-0000-0000-0000-000000000000>)" },
    });
    expect(r.status).toBe(412);
    expect((await raw(fx.url, "LOCK", path)).status).toBe(400);
  });

  it("LOCK on an unmapped URL creates an empty file → 201", async () => {
    const path = "/l/lock-null.txt";
    const r = await lock(path);
    expect(r.status).toBe(201);
    expect(r.headers["lock-token"]).toMatch(/^<opaquelocktoken:/);
    const upstream = await api.call<{ size: number; type: number }>("GET", "/file/info", {
      query: { uri: myUri(path) },
    });
    expect(upstream.json.code, upstream.text).toBe(0);
    expect(upstream.json.data!.size).toBe(0);
    expect(upstream.json.data!.type).toBe(0);
    // It is locked: a PUT without the token fails, with it succeeds.
    expect((await raw(fx.url, "PUT", path, { body: "x" })).status).toBe(423);
    const ok = await raw(fx.url, "PUT", path, {
      body: "x",
      headers: { if: `(<${tokenOf(r)}>)` },
    });
    expect(ok.status).toBe(204);
  });

  it("LOCK on an unmapped URL with a missing parent → 409, no lock left behind", async () => {
    const path = "/l/no-parent/x.txt";
    expect((await lock(path)).status).toBe(409);
    expect((await raw(fx.url, "MKCOL", "/l/no-parent")).status).toBe(201);
    expect((await lock(path)).status).toBe(201);
  });

  it("LOCK on an unmapped URL inside a depth-0-locked folder needs the folder's token", async () => {
    const dir = await freshDir();
    const token = tokenOf(await lock(dir, LOCK_EXCLUSIVE, { depth: "0" }));
    const denied = await lock(`${dir}/null.txt`);
    expect(denied.status).toBe(423);
    expect(denied.headers["lock-token"]).toBeUndefined();
    expect((await raw(fx.url, "HEAD", `${dir}/null.txt`)).status).toBe(404);
    const ok = await lock(`${dir}/null.txt`, LOCK_EXCLUSIVE, {
      if: `<${fx.url}${dir}>(<${token}>)`,
    });
    expect(ok.status).toBe(201);
  });

  it("lockdiscovery appears in PROPFIND (allprop too); empty when unlocked", async () => {
    const path = await freshFile();
    const before = await raw(fx.url, "PROPFIND", path, { headers: { depth: "0" } });
    expect(before.text).toMatch(/<D:lockdiscovery\/>|<D:lockdiscovery><\/D:lockdiscovery>/);
    const token = tokenOf(await lock(path));
    const after = await raw(fx.url, "PROPFIND", path, { headers: { depth: "0" } });
    expect(after.text).toContain("<D:activelock>");
    expect(after.text).toContain(token);
    expect(after.text).toContain("<D:supportedlock>");
  });

  it("a write without the token → 423 with lock-token-submitted", async () => {
    const path = await freshFile();
    await lock(path);
    const r = await raw(fx.url, "PUT", path, { body: "nope" });
    expect(r.status).toBe(423);
    expect(r.text).toContain("lock-token-submitted");
    expect((await raw(fx.url, "GET", path)).text).toBe("content");
    expect((await raw(fx.url, "DELETE", path)).status).toBe(423);
    const pp = await raw(fx.url, "PROPPATCH", path, {
      body: `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="urn:x">1</x></D:prop></D:set></D:propertyupdate>`,
    });
    expect(pp.status).toBe(423);
  });

  it("a corrupt or unknown token in If → 412", async () => {
    const path = await freshFile();
    await lock(path);
    for (const bad of [
      "(<opaquelocktoken:garbage>)",
      "(<opaquelocktoken:11111111-2222-3333-4444-555555555555>)",
      "(<urn:uuid:whatever>)",
    ]) {
      const r = await raw(fx.url, "PUT", path, { body: "x", headers: { if: bad } });
      expect(r.status, bad).toBe(412);
    }
    // Also on a resource without locks.
    const free = await freshFile();
    const r = await raw(fx.url, "PUT", free, {
      body: "x",
      headers: { if: "(<opaquelocktoken:garbage>)" },
    });
    expect(r.status).toBe(412);
  });

  it("a syntactically broken If header → 400", async () => {
    const path = await freshFile();
    const r = await raw(fx.url, "PUT", path, { body: "x", headers: { if: "(<unterminated" } });
    expect(r.status).toBe(400);
  });

  it("If with the ETag of the resource holds; a wrong ETag → 412", async () => {
    const path = await freshFile();
    const etag = String((await raw(fx.url, "HEAD", path)).headers["etag"]);
    expect(
      (await raw(fx.url, "PUT", path, { body: "y", headers: { if: `([${etag}])` } })).status,
    ).toBe(204);
    expect(
      (await raw(fx.url, "PUT", path, { body: "z", headers: { if: `(["wrong"])` } })).status,
    ).toBe(412);
  });

  it("a malformed lockinfo body → 400", async () => {
    const path = await freshFile();
    const r = await lock(
      path,
      `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:locktype><D:write/></D:locktype></D:lockinfo>`,
    );
    expect(r.status).toBe(400);
  });
});

describe("UNLOCK", () => {
  it("with the right token → 204, and the resource is writable again", async () => {
    const path = await freshFile();
    const token = tokenOf(await lock(path));
    const r = await raw(fx.url, "UNLOCK", path, { headers: { "lock-token": `<${token}>` } });
    expect(r.status).toBe(204);
    expect((await raw(fx.url, "PUT", path, { body: "free" })).status).toBe(204);
  });

  it("with a wrong token → 409, the lock stays", async () => {
    const path = await freshFile();
    await lock(path);
    const r = await raw(fx.url, "UNLOCK", path, {
      headers: { "lock-token": "<opaquelocktoken:11111111-2222-3333-4444-555555555555>" },
    });
    expect(r.status).toBe(409);
    expect(r.text).toContain("lock-token-matches-request-uri");
    expect((await raw(fx.url, "PUT", path, { body: "x" })).status).toBe(423);
  });

  it("with the token of a lock on another resource → 409", async () => {
    const a = await freshFile();
    const b = await freshFile();
    const tokenA = tokenOf(await lock(a));
    await lock(b);
    const r = await raw(fx.url, "UNLOCK", b, { headers: { "lock-token": `<${tokenA}>` } });
    expect(r.status).toBe(409);
  });

  it("below a depth-infinity lock, the root's token unlocks it", async () => {
    const dir = await freshDir();
    expect((await raw(fx.url, "PUT", `${dir}/c.txt`, { body: "1" })).status).toBe(201);
    const token = tokenOf(await lock(dir));
    const r = await raw(fx.url, "UNLOCK", `${dir}/c.txt`, {
      headers: { "lock-token": `<${token}>` },
    });
    expect(r.status).toBe(204);
    expect((await raw(fx.url, "PUT", `${dir}/c.txt`, { body: "2" })).status).toBe(204);
  });

  it("without a Lock-Token header → 400", async () => {
    const path = await freshFile();
    expect((await raw(fx.url, "UNLOCK", path)).status).toBe(400);
  });
});
