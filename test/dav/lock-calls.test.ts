/**
 * A request asks the lock system a fixed number of times, however many paths it concerns: a
 * lock table shared by several gateways pays a round trip for each ask. PROPFIND takes one
 * snapshot for all its entries, an If header one for all the resources it names, and a write
 * with no lock in the way one canWrite.
 */
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MemoryLockSystem, type LockSystem } from "../../src/dav/locks.js";
import type { FileSystem, Member } from "../../src/drive/types.js";
import { NotFound } from "../../src/errors.js";
import { useDavOver } from "../helpers/dav-over.js";
import { propfindBody, raw, responseFor } from "../helpers/http-raw.js";

const MEMBERS = 2_000;
const name = (n: number) => `f${String(n).padStart(5, "0")}.txt`;

const member = (path: string, isDir: boolean): Member => ({
  path,
  name: path.slice(path.lastIndexOf("/") + 1),
  isDir,
  size: 0,
  etag: path,
  mtimeMs: 0,
  ctimeMs: 0,
  uploading: false,
});
const members = Array.from({ length: MEMBERS }, (_, i) => member(`/big/${name(i)}`, false));
const drive: Pick<FileSystem, "stat" | "list" | "remove"> = {
  async stat(path) {
    if (path === "/" || path === "/big") return member(path, true);
    const found = members.find((m) => m.path === path);
    if (!found) throw new NotFound(path);
    return found;
  },
  async list(path) {
    if (path === "/big") return members;
    if (path === "/") return [member("/big", true)];
    throw new NotFound(path);
  },
  async remove() {},
};

/** `locks`, counting the calls made to each of its methods. */
function counting(locks: LockSystem): { locks: LockSystem; calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const proxy = new Proxy(locks, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls[String(key)] = (calls[String(key)] ?? 0) + 1;
        return (value as (...args: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { locks: proxy, calls };
}

describe("lock-system calls per request", () => {
  const memory = new MemoryLockSystem();
  const { locks, calls } = counting(memory);
  const dav = useDavOver(drive as FileSystem, locks);
  let token: string;

  beforeAll(async () => {
    ({ token } = await memory.create({
      root: `/big/${name(1)}`,
      depth: 0,
      scope: "exclusive",
      ownerXml: "",
      timeoutSeconds: 600,
    }));
  });
  beforeEach(() => {
    for (const key of Object.keys(calls)) delete calls[key];
  });

  it(`PROPFIND Depth 1 of ${MEMBERS} members takes one snapshot`, async () => {
    const r = await raw(dav.base, "PROPFIND", "/big/", {
      headers: { depth: "1" },
      body: propfindBody("<D:getetag/>", "<D:lockdiscovery/>"),
    });
    expect(r.status).toBe(207);
    expect(r.text.match(/<D:response>/g)).toHaveLength(MEMBERS + 1);
    expect(responseFor(r.text, `/big/${name(1)}`)).toContain(token);
    expect(responseFor(r.text, `/big/${name(2)}`)).not.toContain("activelock");
    expect(calls).toEqual({ snapshot: 1 });
  });

  it("an If header naming several resources takes one snapshot; a free write one canWrite", async () => {
    const r = await raw(dav.base, "DELETE", `/big/${name(2)}`, {
      headers: { if: `</big/${name(2)}> (Not <DAV:no-lock>) </big/${name(1)}> (<${token}>)` },
    });
    expect(r.status).toBe(204);
    expect(calls).toEqual({ snapshot: 1, canWrite: 1, remove: 1 });
  });
});
