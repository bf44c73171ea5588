/**
 * PROPFIND Depth 1 costs the listing calls and nothing per member, whatever the cache holds:
 * dead properties come from the listing's own metadata, with the cache off (TTL 0) and with
 * a listing larger than the cache.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { R, resetStats, seed, stats } from "../helpers/control.js";
import { myUri } from "../helpers/emulator.js";
import { dav } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";
import { PROPFIND_ALL } from "../helpers/http-raw.js";

const MEMBERS = 200;
const NOTE = (n: number) =>
  `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test"><D:set><D:prop>` +
  `<Z:note>note ${n}</Z:note></D:prop></D:set></D:propertyupdate>`;

describe.each([
  ["the cache off (TTL 0)", { cacheTtlSeconds: 0 }],
  ["a listing larger than the cache", { cacheMaxEntries: 50 }],
])("PROPFIND Depth 1 of %s members with %s", (_label, config) => {
  const fx = useGateway({}, config);

  it(`answers ${MEMBERS} members with their dead properties in the listing's calls`, async () => {
    await seed(fx.emu.url, { uri: myUri("many"), files: MEMBERS, size: 3 });
    for (const n of [1, 77, 150]) {
      const path = `${fx.url}/many/file-${String(n).padStart(5, "0")}.bin`;
      expect((await dav(path, "PROPPATCH", { body: Buffer.from(NOTE(n)) })).status).toBe(207);
    }
    await resetStats(fx.emu.url);
    const r = await dav(`${fx.url}/many/`, "PROPFIND", {
      headers: { depth: "1" },
      body: Buffer.from(PROPFIND_ALL),
    });
    expect(r.status).toBe(207);
    const xml = r.body.toString();
    expect(xml.match(/<D:response>/g)).toHaveLength(MEMBERS + 1);
    for (const n of [1, 77, 150]) expect(xml).toContain(`note ${n}</`);
    const calls = (await stats(fx.emu.url)).requests;
    expect(calls[R.list]).toBe(1);
    // The folder itself is looked up (stat, then its own properties); no member is.
    expect(calls[R.info] ?? 0).toBeLessThanOrEqual(2);
  });
});

describe("PROPFIND Depth 1 of a folder whose cached entry has expired", () => {
  // Without change events, the one-second lifetime is the one that applies.
  const fx = useGateway({ events: "disabled" }, { cacheTtlSeconds: 1 });

  it("costs the listing call alone: the listing brings the folder's own entry", async () => {
    await seed(fx.emu.url, { uri: myUri("polled"), files: 20, size: 3 });
    const propfind = () =>
      dav(`${fx.url}/polled/`, "PROPFIND", {
        headers: { depth: "1" },
        body: Buffer.from(PROPFIND_ALL),
      });
    expect((await propfind()).status).toBe(207);
    // Past the one-second lifetime, as a Finder window polling every 2 s finds it.
    await sleep(1_200);
    await resetStats(fx.emu.url);
    const r = await propfind();
    expect(r.status).toBe(207);
    expect(r.body.toString().match(/<D:response>/g)).toHaveLength(21);
    const calls = (await stats(fx.emu.url)).requests;
    expect(calls[R.list]).toBe(1);
    expect(calls[R.info] ?? 0).toBe(0);
  });
});
