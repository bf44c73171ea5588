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
  it("issues an opaquelocktoken by default and reports what was asked", () => {
    const locks = new MemoryLockSystem({ now: () => 5000 });
    const info = locks.create({
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

  it("issues distinct tokens, and urn:uuid tokens through the factory", () => {
    const plain = new MemoryLockSystem();
    const a = plain.create(request("/a"));
    const b = plain.create(request("/b"));
    expect(a.token).not.toBe(b.token);
    const urn = new MemoryLockSystem({
      newToken: () => "urn:uuid:6d3c1e00-0000-4000-8000-000000000000",
    });
    expect(urn.create(request("/a")).token).toBe("urn:uuid:6d3c1e00-0000-4000-8000-000000000000");
  });

  it("refuses a second exclusive lock on the same resource (litmus notowner_lock)", () => {
    const { lock } = setup();
    const first = lock("/a");
    const error = catchError(() => lock("/a"));
    expect(error).toBeInstanceOf(LockConflict);
    expect(error).toBeInstanceOf(Locked);
    expect((error as LockConflict).locks.map((l) => l.token)).toEqual([first.token]);
    expect((error as LockConflict).conflicts).toEqual([{ path: "/a", application: "dav" }]);
  });

  it("grants shared locks side by side (litmus double_sharedlock)", () => {
    const { lock } = setup();
    lock("/a", 0, "shared");
    expect(lock("/a", 0, "shared").scope).toBe("shared");
  });

  it("refuses exclusive over shared and shared over exclusive", () => {
    const { lock } = setup();
    lock("/s", 0, "shared");
    expect(() => lock("/s", 0, "exclusive")).toThrow(LockConflict);
    lock("/x", 0, "exclusive");
    expect(() => lock("/x", 0, "shared")).toThrow(LockConflict);
  });

  it("refuses a lock below a depth-infinity exclusive lock", () => {
    const { lock } = setup();
    lock("/a", "infinity");
    expect(() => lock("/a/b")).toThrow(LockConflict);
    expect(() => lock("/a/b/c", 0, "shared")).toThrow(LockConflict);
  });

  it("allows a lock below a depth-0 lock on a collection", () => {
    const { lock } = setup();
    lock("/a", 0);
    expect(lock("/a/b").root).toBe("/a/b");
  });

  it("refuses a depth-infinity lock over a locked descendant, but not a depth-0 one", () => {
    const { lock } = setup();
    const below = lock("/a/b/c");
    const error = catchError(() => lock("/a", "infinity"));
    expect((error as LockConflict).locks.map((l) => l.token)).toEqual([below.token]);
    expect(lock("/a", 0).depth).toBe(0);
  });

  it("lets shared locks nest at any depth", () => {
    const { lock } = setup();
    lock("/a", "infinity", "shared");
    lock("/a/b", "infinity", "shared");
    expect(lock("/a/b/c", 0, "shared").root).toBe("/a/b/c");
  });

  it("does not treat /ab as below /a", () => {
    const { lock } = setup();
    lock("/a", "infinity");
    expect(lock("/ab").root).toBe("/ab");
    expect(lock("/a-b", "infinity").root).toBe("/a-b");
  });

  it("treats everything as below a depth-infinity lock on the root", () => {
    const { lock } = setup();
    lock("/", "infinity");
    expect(() => lock("/a")).toThrow(LockConflict);
    const other = setup();
    other.lock("/deep/down");
    expect(() => other.lock("/", "infinity")).toThrow(LockConflict);
    expect(other.lock("/", 0).root).toBe("/");
  });

  it("rejects paths that are not gateway paths and timeouts that are not positive", () => {
    const { lock } = setup();
    for (const bad of ["", "a", "/a/", "//a", "/a//b"]) {
      expect(() => lock(bad)).toThrow(RangeError);
    }
    expect(() => lock("/a", 0, "exclusive", { timeoutSeconds: 0 })).toThrow(RangeError);
    expect(() => lock("/a", 0, "exclusive", { timeoutSeconds: Number.NaN })).toThrow(RangeError);
  });
});

describe("expiry", () => {
  it("drops a lock once its timeout passes, without waiting", () => {
    const { locks, lock, advance } = setup();
    const info = lock("/a", 0, "exclusive", { timeoutSeconds: 10 });
    advance(9.999);
    expect(locks.get(info.token)?.token).toBe(info.token);
    advance(0.001);
    expect(locks.get(info.token)).toBeUndefined();
    expect(locks.locksCovering("/a")).toEqual([]);
    expect(locks.canWrite("/a", []).allowed).toBe(true);
    expect(lock("/a").root).toBe("/a");
  });

  it("makes an expired token unknown to refresh and unlock", () => {
    const { locks, lock, advance } = setup();
    const info = lock("/a", 0, "exclusive", { timeoutSeconds: 10 });
    advance(11);
    expect(() => locks.refresh(info.token, 10)).toThrow(LockNotFound);
    expect(() => locks.unlock("/a", info.token)).toThrow(LockNotFound);
  });

  it("keeps an infinite timeout forever", () => {
    const { locks, lock, advance } = setup();
    const info = lock("/a", 0, "exclusive", { timeoutSeconds: Number.POSITIVE_INFINITY });
    advance(10 * 365 * 86_400);
    expect(locks.get(info.token)).toBeDefined();
  });
});

describe("refresh", () => {
  it("restarts the timeout from now (litmus refresh)", () => {
    const { locks, lock, advance, now } = setup();
    const info = lock("/a", 0, "exclusive", { timeoutSeconds: 10 });
    advance(8);
    const refreshed = locks.refresh(info.token, 30);
    expect(refreshed.expiresAt).toBe(now() + 30_000);
    expect(refreshed.timeoutSeconds).toBe(30);
    advance(20);
    expect(locks.get(info.token)).toBeDefined();
  });

  it("refreshes through a member of a depth-infinity lock (litmus indirect_refresh)", () => {
    const { locks, lock } = setup();
    const info = lock("/coll", "infinity");
    expect(locks.refresh(info.token, 60, { path: "/coll/member" }).token).toBe(info.token);
  });

  it("refuses an unknown token, a path the lock does not cover and another principal", () => {
    const { locks, lock } = setup();
    const info = lock("/a", 0, "exclusive", { principal: "ann" });
    expect(() => locks.refresh("opaquelocktoken:nope", 60)).toThrow(LockNotFound);
    expect(() => locks.refresh(info.token, 60, { path: "/b", principal: "ann" })).toThrow(
      LockTokenMismatch,
    );
    expect(() => locks.refresh(info.token, 60, { path: "/a/child", principal: "ann" })).toThrow(
      LockTokenMismatch,
    );
    expect(() => locks.refresh(info.token, 60, { path: "/a", principal: "bob" })).toThrow(
      LockForbidden,
    );
    expect(locks.refresh(info.token, 60, { path: "/a", principal: "ann" }).token).toBe(info.token);
  });
});

describe("unlock", () => {
  it("removes the lock so the resource can be locked again (litmus unlock)", () => {
    const { locks, lock } = setup();
    const info = lock("/a");
    locks.unlock("/a", info.token);
    expect(locks.get(info.token)).toBeUndefined();
    expect(() => locks.unlock("/a", info.token)).toThrow(LockNotFound);
    expect(lock("/a").root).toBe("/a");
  });

  it("refuses a bogus token and keeps the lock (litmus notowner_lock)", () => {
    const { locks, lock } = setup();
    const info = lock("/a");
    expect(() => locks.unlock("/a", `${info.token}x`)).toThrow(LockNotFound);
    expect(locks.get(info.token)).toBeDefined();
  });

  it("refuses a token whose lock does not cover the path", () => {
    const { locks, lock } = setup();
    const a = lock("/a");
    lock("/b");
    const error = catchError(() => locks.unlock("/b", a.token));
    expect(error).toBeInstanceOf(LockTokenMismatch);
    expect(error).toMatchObject({ token: a.token, path: "/b" });
    expect(locks.get(a.token)).toBeDefined();
  });

  it("unlocks a depth-infinity lock from a member URL", () => {
    const { locks, lock } = setup();
    const info = lock("/coll", "infinity");
    locks.unlock("/coll/x", info.token);
    expect(locks.get(info.token)).toBeUndefined();
  });

  it("leaves other shared locks on the resource in place", () => {
    const { locks, lock } = setup();
    const one = lock("/a", 0, "shared");
    const two = lock("/a", 0, "shared");
    locks.unlock("/a", one.token);
    expect(locks.locksCovering("/a").map((l) => l.token)).toEqual([two.token]);
  });

  it("refuses another principal", () => {
    const { locks, lock } = setup();
    const info = lock("/a", 0, "exclusive", { principal: "ann" });
    expect(() => locks.unlock("/a", info.token, "bob")).toThrow(LockForbidden);
    expect(() => locks.unlock("/a", info.token)).toThrow(LockForbidden);
    locks.unlock("/a", info.token, "ann");
    expect(locks.get(info.token)).toBeUndefined();
  });
});

describe("locksCovering", () => {
  it("lists locks on the path and depth-infinity locks on its ancestors", () => {
    const { locks, lock } = setup();
    const root = lock("/", "infinity", "shared");
    const a0 = lock("/a", 0, "shared");
    const ab = lock("/a/b", "infinity", "shared");
    lock("/a/b/c/d", 0, "shared"); // below: not covering /a/b/c
    lock("/a/bc", 0, "shared"); // a sibling sharing a prefix
    expect(locks.locksCovering("/a/b/c").map((l) => l.token)).toEqual([root.token, ab.token]);
    expect(locks.locksCovering("/a").map((l) => l.token)).toEqual([root.token, a0.token]);
    expect(locks.locksCovering("/").map((l) => l.token)).toEqual([root.token]);
  });

  it("ignores a depth-0 lock on an ancestor", () => {
    const { locks, lock } = setup();
    lock("/a", 0);
    expect(locks.locksCovering("/a/b")).toEqual([]);
  });
});

describe("canWrite", () => {
  it("blocks a write to a locked resource without its token (litmus notowner_modify)", () => {
    const { locks, lock } = setup();
    const info = lock("/a");
    const check = locks.canWrite("/a", []);
    expect(check.allowed).toBe(false);
    expect(check.allowed ? undefined : check.lock.token).toBe(info.token);
    expect(locks.canWrite("/a", ["opaquelocktoken:other"]).allowed).toBe(false);
  });

  it("allows the write with the token (litmus owner_modify)", () => {
    const { locks, lock } = setup();
    const info = lock("/a");
    expect(locks.canWrite("/a", [info.token])).toEqual({ allowed: true });
    expect(locks.canWrite("/b", [])).toEqual({ allowed: true });
  });

  it("needs the token of every shared lock on the resource", () => {
    const { locks, lock } = setup();
    const one = lock("/a", 0, "shared");
    const two = lock("/a", 0, "shared");
    expect(locks.canWrite("/a", [one.token]).allowed).toBe(false);
    expect(locks.canWrite("/a", [one.token, two.token]).allowed).toBe(true);
  });

  it("protects members of a depth-infinity lock (litmus lock_collection)", () => {
    const { locks, lock } = setup();
    const info = lock("/coll", "infinity");
    expect(locks.canWrite("/coll/new", [], { membership: true }).allowed).toBe(false);
    expect(locks.canWrite("/coll/sub/file", []).allowed).toBe(false);
    expect(locks.canWrite("/coll/sub/file", [info.token]).allowed).toBe(true);
    expect(locks.canWrite("/collection", []).allowed).toBe(true);
  });

  it("lets a depth-0 collection lock guard membership, not the members' content", () => {
    const { locks, lock } = setup();
    const info = lock("/coll", 0);
    expect(locks.canWrite("/coll/existing", []).allowed).toBe(true);
    expect(locks.canWrite("/coll/new", [], { membership: true }).allowed).toBe(false);
    expect(locks.canWrite("/coll/new", [info.token], { membership: true }).allowed).toBe(true);
    expect(locks.canWrite("/coll/sub/new", [], { membership: true }).allowed).toBe(true);
  });

  it("blocks a recursive write over a lock below, but not a plain one", () => {
    const { locks, lock } = setup();
    const below = lock("/a/b/c.txt");
    const check = locks.canWrite("/a", [], { recursive: true });
    expect(check.allowed ? undefined : check.lock.token).toBe(below.token);
    expect(locks.canWrite("/a", []).allowed).toBe(true);
    expect(locks.canWrite("/a", [below.token], { recursive: true }).allowed).toBe(true);
    expect(locks.canWrite("/", [], { recursive: true }).allowed).toBe(false);
  });

  it("does not treat /ab as below /a", () => {
    const { locks, lock } = setup();
    lock("/a", "infinity", "shared");
    lock("/a", 0, "shared");
    expect(locks.canWrite("/ab", [], { recursive: true, membership: true }).allowed).toBe(true);
    expect(locks.canWrite("/ab/x", [], { recursive: true, membership: true }).allowed).toBe(true);
    const other = setup();
    other.lock("/ab", "infinity");
    expect(other.locks.canWrite("/a", [], { recursive: true }).allowed).toBe(true);
    expect(other.locks.canWrite("/a/b", [], { membership: true }).allowed).toBe(true);
  });

  it("counts a token only for the principal who took the lock", () => {
    const { locks, lock } = setup();
    const info = lock("/a", 0, "exclusive", { principal: "ann" });
    expect(locks.canWrite("/a", [info.token], { principal: "ann" }).allowed).toBe(true);
    expect(locks.canWrite("/a", [info.token], { principal: "bob" }).allowed).toBe(false);
    expect(locks.canWrite("/a", [info.token]).allowed).toBe(false);
  });

  it("lets a copy read a locked source: only the destination is checked (litmus copy)", () => {
    const { locks, lock } = setup();
    lock("/src", "infinity");
    expect(locks.canWrite("/dst", [], { recursive: true, membership: true }).allowed).toBe(true);
  });
});

describe("move and remove", () => {
  it("drops locks on a deleted path and below, keeping ancestors and /ab", () => {
    const { locks, lock } = setup();
    const ancestor = lock("/", 0);
    const a = lock("/a", 0);
    const below = lock("/a/b", "infinity");
    const sibling = lock("/ab");
    locks.remove("/a");
    expect(locks.get(a.token)).toBeUndefined();
    expect(locks.get(below.token)).toBeUndefined();
    expect(locks.get(ancestor.token)).toBeDefined();
    expect(locks.get(sibling.token)).toBeDefined();
  });

  it("does not move locks with a moved resource, and drops those on a replaced destination", () => {
    const { locks, lock } = setup();
    const source = lock("/src/f");
    const replaced = lock("/dst");
    const destParent = lock("/parent", "infinity", "shared");
    locks.move("/src", "/parent/dst");
    locks.move("/other", "/dst");
    expect(locks.get(source.token)).toBeUndefined();
    expect(locks.get(replaced.token)).toBeUndefined();
    expect(locks.locksCovering("/src/f")).toEqual([]);
    // The moved resource is now under the destination's depth-infinity lock (§7.6).
    expect(locks.locksCovering("/parent/dst/f").map((l) => l.token)).toEqual([destParent.token]);
  });
});

describe("If header and lock system together", () => {
  function putAllowed(locks: MemoryLockSystem, path: string, ifHeader: string): number {
    const header = parseIfHeader(ifHeader);
    const resolve = (p: string) => ({
      etag: '"e1"',
      lockTokens: locks.locksCovering(p).map((l) => l.token),
    });
    if (!evaluateIf(header, resolve, path)) return 412;
    return locks.canWrite(path, submittedTokens(header)).allowed ? 204 : 423;
  }

  it("answers the litmus conditional PUT cases", () => {
    const { locks, lock } = setup();
    const { token } = lock("/lockme");
    expect(putAllowed(locks, "/lockme", `(<${token}>)`)).toBe(204); // cond_put
    expect(putAllowed(locks, "/lockme", `(<opaquelocktoken:fake>)`)).toBe(412); // fail_cond_put
    expect(putAllowed(locks, "/lockme", `(<${token}>) (Not <DAV:no-lock>)`)).toBe(204);
    expect(putAllowed(locks, "/lockme", `(<${token}x>) (Not <DAV:no-lock>)`)).toBe(423);
    expect(putAllowed(locks, "/lockme", `(<${token}> ["e1"]) (Not <DAV:no-lock> ["e1"])`)).toBe(
      204,
    );
    expect(putAllowed(locks, "/lockme", `(<${token}> ["x"]) (Not <DAV:no-lock> ["x"])`)).toBe(412);
    locks.unlock("/lockme", token);
    expect(putAllowed(locks, "/lockme", `(<${token}>)`)).toBe(412); // fail_cond_put_unlocked
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

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected an error");
}
