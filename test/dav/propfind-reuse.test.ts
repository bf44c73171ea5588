/**
 * A Depth 0 answer is reused while its entry is cached and nothing else went into it: each case
 * asks twice (the second may be the reused answer), changes what the answer shows, and asks
 * again, through the gateway against the emulator.
 */
import { describe, expect, it } from "vitest";
import { hashPassword } from "../../src/passwords.js";
import { useGateway } from "../helpers/gateway.js";
import { hrefs, LOCK_EXCLUSIVE, propfindBody, raw } from "../helpers/http-raw.js";

const fx = useGateway();

const depth0 = async (path: string, body?: string) => {
  const r = await raw(fx.url, "PROPFIND", path, { headers: { depth: "0" }, body });
  expect(r.status).toBe(207);
  return r.text;
};
/** Asks twice and checks the two answers agree. */
const settled = async (path: string, body?: string) => {
  const first = await depth0(path, body);
  expect(await depth0(path, body)).toBe(first);
  return first;
};
const tokenOf = (lock: { headers: Record<string, unknown> }) =>
  /<([^>]+)>/.exec(String(lock.headers["lock-token"]))![1]!;
const proppatch = (inner: string) =>
  `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:z="urn:example:z">${inner}</D:propertyupdate>`;

describe("a Depth 0 answer asked for again", () => {
  it("follows the file's new content", async () => {
    expect((await raw(fx.url, "PUT", "/r-content.txt", { body: "one" })).status).toBe(201);
    const before = await settled("/r-content.txt");
    expect(before).toContain("<D:getcontentlength>3</D:getcontentlength>");
    expect((await raw(fx.url, "PUT", "/r-content.txt", { body: "three" })).status).toBe(204);
    const after = await depth0("/r-content.txt");
    expect(after).toContain("<D:getcontentlength>5</D:getcontentlength>");
    const etag = (xml: string) => /<D:getetag>([^<]+)</.exec(xml)?.[1];
    expect(etag(after)).not.toBe(etag(before));
  });

  it("shows a lock taken on it at once, with its seconds left, and not once it is gone", async () => {
    expect((await raw(fx.url, "PUT", "/r-lock.txt", { body: "x" })).status).toBe(201);
    const unlocked = await settled("/r-lock.txt");
    expect(unlocked).toContain("<D:lockdiscovery/>");
    const lock = await raw(fx.url, "LOCK", "/r-lock.txt", {
      body: LOCK_EXCLUSIVE,
      headers: { timeout: "Second-600" },
    });
    expect(lock.status).toBe(200);
    const token = tokenOf(lock);
    const locked = await depth0("/r-lock.txt");
    expect(locked).toContain(token);
    expect(locked).toMatch(/<D:timeout>Second-(600|599)<\/D:timeout>/);
    const unlock = await raw(fx.url, "UNLOCK", "/r-lock.txt", {
      headers: { "lock-token": `<${token}>` },
    });
    expect(unlock.status).toBe(204);
    expect(await depth0("/r-lock.txt")).toBe(unlocked);
  });

  it("shows a depth-infinity lock on the folder above it", async () => {
    expect((await raw(fx.url, "MKCOL", "/r-folder/")).status).toBe(201);
    expect((await raw(fx.url, "PUT", "/r-folder/inner.txt", { body: "x" })).status).toBe(201);
    expect(await settled("/r-folder/inner.txt")).toContain("<D:lockdiscovery/>");
    const lock = await raw(fx.url, "LOCK", "/r-folder/", {
      body: LOCK_EXCLUSIVE,
      headers: { depth: "infinity" },
    });
    expect(lock.status).toBe(200);
    const inner = await depth0("/r-folder/inner.txt");
    expect(inner).toContain(tokenOf(lock));
    expect(inner).toContain("<D:lockroot><D:href>/r-folder/</D:href></D:lockroot>");
  });

  it("shows a dead property set on it, and not once it is removed", async () => {
    expect((await raw(fx.url, "PUT", "/r-dead.txt", { body: "x" })).status).toBe(201);
    const bare = await settled("/r-dead.txt");
    expect(bare).not.toContain("colour");
    const set = await raw(fx.url, "PROPPATCH", "/r-dead.txt", {
      body: proppatch("<D:set><D:prop><z:colour>blue</z:colour></D:prop></D:set>"),
    });
    expect(set.status).toBe(207);
    expect(await settled("/r-dead.txt")).toMatch(/colour[^>]*>blue</);
    const removed = await raw(fx.url, "PROPPATCH", "/r-dead.txt", {
      body: proppatch("<D:remove><D:prop><z:colour/></D:prop></D:remove>"),
    });
    expect(removed.status).toBe(207);
    expect(await depth0("/r-dead.txt")).toBe(bare);
  });

  it("follows a modification time set by PROPPATCH (rclone's, Windows')", async () => {
    expect((await raw(fx.url, "PUT", "/r-mtime.txt", { body: "x" })).status).toBe(201);
    await settled("/r-mtime.txt");
    const r = await raw(fx.url, "PROPPATCH", "/r-mtime.txt", {
      body: proppatch(
        "<D:set><D:prop><D:lastmodified>1400000000</D:lastmodified></D:prop></D:set>",
      ),
    });
    expect(r.status).toBe(207);
    expect(await depth0("/r-mtime.txt")).toContain(
      "<D:getlastmodified>Tue, 13 May 2014 16:53:20 GMT</D:getlastmodified>",
    );
  });

  it("answers each request body for itself", async () => {
    expect((await raw(fx.url, "PUT", "/r-body.txt", { body: "x" })).status).toBe(201);
    const all = await settled("/r-body.txt");
    expect(all).toContain("<D:displayname>");
    const some = await settled("/r-body.txt", propfindBody("<D:getcontentlength/>"));
    expect(some).toContain("<D:getcontentlength>1</D:getcontentlength>");
    expect(some).not.toContain("<D:displayname>");
    expect(await depth0("/r-body.txt")).toBe(all);
  });
});

const HASH = await hashPassword("pw");

describe("a Depth 0 answer for users with different roots", () => {
  const users = useGateway(
    {},
    {
      users: [
        { name: "whole", passwordHash: HASH },
        { name: "inside", passwordHash: HASH, root: "/team" },
      ],
    },
  );
  const as = (user: string) => ({ user, password: "pw" });

  it("names the resource as each user sees it, turn by turn", async () => {
    expect((await raw(users.url, "MKCOL", "/team/", { auth: as("whole") })).status).toBe(201);
    const put = await raw(users.url, "PUT", "/team/plan.txt", { body: "x", auth: as("whole") });
    expect(put.status).toBe(201);
    for (let round = 0; round < 3; round++) {
      const whole = await raw(users.url, "PROPFIND", "/team/plan.txt", {
        headers: { depth: "0" },
        auth: as("whole"),
      });
      const inside = await raw(users.url, "PROPFIND", "/plan.txt", {
        headers: { depth: "0" },
        auth: as("inside"),
      });
      expect(hrefs(whole.text)).toEqual(["/team/plan.txt"]);
      expect(hrefs(inside.text)).toEqual(["/plan.txt"]);
    }
  });
});
