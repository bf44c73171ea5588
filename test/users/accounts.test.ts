/**
 * Users and the Cloudreve accounts they work in, over HTTP against a real gateway and emulator:
 * isolation between accounts (drive, cache, locks), users sharing one account from different
 * root folders, lock ownership between users, read-only users, Cloudreve sign-in
 * (`auth: "cloudreve"`) and idle accounts being let go.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaults } from "../../src/config.js";
import { startEmulator } from "../../src/emulator/index.js";
import type { RunningEmulator } from "../../src/emulator/options.js";
import { createLogger } from "../../src/log.js";
import { hashPassword } from "../../src/passwords.js";
import { startGateway, type Gateway } from "../../src/server.js";
import { calls, R, resetStats } from "../helpers/control.js";
import {
  Api,
  EMAIL,
  myUri,
  ok,
  PASSWORD,
  put,
  upstreamBytes,
  upstreamInfo,
  type CrFile,
} from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import {
  hrefs,
  LOCK_EXCLUSIVE,
  LOCK_SHARED,
  propfindBody,
  raw,
  responseFor,
  totalCalls,
  type RawOptions,
  type RawReply,
} from "../helpers/http-raw.js";
import { until } from "../helpers/wait.js";

const EVENTS = "GET /api/v4/file/events";

interface Who {
  user: string;
  password: string;
}

const ALICE: Who = { user: "alice", password: "alice's gateway password" };
const BOB: Who = { user: "bob", password: "bob's gateway password" };
const KIM: Who = { user: "kim", password: "kim's gateway password" };
const READER: Who = { user: "reader", password: "reader's gateway password" };
const BERT: Who = { user: "bert", password: "bert's gateway password" };
const DORA: Who = { user: "dora", password: "dora's gateway password" };

const [ALICE_HASH, BOB_HASH, KIM_HASH, READER_HASH, BERT_HASH, DORA_HASH] = await Promise.all(
  [ALICE, BOB, KIM, READER, BERT, DORA].map((w) => hashPassword(w.password)),
);

/** Upstream accounts besides the emulator's primary one (the gateway's own in users mode). */
const BOB_ACCOUNT = { email: "bob@example.com", password: "bob-upstream-pw" };
const DORA_ACCOUNT = { email: "dora@example.com", password: "dora-upstream-pw" };

type Dav = (method: string, path: string, options?: RawOptions) => Promise<RawReply>;

/** Requests to the gateway signed in as `who`. */
function as(fx: { url: string }, who: Who): Dav {
  return (method, path, options = {}) => raw(fx.url, method, path, { ...options, auth: who });
}

const tokenOf = (r: RawReply) => /^<(.+)>$/.exec(String(r.headers["lock-token"]))![1]!;

/** The names a PROPFIND Depth 1 of a folder lists, the folder itself left out. */
async function davNames(dav: Dav, folder = "/"): Promise<string[]> {
  const r = await dav("PROPFIND", folder, { headers: { depth: "1" } });
  expect(r.status, r.text).toBe(207);
  const [self, ...members] = hrefs(r.text);
  expect(self).toBe(folder.endsWith("/") ? folder : `${folder}/`);
  return members.map((h) => decodeURIComponent(h.replace(/\/$/, "").split("/").pop()!));
}

/** The names in a folder of the drive the API is signed in to. */
async function upstreamNames(api: Api, folder = ""): Promise<string[]> {
  const r = await api.call<{ files: CrFile[] }>("GET", "/file", {
    query: { uri: myUri(folder), page_size: 1000 },
  });
  return ok(r).files.map((f) => f.name);
}

async function signedIn(base: string, account: { email: string; password: string }) {
  const api = new Api(base);
  await api.login(account.email, account.password);
  return api;
}

const text = async (api: Api, path: string) => (await upstreamBytes(api, path)).toString();

// -------------------------------------------------------------------------------------------

