/**
 * MOVE, COPY, DELETE, MKCOL, PROPPATCH and PROPFIND against an upstream whose routes fail:
 * before the call is read (a proxy's 502/503/413, a reset), or after it took effect with the
 * answer lost, once, twice or always. A 2xx means the new state is upstream; any other answer
 * leaves the old state or the new one, never a lost file, a half-done step or a stray item.
 */
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { R, setFaults, type FaultRule } from "../helpers/control.js";
import { Api, expectStored, myUri, ok, upstreamInfo, type CrFile } from "../helpers/emulator.js";
import { content, dav, expectNothingLeft } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";

const METADATA = "PATCH /api/v4/file/metadata";
const CREATE = "POST /api/v4/file/create";

interface Case {
  kind: NonNullable<FaultRule["failWith"]>;
  afterBytes?: number;
  times: number;
}
const CASES: Case[] = [
  { kind: 502, times: 1 },
  { kind: 503, times: 2 },
  { kind: "reset", times: 1 },
  { kind: "reset", afterBytes: 0, times: 1 },
  { kind: "reset", afterBytes: 0, times: 2 },
  { kind: 413, times: 1 },
  { kind: 502, times: Infinity },
  { kind: "reset", afterBytes: 0, times: Infinity },
];
const label = (c: Case) =>
  `${String(c.kind)}${c.afterBytes === 0 ? " after acting" : ""} ×${c.times}`;
const rule = (route: string, c: Case): FaultRule => ({
  route,
  failWith: c.kind,
  afterBytes: c.afterBytes,
  times: c.times === Infinity ? undefined : c.times,
});
/** Transient failures within the retry budget are absorbed; a 413 or a permanent one is not. */
const absorbed = (c: Case) => c.kind !== 413 && c.times !== Infinity;
/**
 * A call that keeps acting while its answer is lost has still happened: the gateway finds the
 * new state upstream and goes on.
 */
const absorbedByAnswerLost = (c: Case) => absorbed(c) || c.afterBytes === 0;

let seq = 0;

