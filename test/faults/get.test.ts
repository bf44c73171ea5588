/**
 * GET against a storage that fails the way real ones do: before the reply, part-way through
 * the body (reset or stall), refusing the signature, once, twice or always; through the
 * streamed reader (smaller reads) and the bulk reader (8 MiB and up). Whatever happens, the
 * client sees either exactly the bytes of a clean run or a failure it can tell from success:
 * an error status, or a body cut short of its Content-Length. Never other bytes.
 */
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  R,
  resetStats,
  seed,
  seedBytes,
  setFaults,
  stats,
  type FaultRule,
} from "../helpers/control.js";
import { myUri } from "../helpers/emulator.js";
import { dav } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";

const STREAMED = 1024 * 1024;
const BULK = 9 * 1024 * 1024;

type Kind = NonNullable<FaultRule["failWith"]>;

describe("GET under storage faults", () => {
  const fx = useGateway(
    {},
    { cacheTtlSeconds: 600, upstreamResponseTimeoutSeconds: 1, upstreamIdleTimeoutSeconds: 1 },
  );
  beforeAll(async () => {
    await seed(fx.emu.url, { uri: myUri("small"), files: 1, size: STREAMED });
    await seed(fx.emu.url, { uri: myUri("large"), files: 1, size: BULK });
  });
  beforeEach(async () => {
    await setFaults(fx.emu.url, []);
    await resetStats(fx.emu.url);
  });

  async function get(path: string, rules: FaultRule[], range?: [number, number]) {
    await setFaults(fx.emu.url, rules);
    const reply = await dav(`${fx.url}${path}`, "GET", {
      headers: range ? { range: `bytes=${range[0]}-${range[1]}` } : {},
    });
    await setFaults(fx.emu.url, []);
    return { ...reply, calls: (await stats(fx.emu.url)).requests };
  }

  for (const [reader, path, size] of [
    ["streamed", "/small/file-00000.bin", STREAMED],
    ["bulk", "/large/file-00000.bin", BULK],
  ] as const) {
    describe(`${reader} reader`, () => {
      const whole = seedBytes(size);
      const kinds: Kind[] = [502, 503, "reset"];
      for (const kind of kinds) {
        for (const times of [1, 2]) {
          it(`content ${String(kind)} ×${times} before the reply: retried, exact bytes`, async () => {
            const r = await get(path, [{ route: R.content, failWith: kind, times }]);
            expect(r.status).toBe(200);
            expect(r.body.equals(whole)).toBe(true);
            expect(r.calls[R.content]).toBe(times + 1);
          });
        }
        it(`content ${String(kind)} always: an error status, no body`, async () => {
          const r = await get(path, [{ route: R.content, failWith: kind }]);
          expect([502, 503]).toContain(r.status);
          expect(r.calls[R.content]).toBe(5);
        });
      }

      for (const kind of ["reset", "hang"] as const) {
        for (const times of [1, 2]) {
          it(`the body breaks off (${kind}) ×${times}: resumed from the next byte, exact bytes`, async () => {
            const cut = Math.floor(size / 3);
            const r = await get(path, [
              { route: R.content, failWith: kind, afterBytes: cut, times },
            ]);
            expect(r.status).toBe(200);
            expect(r.body.length).toBe(size);
            expect(r.body.equals(whole)).toBe(true);
            expect(r.calls[R.content]).toBe(times + 1);
          });
        }
      }

      it("a ranged read that breaks off twice is resumed within its range", async () => {
        const from = 1000;
        const to = size - 5000;
        const r = await get(
          path,
          [{ route: R.content, failWith: "reset", afterBytes: 100_000, times: 2 }],
          [from, to],
        );
        expect(r.status).toBe(206);
        expect(r.headers["content-range"]).toBe(`bytes ${from}-${to}/${size}`);
        expect(r.body.equals(whole.subarray(from, to + 1))).toBe(true);
      });

      it("a body that keeps breaking off is cut short of its length, never completed wrongly", async () => {
        const r = await get(path, [{ route: R.content, failWith: "reset", afterBytes: 50_000 }]);
        // Headers went out with the first try: the failure shows as a truncated body.
        expect(r.status === 0 || r.body.length < size).toBe(true);
        expect(r.calls[R.content]).toBe(5);
      });

      it("the storage refusing the signature (403) is re-signed without the server's URL cache", async () => {
        await get(path, []); // the URL is cached now
        await resetStats(fx.emu.url);
        const r = await get(path, [{ route: R.content, failWith: 403, times: 1 }]);
        expect(r.status).toBe(200);
        expect(r.body.equals(whole)).toBe(true);
        expect(r.calls[R.url]).toBe(1);
        expect(r.calls[R.content]).toBe(2);
      });

      it("the signing route failing twice is retried", async () => {
        // A version read for the first time needs a URL of its own.
        await seed(fx.emu.url, { uri: myUri(`cold-${reader}`), files: 1, size });
        await resetStats(fx.emu.url);
        const r = await get(`/cold-${reader}/file-00000.bin`, [
          { route: R.url, failWith: 503, times: 2 },
        ]);
        expect(r.status).toBe(200);
        expect(r.body.equals(whole)).toBe(true);
        expect(r.calls[R.url]).toBe(3);
      });
    });
  }
});
