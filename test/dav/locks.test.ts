import { describe, expect, it } from "vitest";
import { Locked } from "../../src/errors.js";
import {
  LockConflict,
  LockForbidden,
  LockNotFound,
  LockTokenMismatch,
  MemoryLockSystem,
} from "../../src/dav/locks.js";
import { parseTimeout } from "../../src/dav/headers.js";
import { isBelow, isSameOrBelow } from "../../src/drive/paths.js";
import type { LockDepth, LockRequest, LockScope } from "../../src/dav/locks.js";
import { evaluateIf, parseIfHeader, submittedTokens } from "../../src/dav/if-header.js";

const OWNER = "<D:owner><D:href>http://example.org/~ejw/contact.html</D:href></D:owner>";

/** A lock system on a hand-driven clock, starting at t = 1,000,000 ms. */
function setup() {
  let now = 1_000_000;
  let counter = 0;
  const locks = new MemoryLockSystem({
    now: () => now,
    newToken: () => `opaquelocktoken:test-${++counter}`,
  });
  const advance = (seconds: number) => {
    now += seconds * 1000;
  };
  const lock = (
    root: string,
    depth: LockDepth = 0,
    scope: LockScope = "exclusive",
    extra: Partial<LockRequest> = {},
  ) => locks.create({ root, depth, scope, ownerXml: OWNER, timeoutSeconds: 600, ...extra });
  return { locks, lock, advance, now: () => now };
}