describe("namespace operations under upstream faults", () => {
  const fx = useGateway({}, { cacheTtlSeconds: 0, upstreamResponseTimeoutSeconds: 1 });
  let api: Api;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });
  beforeEach(() => setFaults(fx.emu.url, []));

  async function names(folder: string): Promise<string[]> {
    const r = await api.call<{ files: CrFile[] }>("GET", "/file", {
      query: { uri: myUri(folder), page_size: 2000 },
    });
    return ok(r)
      .files.map((f) => f.name)
      .sort();
  }

  /** A fresh folder holding `a.bin` and `b.bin` (and `sub/`), written through the gateway. */
  async function scene() {
    const dir = `/ns${++seq}`;
    expect((await dav(`${fx.url}${dir}`, "MKCOL")).status).toBe(201);
    expect((await dav(`${fx.url}${dir}/sub`, "MKCOL")).status).toBe(201);
    const a = content(70_000, seq);
    const b = content(90_000, seq + 500);
    expect((await dav(`${fx.url}${dir}/a.bin`, "PUT", { body: a })).status).toBe(201);
    expect((await dav(`${fx.url}${dir}/b.bin`, "PUT", { body: b })).status).toBe(201);
    return { dir, a, b };
  }

  async function under(rules: FaultRule[], run: () => ReturnType<typeof dav>) {
    await setFaults(fx.emu.url, rules);
    const reply = await run();
    await setFaults(fx.emu.url, []);
    return reply;
  }

  const at = (dir: string, name: string) => `${dir.slice(1)}/${name}`;

  describe.each([
    ["rename", R.rename],
    ["delete of the replaced destination", R.remove],
  ])("MOVE with Overwrite onto an existing file, %s failing", (_what, route) => {
    for (const c of CASES) {
      it(label(c), async () => {
        const { dir, a, b } = await scene();
        const r = await under([rule(route, c)], () =>
          dav(`${fx.url}${dir}/a.bin`, "MOVE", {
            headers: { destination: `${fx.url}${dir}/b.bin`, overwrite: "T" },
          }),
        );
        const left = await names(dir.slice(1));
        const parked = left.filter((n) => n.startsWith(".cloudreve-dav-"));
        if (r.status === 204) {
          expect(left.filter((n) => !parked.includes(n))).toEqual(["b.bin", "sub"]);
          await expectStored(api, at(dir, "b.bin"), a);
          // The replaced file goes once the move happened; if the upstream never lets it be
          // deleted, it is kept aside (and logged), never lost.
          if (route === R.remove && !absorbedByAnswerLost(c)) {
            expect(parked).toHaveLength(1);
            await expectStored(api, at(dir, parked[0]!), b);
          } else expect(parked, "stray items").toEqual([]);
        } else {
          expect([502, 503, 504]).toContain(r.status);
          expect(left).toEqual(["a.bin", "b.bin", "sub"]);
          await expectStored(api, at(dir, "a.bin"), a);
          await expectStored(api, at(dir, "b.bin"), b);
        }
        if (route === R.rename) expect(r.status === 204).toBe(absorbedByAnswerLost(c));
        else expect(r.status).toBe(204);
        await expectNothingLeft(fx.emu.url);
      });
    }
  });

  describe("MOVE into a subfolder, the move failing", () => {
    for (const c of CASES) {
      it(label(c), async () => {
        const { dir, a } = await scene();
        const r = await under([rule(R.move, c)], () =>
          dav(`${fx.url}${dir}/a.bin`, "MOVE", {
            headers: { destination: `${fx.url}${dir}/sub/a.bin` },
          }),
        );
        expect(r.status === 201).toBe(absorbedByAnswerLost(c));
        if (r.status === 201) {
          expect(await upstreamInfo(api, at(dir, "a.bin"))).toBeUndefined();
          await expectStored(api, at(dir, "sub/a.bin"), a);
        } else {
          expect([502, 503, 504]).toContain(r.status);
          await expectStored(api, at(dir, "a.bin"), a);
          expect(await upstreamInfo(api, at(dir, "sub/a.bin"))).toBeUndefined();
        }
      });
    }
  });

  describe("COPY into a subfolder, the copy failing", () => {
    for (const c of CASES) {
      it(label(c), async () => {
        const { dir, a } = await scene();
        const r = await under([rule(R.move, c)], () =>
          dav(`${fx.url}${dir}/a.bin`, "COPY", {
            headers: { destination: `${fx.url}${dir}/sub/c.bin` },
          }),
        );
        expect(r.status === 201).toBe(absorbedByAnswerLost(c));
        await expectStored(api, at(dir, "a.bin"), a);
        const inSub = await names(`${dir.slice(1)}/sub`);
        expect(
          inSub.filter((n) => n.startsWith(".cloudreve-dav-")),
          "stray items",
        ).toEqual([]);
        if (r.status === 201) {
          expect(inSub).toEqual(["c.bin"]);
          await expectStored(api, at(dir, "sub/c.bin"), a);
        } else {
          expect([502, 503, 504]).toContain(r.status);
          // A copy that landed but could not be named is removed again.
          expect(inSub.filter((n) => n !== "c.bin" && n !== "a.bin")).toEqual([]);
        }
      });
    }
  });

  describe("DELETE, the delete failing", () => {
    for (const c of CASES) {
      it(label(c), async () => {
        const { dir, b } = await scene();
        const r = await under([rule(R.remove, c)], () => dav(`${fx.url}${dir}/a.bin`, "DELETE"));
        expect(r.status === 204).toBe(absorbedByAnswerLost(c));
        if (r.status === 204) expect(await upstreamInfo(api, at(dir, "a.bin"))).toBeUndefined();
        else expect([502, 503, 504]).toContain(r.status);
        await expectStored(api, at(dir, "b.bin"), b);
      });
    }
  });

  it("DELETE of nothing stays 404 when the upstream falters (a repeat's 'not found' is not success)", async () => {
    const { dir } = await scene();
    const r = await under([{ route: R.remove, failWith: 503, times: 1 }], () =>
      dav(`${fx.url}${dir}/never.bin`, "DELETE"),
    );
    expect(r.status).toBe(404);
  });

  describe("MKCOL, the create failing", () => {
    for (const c of CASES) {
      it(label(c), async () => {
        const { dir } = await scene();
        const r = await under([rule(CREATE, c)], () => dav(`${fx.url}${dir}/new`, "MKCOL"));
        expect(r.status === 201).toBe(absorbedByAnswerLost(c));
        const made = await upstreamInfo(api, at(dir, "new"));
        if (r.status === 201) expect(made?.type).toBe(1);
        else expect([502, 503, 504]).toContain(r.status);
      });
    }
  });

  describe("PROPPATCH, the metadata patch failing", () => {
    for (const c of CASES) {
      it(label(c), async () => {
        const { dir } = await scene();
        const body = Buffer.from(
          `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>` +
            `<x:color xmlns:x="urn:test">blue</x:color></D:prop></D:set></D:propertyupdate>`,
        );
        const r = await under([rule(METADATA, c)], () =>
          dav(`${fx.url}${dir}/a.bin`, "PROPPATCH", { body }),
        );
        expect(r.status === 207).toBe(absorbed(c));
        const info = await upstreamInfo(api, at(dir, "a.bin"));
        const stored = Object.keys(info?.metadata ?? {}).some((k) => k.includes("color"));
        if (r.status === 207) expect(stored).toBe(true);
        else expect([502, 503, 504]).toContain(r.status);
      });
    }
  });

  describe("an upstream that never answers", () => {
    it("a listing that hangs once is asked again: 207", async () => {
      const { dir } = await scene();
      const r = await under([{ route: R.list, failWith: "hang", times: 1 }], () =>
        dav(`${fx.url}${dir}/`, "PROPFIND", { headers: { depth: "1" } }),
      );
      expect(r.status).toBe(207);
      expect(r.body.toString()).toContain("a.bin");
    });

    it("a listing that always hangs: 504 within the bounds", async () => {
      const { dir } = await scene();
      const r = await under([{ route: R.list, failWith: "hang" }], () =>
        dav(`${fx.url}${dir}/`, "PROPFIND", { headers: { depth: "1" } }),
      );
      expect(r.status).toBe(504);
    });

    it("a rename that always hangs: 504, and the file is where it was", async () => {
      const { dir, a } = await scene();
      const r = await under([{ route: R.rename, failWith: "hang" }], () =>
        dav(`${fx.url}${dir}/a.bin`, "MOVE", { headers: { destination: `${fx.url}${dir}/c.bin` } }),
      );
      expect(r.status).toBe(504);
      await expectStored(api, at(dir, "a.bin"), a);
      expect(await upstreamInfo(api, at(dir, "c.bin"))).toBeUndefined();
    });
  });

  describe("PROPFIND Depth 1, the listing failing", () => {
    for (const c of CASES) {
      it(label(c), async () => {
        const { dir } = await scene();
        const r = await under([rule(R.list, c)], () =>
          dav(`${fx.url}${dir}/`, "PROPFIND", { headers: { depth: "1" } }),
        );
        expect(r.status === 207).toBe(absorbed(c));
        if (r.status === 207) {
          for (const name of ["a.bin", "b.bin", "sub"]) expect(r.body.toString()).toContain(name);
        } else expect([502, 503, 504]).toContain(r.status);
      });
    }
  });
});