describe("two users in two accounts", () => {
  const fx = useGateway(
    { extraUsers: [BOB_ACCOUNT] },
    {
      users: [
        { name: ALICE.user, passwordHash: ALICE_HASH },
        { name: BOB.user, passwordHash: BOB_HASH, account: BOB_ACCOUNT },
      ],
    },
  );
  let alice: Dav;
  let bob: Dav;
  /** The drives as Cloudreve keeps them: the gateway's own account, and Bob's. */
  let ownApi: Api;
  let bobApi: Api;
  beforeAll(async () => {
    alice = as(fx, ALICE);
    bob = as(fx, BOB);
    ownApi = await signedIn(fx.emu.url, { email: EMAIL, password: PASSWORD });
    bobApi = await signedIn(fx.emu.url, BOB_ACCOUNT);
  });

  it("each user's writes land in their own account and read back", async () => {
    expect((await alice("PUT", "/alice-1.txt", { body: "alice one" })).status).toBe(201);
    expect((await bob("PUT", "/bob-1.txt", { body: "bob one, longer" })).status).toBe(201);
    expect((await alice("MKCOL", "/alice-dir")).status).toBe(201);
    expect((await bob("MKCOL", "/bob-dir")).status).toBe(201);
    expect((await alice("GET", "/alice-1.txt")).text).toBe("alice one");
    expect((await bob("GET", "/bob-1.txt")).text).toBe("bob one, longer");

    const own = await upstreamNames(ownApi);
    const bobs = await upstreamNames(bobApi);
    expect(own).toEqual(expect.arrayContaining(["alice-1.txt", "alice-dir"]));
    expect(own).not.toContain("bob-1.txt");
    expect(own).not.toContain("bob-dir");
    expect(bobs).toEqual(expect.arrayContaining(["bob-1.txt", "bob-dir"]));
    expect(bobs).not.toContain("alice-1.txt");
    expect(bobs).not.toContain("alice-dir");
    expect(await text(ownApi, "/alice-1.txt")).toBe("alice one");
    expect(await text(bobApi, "/bob-1.txt")).toBe("bob one, longer");
  });

  it("a PROPFIND Depth 1 of / lists only the user's own drive", async () => {
    const seenByAlice = await davNames(alice);
    const seenByBob = await davNames(bob);
    expect(seenByAlice).toEqual(expect.arrayContaining(["alice-1.txt", "alice-dir"]));
    expect(seenByBob).toEqual(expect.arrayContaining(["bob-1.txt", "bob-dir"]));
    for (const name of seenByAlice) expect(name.startsWith("bob-")).toBe(false);
    for (const name of seenByBob) expect(name.startsWith("alice-")).toBe(false);
    // The listings are those of the accounts upstream.
    expect([...seenByAlice].sort()).toEqual((await upstreamNames(ownApi)).sort());
    expect([...seenByBob].sort()).toEqual((await upstreamNames(bobApi)).sort());
  });

  it("Alice's requests on a path only Bob has: 404, or acting in Alice's drive alone", async () => {
    expect((await bob("PUT", "/bob-only.txt", { body: "bob's private bytes" })).status).toBe(201);

    expect((await alice("GET", "/bob-only.txt")).status).toBe(404);
    expect((await alice("HEAD", "/bob-only.txt")).status).toBe(404);
    expect((await alice("PROPFIND", "/bob-only.txt", { headers: { depth: "0" } })).status).toBe(
      404,
    );
    expect((await alice("DELETE", "/bob-only.txt")).status).toBe(404);
    const moved = await alice("MOVE", "/bob-only.txt", {
      headers: { destination: "/stolen.txt" },
    });
    expect(moved.status).toBe(404);
    const copied = await alice("COPY", "/bob-only.txt", {
      headers: { destination: "/copied.txt" },
    });
    expect(copied.status).toBe(404);
    // A PUT creates the name in Alice's own drive.
    expect((await alice("PUT", "/bob-only.txt", { body: "alice writes" })).status).toBe(201);

    expect(await text(bobApi, "/bob-only.txt")).toBe("bob's private bytes");
    expect(await text(ownApi, "/bob-only.txt")).toBe("alice writes");
    for (const api of [ownApi, bobApi]) {
      expect(await upstreamInfo(api, "/stolen.txt")).toBeUndefined();
      expect(await upstreamInfo(api, "/copied.txt")).toBeUndefined();
    }
    expect((await bob("GET", "/bob-only.txt")).text).toBe("bob's private bytes");
    expect((await alice("GET", "/bob-only.txt")).text).toBe("alice writes");
  });

  it("a LOCK by Alice on a name Bob has locks an empty file of her own, not Bob's", async () => {
    expect((await bob("PUT", "/bob-lock.txt", { body: "bob v1" })).status).toBe(201);
    const locked = await alice("LOCK", "/bob-lock.txt", { body: LOCK_EXCLUSIVE });
    expect(locked.status).toBe(201);
    const token = tokenOf(locked);
    expect((await upstreamInfo(ownApi, "/bob-lock.txt"))?.size).toBe(0);

    // Bob's file is in another account: Alice's lock is not in its way.
    expect((await bob("PUT", "/bob-lock.txt", { body: "bob v2" })).status).toBe(204);
    expect((await bob("GET", "/bob-lock.txt")).text).toBe("bob v2");
    const discovery = await bob("PROPFIND", "/bob-lock.txt", {
      headers: { depth: "0" },
      body: propfindBody("<D:lockdiscovery/>"),
    });
    expect(discovery.status).toBe(207);
    expect(discovery.text).not.toContain(token);
    // Nor can Bob release it: his account has no such lock.
    const unlock = await bob("UNLOCK", "/bob-lock.txt", {
      headers: { "lock-token": `<${token}>` },
    });
    expect(unlock.status).toBe(409);
    // In Alice's own drive, her lock holds.
    expect((await alice("PUT", "/bob-lock.txt", { body: "no token" })).status).toBe(423);
    expect(
      (await alice("UNLOCK", "/bob-lock.txt", { headers: { "lock-token": `<${token}>` } })).status,
    ).toBe(204);

    expect(await text(bobApi, "/bob-lock.txt")).toBe("bob v2");
    expect((await upstreamInfo(ownApi, "/bob-lock.txt"))?.size).toBe(0);
  });

  it("a MOVE or COPY onto a name Bob has does not touch Bob's file", async () => {
    expect((await bob("PUT", "/bob-dest.txt", { body: "bob's destination" })).status).toBe(201);
    expect((await alice("PUT", "/alice-src.txt", { body: "alice source" })).status).toBe(201);
    expect((await alice("PUT", "/alice-src2.txt", { body: "alice source 2" })).status).toBe(201);

    // Overwrite: F, and yet it goes ahead: Alice has no such destination.
    const moved = await alice("MOVE", "/alice-src.txt", {
      headers: { destination: "/bob-dest.txt", overwrite: "F" },
    });
    expect(moved.status).toBe(201);
    const copied = await alice("COPY", "/alice-src2.txt", {
      headers: { destination: `${fx.url}/bob-dest-copy.txt`, overwrite: "F" },
    });
    expect(copied.status).toBe(201);
    expect((await bob("PUT", "/bob-dest-copy.txt", { body: "bob's copy" })).status).toBe(201);

    expect(await text(bobApi, "/bob-dest.txt")).toBe("bob's destination");
    expect(await text(bobApi, "/bob-dest-copy.txt")).toBe("bob's copy");
    expect(await text(ownApi, "/bob-dest.txt")).toBe("alice source");
    expect(await text(ownApi, "/bob-dest-copy.txt")).toBe("alice source 2");
    expect(await upstreamInfo(ownApi, "/alice-src.txt")).toBeUndefined();
    expect(await upstreamInfo(bobApi, "/alice-src.txt")).toBeUndefined();
    expect((await bob("GET", "/bob-dest.txt")).text).toBe("bob's destination");
    expect((await alice("GET", "/bob-dest.txt")).text).toBe("alice source");
  });

  it("the cache never serves one user's entry to the other", async () => {
    const mine = { alice: "alice's same.txt", bob: "bob's same.txt, which is longer" };
    expect((await alice("PUT", "/same.txt", { body: mine.alice })).status).toBe(201);
    expect((await bob("PUT", "/same.txt", { body: mine.bob })).status).toBe(201);
    const length = propfindBody("<D:getcontentlength/>", "<D:getetag/>");
    const etags = { alice: new Set<string>(), bob: new Set<string>() };
    for (let round = 0; round < 20; round++) {
      const order = round % 2 === 0 ? (["alice", "bob"] as const) : (["bob", "alice"] as const);
      for (const who of order) {
        const dav = who === "alice" ? alice : bob;
        const get = await dav("GET", "/same.txt");
        expect(get.status).toBe(200);
        expect(get.text, `${who}, round ${round}`).toBe(mine[who]);
        const pf = await dav("PROPFIND", "/same.txt", { headers: { depth: "0" }, body: length });
        expect(pf.status).toBe(207);
        expect(pf.text).toContain(`<D:getcontentlength>${mine[who].length}</D:getcontentlength>`);
        etags[who].add(/<D:getetag>([^<]*)<\/D:getetag>/.exec(pf.text)![1]!);
        // The folder listing (cached as a whole) carries each user's own size too.
        const list = await dav("PROPFIND", "/", { headers: { depth: "1" }, body: length });
        expect(responseFor(list.text, "/same.txt")).toContain(
          `<D:getcontentlength>${mine[who].length}</D:getcontentlength>`,
        );
      }
    }
    expect(etags.alice.size).toBe(1);
    expect(etags.bob.size).toBe(1);
    expect([...etags.alice][0]).not.toBe([...etags.bob][0]);

    // An overwrite by one leaves the other's cached entry, and bytes, alone.
    expect((await alice("PUT", "/same.txt", { body: "alice again" })).status).toBe(204);
    expect((await alice("GET", "/same.txt")).text).toBe("alice again");
    expect((await bob("GET", "/same.txt")).text).toBe(mine.bob);
    expect(await text(bobApi, "/same.txt")).toBe(mine.bob);
  });
});