describe("create", () => {
  it("issues an opaquelocktoken by default and reports what was asked", async () => {
    const locks = new MemoryLockSystem({ now: () => 5000 });
    const info = await locks.create({
      root: "/a",
      depth: "infinity",
      scope: "exclusive",
      ownerXml: OWNER,
      timeoutSeconds: 3600,
      principal: "ejw",
    });
    expect(info.token).toMatch(
      /^opaquelocktoken:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
    expect(info).toMatchObject({
      root: "/a",
      depth: "infinity",
      scope: "exclusive",
      ownerXml: OWNER,
      timeoutSeconds: 3600,
      principal: "ejw",
      expiresAt: 5000 + 3_600_000,
    });
    expect(Object.isFrozen(info)).toBe(true);
  });

  it("issues distinct tokens, and urn:uuid tokens through the factory", async () => {
    const plain = new MemoryLockSystem();
    const a = await plain.create(request("/a"));
    const b = await plain.create(request("/b"));
    expect(a.token).not.toBe(b.token);
    const urn = new MemoryLockSystem({
      newToken: () => "urn:uuid:6d3c1e00-0000-4000-8000-000000000000",
    });
    expect((await urn.create(request("/a"))).token).toBe(
      "urn:uuid:6d3c1e00-0000-4000-8000-000000000000",
    );
  });

  it("refuses a second exclusive lock on the same resource (litmus notowner_lock)", async () => {
    const { lock } = setup();
    const first = await lock("/a");
    const error = await rejection(lock("/a"));
    expect(error).toBeInstanceOf(LockConflict);
    expect(error).toBeInstanceOf(Locked);
    expect((error as LockConflict).locks.map((l) => l.token)).toEqual([first.token]);
    expect((error as LockConflict).conflicts).toEqual([{ path: "/a", application: "dav" }]);
  });

  it("grants shared locks side by side (litmus double_sharedlock)", async () => {
    const { lock } = setup();
    await lock("/a", 0, "shared");
    expect((await lock("/a", 0, "shared")).scope).toBe("shared");
  });

  it("refuses exclusive over shared and shared over exclusive", async () => {
    const { lock } = setup();
    await lock("/s", 0, "shared");
    await expect(lock("/s", 0, "exclusive")).rejects.toThrow(LockConflict);
    await lock("/x", 0, "exclusive");
    await expect(lock("/x", 0, "shared")).rejects.toThrow(LockConflict);
  });

  it("refuses a lock below a depth-infinity exclusive lock", async () => {
    const { lock } = setup();
    await lock("/a", "infinity");
    await expect(lock("/a/b")).rejects.toThrow(LockConflict);
    await expect(lock("/a/b/c", 0, "shared")).rejects.toThrow(LockConflict);
  });

  it("allows a lock below a depth-0 lock on a collection", async () => {
    const { lock } = setup();
    await lock("/a", 0);
    expect((await lock("/a/b")).root).toBe("/a/b");
  });

  it("refuses a depth-infinity lock over a locked descendant, but not a depth-0 one", async () => {
    const { lock } = setup();
    const below = await lock("/a/b/c");
    const error = await rejection(lock("/a", "infinity"));
    expect((error as LockConflict).locks.map((l) => l.token)).toEqual([below.token]);
    expect((await lock("/a", 0)).depth).toBe(0);
  });

  it("lets shared locks nest at any depth", async () => {
    const { lock } = setup();
    await lock("/a", "infinity", "shared");
    await lock("/a/b", "infinity", "shared");
    expect((await lock("/a/b/c", 0, "shared")).root).toBe("/a/b/c");
  });

  it("does not treat /ab as below /a", async () => {
    const { lock } = setup();
    await lock("/a", "infinity");
    expect((await lock("/ab")).root).toBe("/ab");
    expect((await lock("/a-b", "infinity")).root).toBe("/a-b");
  });

  it("treats everything as below a depth-infinity lock on the root", async () => {
    const { lock } = setup();
    await lock("/", "infinity");
    await expect(lock("/a")).rejects.toThrow(LockConflict);
    const other = setup();
    await other.lock("/deep/down");
    await expect(other.lock("/", "infinity")).rejects.toThrow(LockConflict);
    expect((await other.lock("/", 0)).root).toBe("/");
  });

  it("rejects paths that are not gateway paths and timeouts that are not positive", async () => {
    const { lock } = setup();
    for (const bad of ["", "a", "/a/", "//a", "/a//b"]) {
      await expect(lock(bad)).rejects.toThrow(RangeError);
    }
    await expect(lock("/a", 0, "exclusive", { timeoutSeconds: 0 })).rejects.toThrow(RangeError);
    await expect(lock("/a", 0, "exclusive", { timeoutSeconds: Number.NaN })).rejects.toThrow(
      RangeError,
    );
  });
});

describe("expiry", () => {
  it("drops a lock once its timeout passes, without waiting", async () => {
    const { locks, lock, advance } = setup();
    const info = await lock("/a", 0, "exclusive", { timeoutSeconds: 10 });
    advance(9.999);
    expect((await locks.get(info.token))?.token).toBe(info.token);
    advance(0.001);
    expect(await locks.get(info.token)).toBeUndefined();
    expect((await locks.snapshot()).covering("/a")).toEqual([]);
    expect((await locks.canWrite("/a", [])).allowed).toBe(true);
    expect((await lock("/a")).root).toBe("/a");
  });

  it("makes an expired token unknown to refresh and unlock", async () => {
    const { locks, lock, advance } = setup();
    const info = await lock("/a", 0, "exclusive", { timeoutSeconds: 10 });
    advance(11);
    await expect(locks.refresh(info.token, 10)).rejects.toThrow(LockNotFound);
    await expect(locks.unlock("/a", info.token)).rejects.toThrow(LockNotFound);
  });

  it("keeps an infinite timeout forever", async () => {
    const { locks, lock, advance } = setup();
    const info = await lock("/a", 0, "exclusive", { timeoutSeconds: Number.POSITIVE_INFINITY });
    advance(10 * 365 * 86_400);
    expect(await locks.get(info.token)).toBeDefined();
  });
});

describe("refresh", () => {
  it("restarts the timeout from now (litmus refresh)", async () => {
    const { locks, lock, advance, now } = setup();
    const info = await lock("/a", 0, "exclusive", { timeoutSeconds: 10 });
    advance(8);
    const refreshed = await locks.refresh(info.token, 30);
    expect(refreshed.expiresAt).toBe(now() + 30_000);
    expect(refreshed.timeoutSeconds).toBe(30);
    advance(20);
    expect(await locks.get(info.token)).toBeDefined();
  });

  it("refreshes through a member of a depth-infinity lock (litmus indirect_refresh)", async () => {
    const { locks, lock } = setup();
    const info = await lock("/coll", "infinity");
    expect((await locks.refresh(info.token, 60, { path: "/coll/member" })).token).toBe(info.token);
  });

  it("refuses an unknown token, a path the lock does not cover and another principal", async () => {
    const { locks, lock } = setup();
    const info = await lock("/a", 0, "exclusive", { principal: "ann" });
    await expect(locks.refresh("opaquelocktoken:nope", 60)).rejects.toThrow(LockNotFound);
    await expect(locks.refresh(info.token, 60, { path: "/b", principal: "ann" })).rejects.toThrow(
      LockTokenMismatch,
    );
    await expect(
      locks.refresh(info.token, 60, { path: "/a/child", principal: "ann" }),
    ).rejects.toThrow(LockTokenMismatch);
    await expect(locks.refresh(info.token, 60, { path: "/a", principal: "bob" })).rejects.toThrow(
      LockForbidden,
    );
    expect((await locks.refresh(info.token, 60, { path: "/a", principal: "ann" })).token).toBe(
      info.token,
    );
  });
});

describe("unlock", () => {
  it("removes the lock so the resource can be locked again (litmus unlock)", async () => {
    const { locks, lock } = setup();
    const info = await lock("/a");
    await locks.unlock("/a", info.token);
    expect(await locks.get(info.token)).toBeUndefined();
    await expect(locks.unlock("/a", info.token)).rejects.toThrow(LockNotFound);
    expect((await lock("/a")).root).toBe("/a");
  });

  it("refuses a bogus token and keeps the lock (litmus notowner_lock)", async () => {
    const { locks, lock } = setup();
    const info = await lock("/a");
    await expect(locks.unlock("/a", `${info.token}x`)).rejects.toThrow(LockNotFound);
    expect(await locks.get(info.token)).toBeDefined();
  });

  it("refuses a token whose lock does not cover the path", async () => {
    const { locks, lock } = setup();
    const a = await lock("/a");
    await lock("/b");
    const error = await rejection(locks.unlock("/b", a.token));
    expect(error).toBeInstanceOf(LockTokenMismatch);
    expect(error).toMatchObject({ token: a.token, path: "/b" });
    expect(await locks.get(a.token)).toBeDefined();
  });

  it("unlocks a depth-infinity lock from a member URL", async () => {
    const { locks, lock } = setup();
    const info = await lock("/coll", "infinity");
    await locks.unlock("/coll/x", info.token);
    expect(await locks.get(info.token)).toBeUndefined();
  });

  it("leaves other shared locks on the resource in place", async () => {
    const { locks, lock } = setup();
    const one = await lock("/a", 0, "shared");
    const two = await lock("/a", 0, "shared");
    await locks.unlock("/a", one.token);
    expect((await locks.snapshot()).covering("/a").map((l) => l.token)).toEqual([two.token]);
  });

  it("refuses another principal", async () => {
    const { locks, lock } = setup();
    const info = await lock("/a", 0, "exclusive", { principal: "ann" });
    await expect(locks.unlock("/a", info.token, "bob")).rejects.toThrow(LockForbidden);
    await expect(locks.unlock("/a", info.token)).rejects.toThrow(LockForbidden);
    await locks.unlock("/a", info.token, "ann");
    expect(await locks.get(info.token)).toBeUndefined();
  });
});

describe("snapshot", () => {
  it("lists locks on the path and depth-infinity locks on its ancestors", async () => {
    const { locks, lock } = setup();
    const root = await lock("/", "infinity", "shared");
    const a0 = await lock("/a", 0, "shared");
    const ab = await lock("/a/b", "infinity", "shared");
    await lock("/a/b/c/d", 0, "shared"); // below: not covering /a/b/c
    await lock("/a/bc", 0, "shared"); // a sibling sharing a prefix
    const view = await locks.snapshot();
    expect(view.covering("/a/b/c").map((l) => l.token)).toEqual([root.token, ab.token]);
    expect(view.covering("/a").map((l) => l.token)).toEqual([root.token, a0.token]);
    expect(view.covering("/").map((l) => l.token)).toEqual([root.token]);
  });

  it("stays the view of the moment it was taken", async () => {
    const { locks, lock } = setup();
    const before = await lock("/a", 0, "shared");
    const view = await locks.snapshot();
    await locks.unlock("/a", before.token);
    const after = await lock("/a", 0, "shared");
    expect(view.covering("/a").map((l) => l.token)).toEqual([before.token]);
    expect((await locks.snapshot()).covering("/a").map((l) => l.token)).toEqual([after.token]);
  });

  it("rejects a path that is not a gateway path", async () => {
    const view = await new MemoryLockSystem().snapshot();
    expect(() => view.covering("/a/")).toThrow(RangeError);
  });

  it("ignores a depth-0 lock on an ancestor", async () => {
    const { locks, lock } = setup();
    await lock("/a", 0);
    expect((await locks.snapshot()).covering("/a/b")).toEqual([]);
  });
});

describe("canWrite", () => {
  it("blocks a write to a locked resource without its token (litmus notowner_modify)", async () => {
    const { locks, lock } = setup();
    const info = await lock("/a");
    const check = await locks.canWrite("/a", []);
    expect(check.allowed).toBe(false);
    expect(check.allowed ? undefined : check.lock.token).toBe(info.token);
    expect((await locks.canWrite("/a", ["opaquelocktoken:other"])).allowed).toBe(false);
  });

  it("allows the write with the token (litmus owner_modify)", async () => {
    const { locks, lock } = setup();
    const info = await lock("/a");
    expect(await locks.canWrite("/a", [info.token])).toEqual({ allowed: true });
    expect(await locks.canWrite("/b", [])).toEqual({ allowed: true });
  });

  it("needs the token of every shared lock on the resource", async () => {
    const { locks, lock } = setup();
    const one = await lock("/a", 0, "shared");
    const two = await lock("/a", 0, "shared");
    expect((await locks.canWrite("/a", [one.token])).allowed).toBe(false);
    expect((await locks.canWrite("/a", [one.token, two.token])).allowed).toBe(true);
  });

  it("protects members of a depth-infinity lock (litmus lock_collection)", async () => {
    const { locks, lock } = setup();
    const info = await lock("/coll", "infinity");
    expect((await locks.canWrite("/coll/new", [], { membership: true })).allowed).toBe(false);
    expect((await locks.canWrite("/coll/sub/file", [])).allowed).toBe(false);
    expect((await locks.canWrite("/coll/sub/file", [info.token])).allowed).toBe(true);
    expect((await locks.canWrite("/collection", [])).allowed).toBe(true);
  });

  it("lets a depth-0 collection lock guard membership, not the members' content", async () => {
    const { locks, lock } = setup();
    const info = await lock("/coll", 0);
    expect((await locks.canWrite("/coll/existing", [])).allowed).toBe(true);
    expect((await locks.canWrite("/coll/new", [], { membership: true })).allowed).toBe(false);
    expect((await locks.canWrite("/coll/new", [info.token], { membership: true })).allowed).toBe(
      true,
    );
    expect((await locks.canWrite("/coll/sub/new", [], { membership: true })).allowed).toBe(true);
  });

  it("blocks a recursive write over a lock below, but not a plain one", async () => {
    const { locks, lock } = setup();
    const below = await lock("/a/b/c.txt");
    const check = await locks.canWrite("/a", [], { recursive: true });
    expect(check.allowed ? undefined : check.lock.token).toBe(below.token);
    expect((await locks.canWrite("/a", [])).allowed).toBe(true);
    expect((await locks.canWrite("/a", [below.token], { recursive: true })).allowed).toBe(true);
    expect((await locks.canWrite("/", [], { recursive: true })).allowed).toBe(false);
  });

  it("does not treat /ab as below /a", async () => {
    const { locks, lock } = setup();
    await lock("/a", "infinity", "shared");
    await lock("/a", 0, "shared");
    expect((await locks.canWrite("/ab", [], { recursive: true, membership: true })).allowed).toBe(
      true,
    );
    expect((await locks.canWrite("/ab/x", [], { recursive: true, membership: true })).allowed).toBe(
      true,
    );
    const other = setup();
    await other.lock("/ab", "infinity");
    expect((await other.locks.canWrite("/a", [], { recursive: true })).allowed).toBe(true);
    expect((await other.locks.canWrite("/a/b", [], { membership: true })).allowed).toBe(true);
  });

  it("counts a token only for the principal who took the lock", async () => {
    const { locks, lock } = setup();
    const info = await lock("/a", 0, "exclusive", { principal: "ann" });
    expect((await locks.canWrite("/a", [info.token], { principal: "ann" })).allowed).toBe(true);
    expect((await locks.canWrite("/a", [info.token], { principal: "bob" })).allowed).toBe(false);
    expect((await locks.canWrite("/a", [info.token])).allowed).toBe(false);
  });

  it("lets a copy read a locked source: only the destination is checked (litmus copy)", async () => {
    const { locks, lock } = setup();
    await lock("/src", "infinity");
    expect((await locks.canWrite("/dst", [], { recursive: true, membership: true })).allowed).toBe(
      true,
    );
  });
});

describe("move and remove", () => {
  it("drops locks on a deleted path and below, keeping ancestors and /ab", async () => {
    const { locks, lock } = setup();
    const ancestor = await lock("/", 0);
    const a = await lock("/a", 0);
    const below = await lock("/a/b", "infinity");
    const sibling = await lock("/ab");
    await locks.remove("/a");
    expect(await locks.get(a.token)).toBeUndefined();
    expect(await locks.get(below.token)).toBeUndefined();
    expect(await locks.get(ancestor.token)).toBeDefined();
    expect(await locks.get(sibling.token)).toBeDefined();
  });

  it("does not move locks with a moved resource, and drops those on a replaced destination", async () => {
    const { locks, lock } = setup();
    const source = await lock("/src/f");
    const replaced = await lock("/dst");
    const destParent = await lock("/parent", "infinity", "shared");
    await locks.move("/src", "/parent/dst");
    await locks.move("/other", "/dst");
    expect(await locks.get(source.token)).toBeUndefined();
    expect(await locks.get(replaced.token)).toBeUndefined();
    expect((await locks.snapshot()).covering("/src/f")).toEqual([]);
    // The moved resource is now under the destination's depth-infinity lock (§7.6).
    expect((await locks.snapshot()).covering("/parent/dst/f").map((l) => l.token)).toEqual([
      destParent.token,
    ]);
  });
});

describe("If header and lock system together", () => {
  async function putAllowed(locks: MemoryLockSystem, path: string, ifHeader: string) {
    const header = parseIfHeader(ifHeader);
    const view = await locks.snapshot();
    const resolve = (p: string) => ({
      etag: '"e1"',
      lockTokens: view.covering(p).map((l) => l.token),
    });
    if (!evaluateIf(header, resolve, path)) return 412;
    return (await locks.canWrite(path, submittedTokens(header))).allowed ? 204 : 423;
  }

  it("answers the litmus conditional PUT cases", async () => {
    const { locks, lock } = setup();
    const { token } = await lock("/lockme");
    expect(await putAllowed(locks, "/lockme", `(<${token}>)`)).toBe(204); // cond_put
    expect(await putAllowed(locks, "/lockme", `(<opaquelocktoken:fake>)`)).toBe(412); // fail_cond_put
    expect(await putAllowed(locks, "/lockme", `(<${token}>) (Not <DAV:no-lock>)`)).toBe(204);
    expect(await putAllowed(locks, "/lockme", `(<${token}x>) (Not <DAV:no-lock>)`)).toBe(423);
    expect(
      await putAllowed(locks, "/lockme", `(<${token}> ["e1"]) (Not <DAV:no-lock> ["e1"])`),
    ).toBe(204);
    expect(await putAllowed(locks, "/lockme", `(<${token}> ["x"]) (Not <DAV:no-lock> ["x"])`)).toBe(
      412,
    );
    await locks.unlock("/lockme", token);
    expect(await putAllowed(locks, "/lockme", `(<${token}>)`)).toBe(412); // fail_cond_put_unlocked
  });
});

describe("parseTimeout", () => {
  it.each<[string | undefined, number]>([
    [undefined, 600],
    ["", 600],
    ["Second-60", 60],
    ["second-60", 60],
    ["Infinite", 86_400],
    ["Infinite, Second-4100000000", 86_400],
    ["Second-4100000000", 86_400],
    ["Second-99999999999999999999999999", 86_400],
    ["Extended, Second-30", 30],
    ["Second-, Second-x, Second-45", 45],
    ["Second--5, Second-20", 20],
    [" Second-30 , Infinite", 30],
    ["Second-0", 1],
    ["bogus", 600],
  ])("reads %j as %d seconds", (header, seconds) => {
    expect(parseTimeout(header, 86_400, 600)).toBe(seconds);
  });

  it("caps the default at the maximum", () => {
    expect(parseTimeout(undefined, 300, 600)).toBe(300);
  });
});

describe("path relations", () => {
  it.each<[string, string, boolean, boolean]>([
    ["/a", "/a", true, false],
    ["/a/b", "/a", true, true],
    ["/a/b/c", "/a", true, true],
    ["/ab", "/a", false, false],
    ["/a", "/ab", false, false],
    ["/a", "/", true, true],
    ["/", "/", true, false],
    ["/", "/a", false, false],
  ])("%s against %s", (path, ancestor, sameOrBelow, below) => {
    expect(isSameOrBelow(path, ancestor)).toBe(sameOrBelow);
    expect(isBelow(path, ancestor)).toBe(below);
  });
});

function request(root: string): LockRequest {
  return { root, depth: 0, scope: "exclusive", ownerXml: "", timeoutSeconds: 60 };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected an error");
}
