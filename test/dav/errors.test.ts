/**
 * The error → status mapping, end to end: conditions raised by the emulator (the real server's
 * codes) must come out as the WebDAV status a client can act on, never a bare 500.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { setFaults, type FaultRule } from "../helpers/control.js";
import { Api, myUri } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { raw } from "../helpers/http-raw.js";

const CAPACITY = 8192;
const MAX_SIZE = 3000;

describe("error mapping", () => {
  const fx = useGateway({ capacity: CAPACITY, policyMaxSize: MAX_SIZE }, { cacheTtlSeconds: 0 });
  let api: Api;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
    expect((await raw(fx.url, "MKCOL", "/e")).status).toBe(201);
  });

  it("NotFound → 404", async () => {
    expect((await raw(fx.url, "GET", "/e/missing")).status).toBe(404);
    expect((await raw(fx.url, "PROPFIND", "/e/missing", { headers: { depth: "0" } })).status).toBe(
      404,
    );
    expect((await raw(fx.url, "DELETE", "/e/missing")).status).toBe(404);
    expect(
      (await raw(fx.url, "MOVE", "/e/missing", { headers: { destination: "/e/x" } })).status,
    ).toBe(404);
  });

  it("MissingParent → 409", async () => {
    expect((await raw(fx.url, "PUT", "/e/none/f", { body: "x" })).status).toBe(409);
    expect((await raw(fx.url, "MKCOL", "/e/none/d")).status).toBe(409);
  });

  it("PreconditionFailed → 412", async () => {
    expect((await raw(fx.url, "PUT", "/e/p1", { body: "1" })).status).toBe(201);
    expect((await raw(fx.url, "PUT", "/e/p2", { body: "2" })).status).toBe(201);
    const r = await raw(fx.url, "MOVE", "/e/p1", {
      headers: { destination: "/e/p2", overwrite: "F" },
    });
    expect(r.status).toBe(412);
  });

  it("Locked upstream (an upload session holds the path) → 423", async () => {
    expect((await raw(fx.url, "PUT", "/e/busy.bin", { body: "old" })).status).toBe(201);
    const session = await api.call("PUT", "/file/upload", {
      json: { uri: myUri("/e/busy.bin"), size: 10, entity_type: "version" },
    });
    expect(session.json.code, session.text).toBe(0);
    const r = await raw(fx.url, "PUT", "/e/busy.bin", { body: "new" });
    expect(r.status).toBe(423);
  });

  it("Forbidden → 403 (properties on the root, which Cloudreve refuses)", async () => {
    const r = await raw(fx.url, "PROPPATCH", "/", {
      body: `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="urn:x">1</x></D:prop></D:set></D:propertyupdate>`,
    });
    expect(r.status).toBe(403);
  });

  it("QuotaExceeded → 507", async () => {
    const r = await raw(fx.url, "PUT", "/e/big.bin", { body: Buffer.alloc(MAX_SIZE - 100) });
    expect(r.status).toBe(201);
    // Two of these do not fit in the capacity.
    const r2 = await raw(fx.url, "PUT", "/e/big2.bin", { body: Buffer.alloc(MAX_SIZE - 100) });
    expect(r2.status).toBe(201);
    const r3 = await raw(fx.url, "PUT", "/e/big3.bin", { body: Buffer.alloc(MAX_SIZE - 100) });
    expect(r3.status).toBe(507);
    const copy = await raw(fx.url, "COPY", "/e/big.bin", { headers: { destination: "/e/c.bin" } });
    expect(copy.status).toBe(507);
    expect((await raw(fx.url, "HEAD", "/e/big3.bin")).status).toBe(404);
    // Space is back after a delete.
    expect((await raw(fx.url, "DELETE", "/e/big2.bin")).status).toBe(204);
  });

  it("TooLarge (storage policy max size) → 413", async () => {
    const r = await raw(fx.url, "PUT", "/e/huge.bin", { body: Buffer.alloc(MAX_SIZE + 1) });
    expect(r.status).toBe(413);
    // Chunked, so the size is only known after spooling.
    const c = await raw(fx.url, "PUT", "/e/huge2.bin", {
      body: Buffer.alloc(MAX_SIZE + 1),
      chunked: true,
    });
    expect(c.status).toBe(413);
  });

  it.each([["a:b.txt"], ["star*.txt"], ["pipe|.txt"], ["lt%3C.txt"], ["quote%22.txt"]])(
    "BadName %s → 400",
    async (name) => {
      const path = `/e/${name.replace(/[:*|]/g, encodeURIComponent)}`;
      expect((await raw(fx.url, "PUT", path, { body: "x" })).status).toBe(400);
      expect((await raw(fx.url, "MKCOL", path)).status).toBe(400);
    },
  );

  it("BadName as a MOVE destination → 400, source kept", async () => {
    expect((await raw(fx.url, "PUT", "/e/src.txt", { body: "x" })).status).toBe(201);
    const r = await raw(fx.url, "MOVE", "/e/src.txt", { headers: { destination: "/e/a%3Ab.txt" } });
    expect(r.status).toBe(400);
    expect((await raw(fx.url, "HEAD", "/e/src.txt")).status).toBe(200);
  });

  describe("upstream failures", () => {
    it.each<[FaultRule["failWith"]]>([[503], [502], ["reset"]])(
      "%s on every try of a read → 502/503, not 500",
      async (failWith) => {
        await setFaults(fx.emu.url, [{ route: "GET /api/v4/file", failWith, times: 20 }]);
        try {
          const r = await raw(fx.url, "PROPFIND", "/e/", { headers: { depth: "1" } });
          expect([502, 503]).toContain(r.status);
        } finally {
          await setFaults(fx.emu.url, []);
        }
        // And once the upstream is back, the same request works.
        expect((await raw(fx.url, "PROPFIND", "/e/", { headers: { depth: "1" } })).status).toBe(
          207,
        );
      },
    );

    it("a failing upload → 502/503, previous content intact", async () => {
      expect((await raw(fx.url, "PUT", "/e/keep.txt", { body: "keep" })).status).toBe(201);
      await setFaults(fx.emu.url, [
        { route: "POST /api/v4/file/upload/:sessionId/:index", failWith: 503, times: 20 },
        { route: "PUT /api/v4/file/content", failWith: 503, times: 20 },
      ]);
      try {
        const r = await raw(fx.url, "PUT", "/e/keep.txt", { body: "changed" });
        expect([502, 503]).toContain(r.status);
      } finally {
        await setFaults(fx.emu.url, []);
      }
      expect((await raw(fx.url, "GET", "/e/keep.txt")).text).toBe("keep");
    });

    it("a failing download → 502/503", async () => {
      // A file never read before: small files already read are served from memory.
      expect((await raw(fx.url, "PUT", "/e/unread.txt", { body: "unread" })).status).toBe(201);
      await setFaults(fx.emu.url, [
        { route: "GET /api/v4/file/content/:id/:speed/:name", failWith: 503, times: 20 },
      ]);
      try {
        const r = await raw(fx.url, "GET", "/e/unread.txt");
        expect([502, 503]).toContain(r.status);
      } finally {
        await setFaults(fx.emu.url, []);
      }
    });

    it("a failing DELETE → 502/503, the file still there", async () => {
      await setFaults(fx.emu.url, [{ route: "DELETE /api/v4/file", failWith: 503, times: 20 }]);
      try {
        const r = await raw(fx.url, "DELETE", "/e/keep.txt");
        expect([502, 503]).toContain(r.status);
      } finally {
        await setFaults(fx.emu.url, []);
      }
      expect((await raw(fx.url, "GET", "/e/keep.txt")).text).toBe("keep");
    });
  });
});