// -------------------------------------------------------------------------------------------

describe("one account, different root folders", () => {
  const fx = useGateway(
    {},
    {
      users: [
        { name: ALICE.user, passwordHash: ALICE_HASH },
        { name: KIM.user, passwordHash: KIM_HASH, root: "/Kids" },
      ],
    },
  );
  let alice: Dav;
  let kim: Dav;
  let api: Api;
  beforeAll(async () => {
    alice = as(fx, ALICE);
    kim = as(fx, KIM);
    api = await signedIn(fx.emu.url, { email: EMAIL, password: PASSWORD });
    expect((await alice("MKCOL", "/Kids")).status).toBe(201);
    expect((await alice("PUT", "/Kids/doc.txt", { body: "kids' doc" })).status).toBe(201);
    expect((await alice("MKCOL", "/Kids/games")).status).toBe(201);
    expect((await alice("PUT", "/outside.txt", { body: "grown-ups only" })).status).toBe(201);
  });

  it("the root folder's members are the user's /, with hrefs relative to it", async () => {
    const r = await kim("PROPFIND", "/", { headers: { depth: "1" } });
    expect(r.status).toBe(207);
    expect(hrefs(r.text).sort()).toEqual(["/", "/doc.txt", "/games/"]);
    expect(r.text).not.toContain("/Kids");
    expect(r.text).not.toContain("outside.txt");
    const doc = await kim("PROPFIND", "/doc.txt", { headers: { depth: "0" } });
    expect(hrefs(doc.text)).toEqual(["/doc.txt"]);
    expect((await kim("GET", "/doc.txt")).text).toBe("kids' doc");
    // Alice sees the folder where it is.
    expect(await davNames(alice, "/Kids/")).toEqual(expect.arrayContaining(["doc.txt", "games"]));
  });

  it("writes land inside the root folder", async () => {
    expect((await kim("PUT", "/games/score.txt", { body: "42" })).status).toBe(201);
    expect(await text(api, "/Kids/games/score.txt")).toBe("42");
    expect(await upstreamInfo(api, "/games")).toBeUndefined();
    const moved = await kim("MOVE", "/games/score.txt", {
      headers: { destination: `${fx.url}/score.txt` },
    });
    expect(moved.status).toBe(201);
    expect(await text(api, "/Kids/score.txt")).toBe("42");
    expect(await upstreamInfo(api, "/score.txt")).toBeUndefined();
    expect((await alice("GET", "/Kids/score.txt")).text).toBe("42");
  });

  it("nothing outside the root folder can be reached", async () => {
    expect((await kim("GET", "/outside.txt")).status).toBe(404);
    for (const path of ["/../outside.txt", "/%2e%2e/outside.txt", "/games/../../outside.txt"]) {
      expect((await kim("GET", path)).status, path).toBe(400);
      expect((await kim("DELETE", path)).status, path).toBe(400);
    }
    for (const destination of ["/../stolen.txt", `${fx.url}/%2e%2e/stolen.txt`]) {
      const r = await kim("COPY", "/doc.txt", { headers: { destination } });
      expect(r.status, destination).toBe(400);
    }
    expect(await upstreamInfo(api, "/stolen.txt")).toBeUndefined();
    expect(await text(api, "/outside.txt")).toBe("grown-ups only");
    // "/Kids" in Kim's view is /Kids/Kids.
    expect((await kim("PROPFIND", "/Kids", { headers: { depth: "0" } })).status).toBe(404);
    expect((await kim("MKCOL", "/Kids")).status).toBe(201);
    expect((await upstreamInfo(api, "/Kids/Kids"))?.type).toBe(1);
    const r = await alice("PROPFIND", "/Kids/Kids", { headers: { depth: "0" } });
    expect(hrefs(r.text)).toEqual(["/Kids/Kids/"]);
  });

  it("a lock Alice takes inside the root folder holds for Kim, and lockdiscovery shows it", async () => {
    const locked = await alice("LOCK", "/Kids/doc.txt", { body: LOCK_EXCLUSIVE });
    expect(locked.status).toBe(200);
    const token = tokenOf(locked);

    expect((await kim("PUT", "/doc.txt", { body: "kim was here" })).status).toBe(423);
    const withToken = await kim("PUT", "/doc.txt", {
      body: "kim was here",
      headers: { if: `(<${token}>)` },
    });
    expect(withToken.status).toBe(423);
    expect((await kim("DELETE", "/doc.txt")).status).toBe(423);
    expect((await kim("GET", "/doc.txt")).text).toBe("kids' doc");

    const discovery = await kim("PROPFIND", "/doc.txt", {
      headers: { depth: "0" },
      body: propfindBody("<D:lockdiscovery/>"),
    });
    expect(discovery.status).toBe(207);
    expect(discovery.text).toContain(`<D:locktoken><D:href>${token}</D:href></D:locktoken>`);
    expect(discovery.text).toContain("<D:lockroot><D:href>/doc.txt</D:href></D:lockroot>");
    expect(discovery.text).not.toContain("/Kids");

    expect(
      (await alice("UNLOCK", "/Kids/doc.txt", { headers: { "lock-token": `<${token}>` } })).status,
    ).toBe(204);
    expect((await kim("PUT", "/doc.txt", { body: "kim was here" })).status).toBe(204);
    expect(await text(api, "/Kids/doc.txt")).toBe("kim was here");
  });

  it("a lock Kim takes on their / covers the root folder for Alice", async () => {
    const locked = await kim("LOCK", "/", { body: LOCK_EXCLUSIVE });
    expect(locked.status).toBe(200);
    const token = tokenOf(locked);
    expect(locked.text).toContain("<D:lockroot><D:href>/</D:href></D:lockroot>");
    expect((await alice("PUT", "/Kids/new.txt", { body: "x" })).status).toBe(423);
    expect((await alice("PUT", "/elsewhere.txt", { body: "x" })).status).toBe(201);
    const discovery = await alice("PROPFIND", "/Kids", {
      headers: { depth: "0" },
      body: propfindBody("<D:lockdiscovery/>"),
    });
    expect(discovery.text).toContain("<D:lockroot><D:href>/Kids/</D:href></D:lockroot>");
    expect((await kim("UNLOCK", "/", { headers: { "lock-token": `<${token}>` } })).status).toBe(
      204,
    );
    expect(await upstreamInfo(api, "/Kids/new.txt")).toBeUndefined();
  });
});

