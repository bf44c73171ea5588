/**
 * Versions as a real site keeps them (§6.5: up to 10 per file, each charged to the quota) seen
 * through the gateway: the quota it reports counts them, a download serves exactly the version
 * its ETag names even when another client overwrote the file meanwhile, and when that version
 * is gone the gateway looks again and serves the new one under the new ETag.
 */
import { describe, expect, it } from "vitest";
import { advanceClock } from "../helpers/control.js";
import { Api, myUri, put } from "../helpers/emulator.js";
import { content, dav } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";

/** Above the gateway's in-memory small-content size, so reads go to the storage. */
const SIZE = 200_000;

async function capacity(api: Api): Promise<number> {
  const r = await api.call<{ used: number }>("GET", "/user/capacity");
  return r.json.data!.used;
}

async function login(url: string): Promise<Api> {
  const api = new Api(url);
  await api.login();
  return api;
}

describe.each(["local", "s3"] as const)("versions on a %s site", (policy) => {
  describe("with retention (10 versions)", () => {
    const fx = useGateway({ policy }, { cacheTtlSeconds: 3600 });

    it("PROPFIND's quota-used-bytes counts every kept version", async () => {
      const api = await login(fx.emu.url);
      for (let i = 0; i < 3; i++) {
        const r = await dav(`${fx.url}/quota.bin`, "PUT", { body: content(SIZE + i, i) });
        expect(r.status).toBe(i === 0 ? 201 : 204);
      }
      const used = await capacity(api);
      expect(used).toBe(3 * SIZE + 3);
      const pf = await dav(`${fx.url}/`, "PROPFIND", {
        headers: { depth: "0" },
        body: Buffer.from(
          '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:quota-used-bytes/></D:prop></D:propfind>',
        ),
      });
      expect(pf.status).toBe(207);
      const reported = /quota-used-bytes>(\d+)</.exec(pf.body.toString())?.[1];
      expect(Number(reported)).toBe(used);
    });

    it("a download serves the version its ETag names, whoever overwrote the file since", async () => {
      const api = await login(fx.emu.url);
      const v1 = content(SIZE, 1);
      expect((await dav(`${fx.url}/pinned.bin`, "PUT", { body: v1 })).status).toBe(201);
      const first = await dav(`${fx.url}/pinned.bin`, "GET");
      expect(first.body.equals(v1)).toBe(true);
      // Another client writes a new version; the gateway's listing still names the first.
      await put(api, "pinned.bin", content(SIZE, 2));
      // Its URL has expired meanwhile: the gateway signs a new one, for the same version.
      await advanceClock(fx.emu.url, 2 * 3600);
      const again = await dav(`${fx.url}/pinned.bin`, "GET");
      expect(again.status).toBe(200);
      expect(again.headers.etag).toBe(first.headers.etag);
      expect(again.body.equals(v1)).toBe(true);
    });
  });

  describe("without retention (1 version)", () => {
    const fx = useGateway({ policy, versionRetention: 1 }, { cacheTtlSeconds: 3600 });

    it("a version that is gone is looked up again: the new one under its own ETag", async () => {
      const api = await login(fx.emu.url);
      expect((await dav(`${fx.url}/gone.bin`, "PUT", { body: content(SIZE, 1) })).status).toBe(201);
      const first = await dav(`${fx.url}/gone.bin`, "HEAD");
      const v2 = content(SIZE + 5, 2);
      const written = await put(api, "gone.bin", v2);
      const r = await dav(`${fx.url}/gone.bin`, "GET");
      expect(r.status).toBe(200);
      expect(r.headers.etag).not.toBe(first.headers.etag);
      expect(r.headers.etag).toBe(`"${written.primary_entity}"`);
      expect(r.body.equals(v2)).toBe(true);
      const info = await api.call<{ primary_entity: string }>("GET", "/file/info", {
        query: { uri: myUri("gone.bin") },
      });
      expect(info.json.data?.primary_entity).toBe(written.primary_entity);
    });
  });
});
