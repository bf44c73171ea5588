/**
 * Finder's AppleDouble `._*` files kept by the gateway (appleDouble: "local") instead of the
 * drive: they behave as files to the client, never reach Cloudreve, and follow their folders.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Api, myUri, ok, type CrFile } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { raw } from "../helpers/http-raw.js";

const stateDir = await mkdtemp(join(tmpdir(), "cloudreve-dav-ad-"));
const fx = useGateway({}, { appleDouble: "local", stateDir });

async function upstreamNames(path: string): Promise<string[]> {
  const api = new Api(fx.emu.url);
  await api.login();
  const data = ok(
    await api.call<{ files: CrFile[] }>("GET", "/file", { query: { uri: myUri(path) } }),
  );
  return data.files.map((f) => f.name).sort();
}

const hrefs = (xml: string) => [...xml.matchAll(/<D:href>([^<]+)<\/D:href>/g)].map((m) => m[1]);

describe("AppleDouble files kept locally", () => {
  it("are stored, listed and read back, but never uploaded", async () => {
    expect((await raw(fx.url, "MKCOL", "/docs")).status).toBe(201);
    expect((await raw(fx.url, "PUT", "/docs/report.pdf", { body: "pdf" })).status).toBe(201);
    expect((await raw(fx.url, "PUT", "/docs/._report.pdf", { body: "resource fork" })).status).toBe(
      201,
    );
    expect(await upstreamNames("docs")).toEqual(["report.pdf"]);

    const listing = await raw(fx.url, "PROPFIND", "/docs/", { headers: { depth: "1" } });
    expect(listing.status).toBe(207);
    expect(hrefs(listing.text)).toEqual(
      expect.arrayContaining(["/docs/report.pdf", "/docs/._report.pdf"]),
    );
    const got = await raw(fx.url, "GET", "/docs/._report.pdf");
    expect(got.text).toBe("resource fork");
    const part = await raw(fx.url, "GET", "/docs/._report.pdf", {
      headers: { range: "bytes=0-7" },
    });
    expect(part.status).toBe(206);
    expect(part.text).toBe("resource");
  });

  it("follow a renamed folder and go with a deleted one", async () => {
    expect(
      (await raw(fx.url, "MOVE", "/docs", { headers: { destination: `${fx.url}/papers` } })).status,
    ).toBe(201);
    expect((await raw(fx.url, "GET", "/papers/._report.pdf")).text).toBe("resource fork");
    expect((await raw(fx.url, "GET", "/docs/._report.pdf")).status).toBe(404);
    expect((await raw(fx.url, "DELETE", "/papers")).status).toBe(204);
    expect((await raw(fx.url, "MKCOL", "/papers")).status).toBe(201);
    expect((await raw(fx.url, "GET", "/papers/._report.pdf")).status).toBe(404);
  });

  it("rename and delete on their own; need an existing folder", async () => {
    expect((await raw(fx.url, "PUT", "/._a", { body: "x" })).status).toBe(201);
    expect(
      (await raw(fx.url, "MOVE", "/._a", { headers: { destination: `${fx.url}/._b` } })).status,
    ).toBe(201);
    expect((await raw(fx.url, "GET", "/._b")).text).toBe("x");
    expect((await raw(fx.url, "DELETE", "/._b")).status).toBe(204);
    expect((await raw(fx.url, "GET", "/._b")).status).toBe(404);
    expect((await raw(fx.url, "PUT", "/missing/._c", { body: "x" })).status).toBe(409);
    expect(await upstreamNames("")).not.toContain("._a");
  });
});