// -------------------------------------------------------------------------------------------

describe("lock ownership between users of one account", () => {
  const fx = useGateway(
    {},
    {
      users: [
        { name: ALICE.user, passwordHash: ALICE_HASH },
        { name: BOB.user, passwordHash: BOB_HASH },
      ],
    },
  );
  let alice: Dav;
  let bob: Dav;
  beforeAll(() => {
    alice = as(fx, ALICE);
    bob = as(fx, BOB);
  });

  it("a token works only for the user who took the lock", async () => {
    expect((await alice("PUT", "/f.txt", { body: "v1" })).status).toBe(201);
    const locked = await alice("LOCK", "/f.txt", {
      body: LOCK_EXCLUSIVE,
      headers: { timeout: "Second-300" },
    });
    expect(locked.status).toBe(200);
    const token = tokenOf(locked);
    const ifToken = { if: `(<${token}>)` };

    // Bob presenting Alice's token: the lock is not his.
    expect((await bob("PUT", "/f.txt", { body: "bob's v2", headers: ifToken })).status).toBe(423);
    expect((await bob("PUT", "/f.txt", { body: "bob's v2" })).status).toBe(423);
    expect((await bob("DELETE", "/f.txt", { headers: ifToken })).status).toBe(423);
    expect((await bob("GET", "/f.txt")).text).toBe("v1");
    const unlock = await bob("UNLOCK", "/f.txt", { headers: { "lock-token": `<${token}>` } });
    expect(unlock.status).toBe(403);
    const refresh = await bob("LOCK", "/f.txt", {
      headers: { ...ifToken, timeout: "Second-600" },
    });
    expect(refresh.status).toBe(403);
    // The lock is still there, Alice's.
    expect((await bob("PUT", "/f.txt", { body: "bob's v2" })).status).toBe(423);
    expect((await alice("GET", "/f.txt")).text).toBe("v1");

    // Alice uses it.
    expect((await alice("PUT", "/f.txt", { body: "alice's v2", headers: ifToken })).status).toBe(
      204,
    );
    expect((await bob("GET", "/f.txt")).text).toBe("alice's v2");
    const own = await alice("LOCK", "/f.txt", { headers: { ...ifToken, timeout: "Second-600" } });
    expect(own.status).toBe(200);
    expect(own.text).toContain("Second-600");
    expect(
      (await alice("UNLOCK", "/f.txt", { headers: { "lock-token": `<${token}>` } })).status,
    ).toBe(204);

    // Released: Bob writes.
    expect((await bob("PUT", "/f.txt", { body: "bob's v3" })).status).toBe(204);
    expect((await alice("GET", "/f.txt")).text).toBe("bob's v3");
  });

  it("shared locks of two users coexist; an exclusive one by either → 423", async () => {
    expect((await alice("PUT", "/s.txt", { body: "shared v1" })).status).toBe(201);
    const a = await alice("LOCK", "/s.txt", { body: LOCK_SHARED });
    const b = await bob("LOCK", "/s.txt", { body: LOCK_SHARED });
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(tokenOf(a)).not.toBe(tokenOf(b));
    expect((await alice("LOCK", "/s.txt", { body: LOCK_EXCLUSIVE })).status).toBe(423);
    expect((await bob("LOCK", "/s.txt", { body: LOCK_EXCLUSIVE })).status).toBe(423);
    // A shared lock on a name nobody has yet: both create-and-lock, one file.
    const na = await alice("LOCK", "/s-new.txt", { body: LOCK_SHARED });
    const nb = await bob("LOCK", "/s-new.txt", { body: LOCK_SHARED });
    expect([200, 201]).toContain(na.status);
    expect([200, 201]).toContain(nb.status);
    expect([na.status, nb.status]).toContain(201);

    const discovery = await bob("PROPFIND", "/s.txt", {
      headers: { depth: "0" },
      body: propfindBody("<D:lockdiscovery/>"),
    });
    expect(discovery.text).toContain(tokenOf(a));
    expect(discovery.text).toContain(tokenOf(b));
    // Neither may release the other's.
    const cross = await bob("UNLOCK", "/s.txt", { headers: { "lock-token": `<${tokenOf(a)}>` } });
    expect(cross.status).toBe(403);
    // A write without a token is refused, and the bytes stay.
    expect((await alice("PUT", "/s.txt", { body: "shared v2" })).status).toBe(423);
    expect((await bob("GET", "/s.txt")).text).toBe("shared v1");

    for (const [dav, r, path] of [
      [alice, a, "/s.txt"],
      [bob, b, "/s.txt"],
      [alice, na, "/s-new.txt"],
      [bob, nb, "/s-new.txt"],
    ] as const) {
      const unlocked = await dav("UNLOCK", path, { headers: { "lock-token": `<${tokenOf(r)}>` } });
      expect(unlocked.status).toBe(204);
    }
    expect((await bob("PUT", "/s.txt", { body: "shared v3" })).status).toBe(204);
    expect((await alice("GET", "/s.txt")).text).toBe("shared v3");
  });
});

// -------------------------------------------------------------------------------------------

const PROPPATCH = `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x-test"><D:set><D:prop><Z:colour>red</Z:colour></D:prop></D:set></D:propertyupdate>`;
const READS = ["OPTIONS", "GET", "HEAD", "PROPFIND"];

/** Every write method on `file` (and, for MKCOL, a new folder) as `dav`. */
async function everyWrite(dav: Dav, file: string): Promise<Record<string, number>> {
  const fake = "opaquelocktoken:00000000-0000-0000-0000-000000000000";
  const replies: Record<string, RawReply> = {
    PUT: await dav("PUT", file, { body: "overwritten" }),
    "PUT new": await dav("PUT", "/ro-new.txt", { body: "new" }),
    MKCOL: await dav("MKCOL", "/ro-dir"),
    DELETE: await dav("DELETE", file),
    COPY: await dav("COPY", file, { headers: { destination: "/ro-copy.txt" } }),
    MOVE: await dav("MOVE", file, { headers: { destination: "/ro-moved.txt" } }),
    PROPPATCH: await dav("PROPPATCH", file, { body: PROPPATCH }),
    LOCK: await dav("LOCK", file, { body: LOCK_EXCLUSIVE }),
    "LOCK new": await dav("LOCK", "/ro-locked.txt", { body: LOCK_EXCLUSIVE }),
    "LOCK refresh": await dav("LOCK", file, { headers: { if: `(<${fake}>)` } }),
    UNLOCK: await dav("UNLOCK", file, { headers: { "lock-token": `<${fake}>` } }),
  };
  return Object.fromEntries(Object.entries(replies).map(([k, r]) => [k, r.status]));
}

const allForbidden = (statuses: Record<string, number>) =>
  Object.fromEntries(Object.keys(statuses).map((k) => [k, 403]));

const allowOf = (r: RawReply) =>
  String(r.headers["allow"])
    .split(",")
    .map((m) => m.trim());

/** Nothing the read-only requests named exists upstream, and the file is as it was. */
async function untouched(api: Api, file: string, body: string): Promise<void> {
  expect(await text(api, file)).toBe(body);
  for (const name of ["/ro-new.txt", "/ro-dir", "/ro-copy.txt", "/ro-moved.txt", "/ro-locked.txt"])
    expect(await upstreamInfo(api, name), name).toBeUndefined();
  expect((await upstreamInfo(api, file))?.metadata ?? {}).not.toHaveProperty(
    "dav:urn:x-test|colour",
  );
}

describe("read-only: the whole gateway", () => {
  const fx = useGateway(
    {},
    { users: [{ name: ALICE.user, passwordHash: ALICE_HASH }], readOnly: true },
  );
  let alice: Dav;
  let api: Api;
  beforeAll(async () => {
    alice = as(fx, ALICE);
    api = await signedIn(fx.emu.url, { email: EMAIL, password: PASSWORD });
    await put(api, "/ro.txt", "read me");
  });

  it("every write method → 403, with no upstream call; reads still work", async () => {
    expect((await alice("GET", "/ro.txt")).text).toBe("read me");
    expect(await davNames(alice)).toContain("ro.txt");
    await fx.resetStats();
    const statuses = await everyWrite(alice, "/ro.txt");
    expect(statuses).toEqual(allForbidden(statuses));
    expect(totalCalls(await fx.stats())).toBe(0);

    expect((await alice("GET", "/ro.txt")).text).toBe("read me");
    expect((await alice("HEAD", "/ro.txt")).status).toBe(200);
    const pf = await alice("PROPFIND", "/ro.txt", { headers: { depth: "0" } });
    expect(pf.status).toBe(207);
    await untouched(api, "/ro.txt", "read me");
  });

  it("OPTIONS lists only the read methods", async () => {
    for (const path of ["/ro.txt", "/", "/missing.txt"]) {
      const r = await alice("OPTIONS", path);
      expect(r.status).toBe(200);
      expect(allowOf(r).sort()).toEqual([...READS].sort());
    }
    // A method the gateway does not know: 405 with the same Allow.
    const odd = await alice("PATCH", "/ro.txt", { body: "x" });
    expect(odd.status).toBe(405);
    expect(allowOf(odd).sort()).toEqual([...READS].sort());
  });
});

describe("read-only: one user of the gateway", () => {
  const fx = useGateway(
    {},
    {
      users: [
        { name: ALICE.user, passwordHash: ALICE_HASH },
        { name: READER.user, passwordHash: READER_HASH, readOnly: true },
      ],
    },
  );
  let alice: Dav;
  let reader: Dav;
  let api: Api;
  beforeAll(async () => {
    alice = as(fx, ALICE);
    reader = as(fx, READER);
    api = await signedIn(fx.emu.url, { email: EMAIL, password: PASSWORD });
    expect((await alice("PUT", "/ro.txt", { body: "read me" })).status).toBe(201);
  });

  it("the read-only user's writes → 403 with no upstream call; reads work", async () => {
    expect((await reader("GET", "/ro.txt")).text).toBe("read me");
    expect(await davNames(reader)).toContain("ro.txt");
    await fx.resetStats();
    const statuses = await everyWrite(reader, "/ro.txt");
    expect(statuses).toEqual(allForbidden(statuses));
    expect(totalCalls(await fx.stats())).toBe(0);
    expect((await reader("GET", "/ro.txt")).text).toBe("read me");
    await untouched(api, "/ro.txt", "read me");
  });

  it("the other user of the same account still writes", async () => {
    expect((await alice("PUT", "/ro.txt", { body: "alice writes" })).status).toBe(204);
    expect((await alice("MKCOL", "/alice-dir")).status).toBe(201);
    expect((await alice("PROPPATCH", "/ro.txt", { body: PROPPATCH })).status).toBe(207);
    const locked = await alice("LOCK", "/ro.txt", { body: LOCK_EXCLUSIVE });
    expect(locked.status).toBe(200);
    // A read-only user cannot release it either (403, before the lock table is consulted).
    const unlock = await reader("UNLOCK", "/ro.txt", {
      headers: { "lock-token": `<${tokenOf(locked)}>` },
    });
    expect(unlock.status).toBe(403);
    expect(
      (await alice("UNLOCK", "/ro.txt", { headers: { "lock-token": `<${tokenOf(locked)}>` } }))
        .status,
    ).toBe(204);
    expect((await reader("GET", "/ro.txt")).text).toBe("alice writes");
    expect(await text(api, "/ro.txt")).toBe("alice writes");
    expect((await upstreamInfo(api, "/alice-dir"))?.type).toBe(1);
    // Where a PROPPATCH lands upstream (what the read-only check looks for).
    const metadata = (await upstreamInfo(api, "/ro.txt"))?.metadata ?? {};
    expect(Object.keys(metadata).filter((k) => k.includes("colour"))).toHaveLength(1);
  });

  it("OPTIONS lists only the read methods for the read-only user", async () => {
    const r = await reader("OPTIONS", "/ro.txt");
    expect(r.status).toBe(200);
    expect(allowOf(r).sort()).toEqual([...READS].sort());
    const writer = await alice("OPTIONS", "/ro.txt");
    expect(allowOf(writer)).toEqual(expect.arrayContaining(["PUT", "DELETE", "LOCK", "MOVE"]));
  });
});

// -------------------------------------------------------------------------------------------

describe('auth: "cloudreve"', () => {
  const BOB_C = { user: "bob@example.com", password: "bob-upstream-pw" };
  const CAROL_C = { user: "carol@example.com", password: "carol-upstream-pw" };
  const DAVE_C = { user: "dave@example.com", password: "dave-upstream-pw" };
  const ERIN_C = { user: "erin@example.com", password: "erin-upstream-pw" };
  const FRANK_C = { user: "frank@example.com", password: "frank-upstream-pw" };
  const ADMIN_C = { user: EMAIL, password: PASSWORD };
  const fx = useGateway(
    {
      extraUsers: [BOB_C, CAROL_C, DAVE_C, ERIN_C, FRANK_C].map((w) => ({
        email: w.user,
        password: w.password,
      })),
    },
    {
      auth: "cloudreve",
      email: undefined,
      password: undefined,
      refreshToken: undefined,
      users: [{ name: CAROL_C.user, readOnly: true }],
    },
  );
  const apis: Record<string, Api> = {};
  const apiOf = async (w: Who) =>
    (apis[w.user] ??= await signedIn(fx.emu.url, { email: w.user, password: w.password }));

  it("OPTIONS answers without credentials, as clients probe before they sign in", async () => {
    const r = await raw(fx.url, "OPTIONS", "/");
    expect(r.status, r.text).toBe(200);
    expect(String(r.headers["dav"])).toMatch(/\b2\b/);
    const wrong = await raw(fx.url, "OPTIONS", "/", {
      auth: { user: BOB_C.user, password: "not-bobs-password" },
    });
    expect(wrong.status, wrong.text).toBe(200);
  });

  it("a wrong password → 401, and only the login check reaches Cloudreve", async () => {
    await fx.resetStats();
    const r = await raw(fx.url, "PROPFIND", "/", {
      headers: { depth: "1" },
      auth: { user: BOB_C.user, password: "not-bobs-password" },
    });
    expect(r.status).toBe(401);
    expect(String(r.headers["www-authenticate"])).toMatch(/^Basic /);
    const unknown = await raw(fx.url, "GET", "/", {
      auth: { user: "nobody@example.com", password: "whatever-pw" },
    });
    expect(unknown.status).toBe(401);
    const { requests } = await fx.stats();
    expect(requests).toEqual({ [R.login]: 2 });
  });

  it("credentials Cloudreve refuses as malformed (short password, a name that is no email) → 401", async () => {
    // Cloudreve checks the form before the password (binding "required,email", "min=4"): 40001.
    await fx.resetStats();
    const cases = {
      "short password": { user: BOB_C.user, password: "abc" },
      "name that is no email": { user: "bob", password: BOB_C.password },
    };
    const statuses: Record<string, number> = {};
    for (const [what, auth] of Object.entries(cases)) {
      const r = await raw(fx.url, "PROPFIND", "/", { headers: { depth: "0" }, auth });
      statuses[what] = r.status;
      if (r.status === 401) expect(r.headers["www-authenticate"]).toBeDefined();
    }
    expect(statuses).toEqual({ "short password": 401, "name that is no email": 401 });
    const { requests } = await fx.stats();
    expect(Object.keys(requests).filter((k) => k !== R.login)).toEqual([]);
  });

  it("the right password → 207, and each user sees only their own drive", async () => {
    await put(await apiOf(ADMIN_C), "/admin-only.txt", "admin's");
    await put(await apiOf(BOB_C), "/bob-only.txt", "bob's");
    const admin = as(fx, ADMIN_C);
    const bob = as(fx, BOB_C);
    const adminSees = await davNames(admin);
    const bobSees = await davNames(bob);
    expect(adminSees).toContain("admin-only.txt");
    expect(adminSees).not.toContain("bob-only.txt");
    expect(bobSees).toContain("bob-only.txt");
    expect(bobSees).not.toContain("admin-only.txt");
    expect((await bob("GET", "/admin-only.txt")).status).toBe(404);

    expect((await bob("PUT", "/bob-new.txt", { body: "written by bob" })).status).toBe(201);
    expect((await admin("PUT", "/bob-new.txt", { body: "written by admin" })).status).toBe(201);
    expect(await text(await apiOf(BOB_C), "/bob-new.txt")).toBe("written by bob");
    expect(await text(await apiOf(ADMIN_C), "/bob-new.txt")).toBe("written by admin");
    expect((await bob("GET", "/bob-new.txt")).text).toBe("written by bob");
    expect((await admin("GET", "/bob-new.txt")).text).toBe("written by admin");
    // Locks are per account too.
    const locked = await bob("LOCK", "/bob-new.txt", { body: LOCK_EXCLUSIVE });
    expect(locked.status).toBe(200);
    expect((await admin("PUT", "/bob-new.txt", { body: "admin again" })).status).toBe(204);
    expect(
      (await bob("UNLOCK", "/bob-new.txt", { headers: { "lock-token": `<${tokenOf(locked)}>` } }))
        .status,
    ).toBe(204);
  });

  it("10 wrong passwords → 429 with Retry-After; another user at the address is not throttled", async () => {
    for (let i = 0; i < 10; i++) {
      const r = await raw(fx.url, "GET", "/", {
        auth: { user: ERIN_C.user, password: `wrong-${i}` },
      });
      expect(r.status, `attempt ${i + 1}`).toBe(401);
    }
    await fx.resetStats();
    const throttled = await raw(fx.url, "GET", "/", { auth: ERIN_C });
    expect(throttled.status).toBe(429);
    expect(Number(throttled.headers["retry-after"])).toBeGreaterThan(0);
    // Throttled before Cloudreve is asked.
    expect(await calls(fx.emu.url, R.login)).toBe(0);
    const frank = await raw(fx.url, "PROPFIND", "/", { headers: { depth: "0" }, auth: FRANK_C });
    expect(frank.status).toBe(207);
  });

  it("parallel requests with the same new credentials cause one login", async () => {
    await fx.resetStats();
    const replies = await Promise.all(
      Array.from({ length: 8 }, () =>
        raw(fx.url, "PROPFIND", "/", { headers: { depth: "1" }, auth: DAVE_C }),
      ),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(8).fill(207));
    // The account's event subscription starts with it: count once it has.
    await until(
      "Dave's account to subscribe",
      async () => (await calls(fx.emu.url, EVENTS)) > 0,
      10_000,
    );
    expect(await calls(fx.emu.url, R.login)).toBe(1);
    expect(await calls(fx.emu.url, R.refresh)).toBe(0);
    // The checked header is remembered: more requests, no more logins.
    expect((await raw(fx.url, "GET", "/", { auth: DAVE_C })).status).toBe(200);
    expect(await calls(fx.emu.url, R.login)).toBe(1);
  });

  it("a user entry with readOnly makes that Cloudreve user read-only", async () => {
    const api = await apiOf(CAROL_C);
    await put(api, "/carol.txt", "carol's");
    const carol = as(fx, CAROL_C);
    expect((await carol("GET", "/carol.txt")).text).toBe("carol's");
    expect(await davNames(carol)).toContain("carol.txt");
    expect((await carol("PUT", "/carol.txt", { body: "changed" })).status).toBe(403);
    expect((await carol("PUT", "/carol-new.txt", { body: "new" })).status).toBe(403);
    expect((await carol("DELETE", "/carol.txt")).status).toBe(403);
    expect((await carol("MKCOL", "/carol-dir")).status).toBe(403);
    expect(allowOf(await carol("OPTIONS", "/carol.txt")).sort()).toEqual([...READS].sort());
    expect(await text(api, "/carol.txt")).toBe("carol's");
    expect(await upstreamInfo(api, "/carol-new.txt")).toBeUndefined();
    expect(await upstreamInfo(api, "/carol-dir")).toBeUndefined();
    // Other Cloudreve users write.
    expect((await as(fx, BOB_C)("PUT", "/bob-after.txt", { body: "ok" })).status).toBe(201);
  });

  it("the read-only entry holds however the email's case is typed (Cloudreve ignores it)", async () => {
    const api = await apiOf(CAROL_C);
    const shouting = { user: CAROL_C.user.toUpperCase(), password: CAROL_C.password };
    const r = await raw(fx.url, "PUT", "/carol-shouts.txt", { body: "bypass", auth: shouting });
    expect([401, 403], `PUT as ${shouting.user}: ${r.status}`).toContain(r.status);
    expect(await upstreamInfo(api, "/carol-shouts.txt")).toBeUndefined();
  });

  it("one Cloudreve account has one lock table, however the email's case is typed", async () => {
    const bob = as(fx, BOB_C);
    expect((await bob("PUT", "/case-lock.txt", { body: "locked bytes" })).status).toBe(201);
    const locked = await bob("LOCK", "/case-lock.txt", { body: LOCK_EXCLUSIVE });
    expect(locked.status).toBe(200);
    const other = { user: "Bob@Example.com", password: BOB_C.password };
    const r = await raw(fx.url, "PUT", "/case-lock.txt", { body: "overwritten", auth: other });
    expect([401, 423], `PUT as ${other.user}: ${r.status}`).toContain(r.status);
    expect(await text(await apiOf(BOB_C), "/case-lock.txt")).toBe("locked bytes");
    expect(
      (await bob("UNLOCK", "/case-lock.txt", { headers: { "lock-token": `<${tokenOf(locked)}>` } }))
        .status,
    ).toBe(204);
  });
});

// -------------------------------------------------------------------------------------------

describe("idle accounts", () => {
  let emu: RunningEmulator;
  let gw: Gateway;
  const fx = { url: "" };
  const lines: Record<string, unknown>[] = [];
  const closed = (account: string) =>
    lines.filter((l) => l.msg === "account idle: closed" && l.account === account).length;

  beforeAll(async () => {
    emu = await startEmulator({
      email: EMAIL,
      password: PASSWORD,
      extraUsers: [BOB_ACCOUNT, DORA_ACCOUNT],
    });
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean))
          lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    gw = await startGateway(
      {
        ...defaults(),
        upstream: emu.url,
        email: EMAIL,
        password: PASSWORD,
        stateDir: await mkdtemp(join(tmpdir(), "cloudreve-dav-test-")),
        port: 0,
        accountIdleSeconds: 1,
        users: [
          { name: ALICE.user, passwordHash: ALICE_HASH },
          { name: BOB.user, passwordHash: BOB_HASH, account: BOB_ACCOUNT },
          { name: BERT.user, passwordHash: BERT_HASH, account: BOB_ACCOUNT },
          { name: DORA.user, passwordHash: DORA_HASH, account: DORA_ACCOUNT },
        ],
      },
      createLogger("info", sink),
    );
    fx.url = gw.url.replace(/\/$/, "");
    await until("the gateway to subscribe", async () => (await calls(emu.url, EVENTS)) > 0, 10_000);
  });
  afterAll(async () => {
    await gw?.close();
    await emu?.close();
  });

  it("an idle account is closed, and opens again for its user's next request", async () => {
    const alice = as(fx, ALICE);
    const bob = as(fx, BOB);
    expect((await alice("PUT", "/alice.txt", { body: "alice's" })).status).toBe(201);
    expect((await bob("PUT", "/idle.txt", { body: "bob's idle bytes" })).status).toBe(201);
    expect((await bob("GET", "/idle.txt")).text).toBe("bob's idle bytes");

    await until("Bob's account to be closed", () => closed(BOB_ACCOUNT.email) > 0, 10_000);
    await resetStats(emu.url);
    expect((await bob("GET", "/idle.txt")).text).toBe("bob's idle bytes");
    expect((await bob("PROPFIND", "/idle.txt", { headers: { depth: "0" } })).status).toBe(207);
    // Opened afresh: it subscribes to change events again.
    await until(
      "Bob's account to subscribe again",
      async () => (await calls(emu.url, EVENTS)) > 0,
      10_000,
    );
    // The gateway's own account is never closed.
    expect(closed("")).toBe(0);
    expect(closed(EMAIL)).toBe(0);
    expect((await alice("GET", "/alice.txt")).text).toBe("alice's");
  });

  it("an account holding a lock is not closed: the lock stays effective", async () => {
    const bob = as(fx, BOB);
    const bert = as(fx, BERT);
    const dora = as(fx, DORA);
    const locked = await bob("LOCK", "/held.txt", { body: LOCK_EXCLUSIVE });
    expect(locked.status).toBe(201);
    const token = tokenOf(locked);
    const bobClosures = closed(BOB_ACCOUNT.email);
    // Dora's account is used after Bob's: once it is closed as idle, Bob's has been idle longer.
    expect((await dora("PUT", "/dora.txt", { body: "dora's" })).status).toBe(201);
    await until("Dora's account to be closed", () => closed(DORA_ACCOUNT.email) > 0, 10_000);
    expect(closed(BOB_ACCOUNT.email)).toBe(bobClosures);

    // Bert works in Bob's account: the lock is still in his way.
    expect((await bert("PUT", "/held.txt", { body: "bert's" })).status).toBe(423);
    expect(
      (await bob("PUT", "/held.txt", { body: "bob's held bytes", headers: { if: `(<${token}>)` } }))
        .status,
    ).toBe(204);
    expect((await bert("GET", "/held.txt")).text).toBe("bob's held bytes");
    expect((await dora("GET", "/dora.txt")).text).toBe("dora's");
    expect(
      (await bob("UNLOCK", "/held.txt", { headers: { "lock-token": `<${token}>` } })).status,
    ).toBe(204);
    // Released: now it goes idle like any other.
    await until(
      "Bob's account to be closed once its lock is gone",
      () => closed(BOB_ACCOUNT.email) > bobClosures,
      10_000,
    );
    expect((await bert("GET", "/held.txt")).text).toBe("bob's held bytes");
  });
});
