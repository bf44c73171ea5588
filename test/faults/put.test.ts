/**
 * PUT against an upstream that fails the way real ones do: every route a PUT uses, failing
 * with a proxy's 502/503/413, a reset or silence, once, twice or always, from a fast client
 * and a slow one. Whatever happens, a 2xx means Cloudreve holds exactly the bytes sent; any
 * other answer means it holds exactly the old content (or nothing, for a new file); and no
 * placeholder, upload session or path lock is left upstream.
 */
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  advanceClock,
  R,
  resetStats,
  setFaults,
  stats,
  type FaultRule,
} from "../helpers/control.js";
import { Api, expectStored, upstreamInfo } from "../helpers/emulator.js";
import { content, dav, expectNothingLeft, trickle } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";

const CHUNK = 256 * 1024;
/** Small: one `PUT /file/content` (the gateway's direct-upload limit is set to this). */
const SMALL_SIZE = 100_000;
/** Large enough for 4 chunks: an upload session. */
const SESSION_SIZE = 4 * CHUNK - 1000;
const MTIME = { "x-oc-mtime": "1700000000" };

type Kind = NonNullable<FaultRule["failWith"]>;
const KINDS: Kind[] = [502, 503, "reset", 413];
const COUNTS = [1, 2, Infinity];

let seq = 0;
const fresh = (label: string) => `/put/${label}-${++seq}.bin`;

describe("PUT under upstream faults", () => {
  const fx = useGateway(
    { chunkSize: CHUNK },
    {
      cacheTtlSeconds: 0,
      directUploadMaxBytes: SMALL_SIZE,
      upstreamResponseTimeoutSeconds: 1,
      upstreamIdleTimeoutSeconds: 1,
    },
  );
  let api: Api;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
    expect((await dav(`${fx.url}/put`, "MKCOL")).status).toBe(201);
  });
  beforeEach(() => setFaults(fx.emu.url, []));

  /** Writes `old` (unless new) through the gateway, then PUTs `next` under `rules`. */
  async function attempt(options: {
    rules: FaultRule[];
    size: number;
    overwrite: boolean;
    slow?: boolean;
    headers?: Record<string, string>;
  }) {
    const path = fresh(options.overwrite ? "over" : "new");
    const old = content(options.size + 17, seq);
    if (options.overwrite) {
      expect((await dav(`${fx.url}${path}`, "PUT", { body: old })).status).toBe(201);
    }
    const next = content(options.size, seq + 1000);
    await setFaults(fx.emu.url, options.rules);
    await resetStats(fx.emu.url);
    const reply = await dav(`${fx.url}${path}`, "PUT", {
      headers: { "content-length": String(next.length), ...options.headers },
      body: options.slow ? trickle(next, 8, 40) : next,
    });
    await setFaults(fx.emu.url, []);
    const calls = (await stats(fx.emu.url)).requests;
    return { path, old: options.overwrite ? old : undefined, next, status: reply.status, calls };
  }

  /** The promise: acknowledged bytes, or the old state exactly; nothing left upstream. */
  async function expectKept(r: Awaited<ReturnType<typeof attempt>>) {
    if (r.status === 201 || r.status === 204) {
      expect(r.status).toBe(r.old ? 204 : 201);
      await expectStored(api, r.path.slice(1), r.next);
    } else {
      expect([502, 503, 504]).toContain(r.status);
      if (r.old) await expectStored(api, r.path.slice(1), r.old);
      else expect(await upstreamInfo(api, r.path.slice(1))).toBeUndefined();
    }
    await expectNothingLeft(fx.emu.url);
  }

  /** Whether a failure of this kind and count is absorbed by the gateway's retries. */
  function absorbed(kind: Kind, times: number, retriesLostAnswer: boolean): boolean {
    if (kind === 413 || times === Infinity) return false;
    // A reset may have been acted on: only calls safe to repeat are repeated.
    if (kind === "reset") return retriesLostAnswer ? times === 1 : true;
    return true;
  }

  describe.each([
    ["chunk", R.chunk, true],
    ["session create", R.createSession, false],
    ["info after the upload", R.info, true],
  ] as const)("upload session: %s fails", (_label, route, idempotent) => {
    for (const kind of KINDS) {
      for (const times of COUNTS) {
        for (const overwrite of [false, true]) {
          for (const slow of [false, true]) {
            const name = `${String(kind)} ×${times} ${overwrite ? "overwrite" : "new file"}${slow ? ", slow client" : ""}`;
            it(name, async () => {
              const r = await attempt({
                rules: [{ route, failWith: kind, times: times === Infinity ? undefined : times }],
                size: SESSION_SIZE,
                overwrite,
                slow,
                headers: MTIME,
              });
              await expectKept(r);
              const ok = r.status === 201 || r.status === 204;
              expect(ok).toBe(absorbed(kind, times, !idempotent));
              if (ok)
                expect(r.calls[R.createSession]).toBe(route === R.createSession ? times + 1 : 1);
            });
          }
        }
      }
    }
  });

  describe("small file: PUT /file/content fails", () => {
    for (const kind of KINDS) {
      for (const times of COUNTS) {
        for (const overwrite of [false, true]) {
          it(`${String(kind)} ×${times} ${overwrite ? "overwrite" : "new file"}`, async () => {
            const r = await attempt({
              rules: [
                {
                  route: R.putContent,
                  failWith: kind,
                  times: times === Infinity ? undefined : times,
                },
              ],
              size: SMALL_SIZE,
              overwrite,
            });
            await expectKept(r);
            const ok = r.status === 201 || r.status === 204;
            expect(ok).toBe(absorbed(kind, times, false));
            if (ok) expect(r.calls[R.putContent]).toBe(times + 1);
          });
        }
      }
    }
  });

  it("a chunk whose answer is lost (the chunk was stored) is resent and the upload completes", async () => {
    const r = await attempt({
      rules: [{ route: R.chunk, failWith: "reset", afterBytes: 0, times: 2 }],
      size: SESSION_SIZE,
      overwrite: true,
      headers: MTIME,
    });
    expect(r.status).toBe(204);
    await expectKept(r);
    expect(r.calls[R.chunk]).toBe(4 + 2);
  });

  it("a session created but whose answer was lost is freed, and the PUT succeeds", async () => {
    for (const overwrite of [false, true]) {
      const r = await attempt({
        rules: [{ route: R.createSession, failWith: "reset", afterBytes: 0, times: 1 }],
        size: SESSION_SIZE,
        overwrite,
        headers: MTIME,
      });
      expect(r.status).toBe(overwrite ? 204 : 201);
      await expectKept(r);
    }
  });

  it("a hung chunk POST gives the client 504 within the bounds, and cancels", async () => {
    const r = await attempt({
      rules: [{ route: R.chunk, failWith: "hang" }],
      size: SESSION_SIZE,
      overwrite: true,
      headers: MTIME,
    });
    expect(r.status).toBe(504);
    await expectKept(r);
  });

  it("a chunk that hangs once is retried and the upload completes", async () => {
    const r = await attempt({
      rules: [{ route: R.chunk, failWith: "hang", times: 1 }],
      size: SESSION_SIZE,
      overwrite: false,
      headers: MTIME,
    });
    expect(r.status).toBe(201);
    await expectKept(r);
  });

  it("the cancel itself failing leaves a lock the next write of the path frees", async () => {
    const path = fresh("cancel");
    const old = content(SESSION_SIZE, 1);
    expect((await dav(`${fx.url}${path}`, "PUT", { body: old, headers: MTIME })).status).toBe(201);
    await setFaults(fx.emu.url, [
      { route: R.chunk, failWith: 502 },
      { route: R.cancel, failWith: 503 },
    ]);
    const failed = await dav(`${fx.url}${path}`, "PUT", {
      body: content(SESSION_SIZE, 2),
      headers: MTIME,
    });
    expect([502, 503]).toContain(failed.status);
    await setFaults(fx.emu.url, []);
    await expectStored(api, path.slice(1), old);
    const next = content(SESSION_SIZE, 3);
    const again = await dav(`${fx.url}${path}`, "PUT", { body: next, headers: MTIME });
    expect(again.status).toBe(204);
    await expectStored(api, path.slice(1), next);
    await expectNothingLeft(fx.emu.url);
  });

  it("the session expiring mid-upload (token renewed meanwhile): 503, old content kept", async () => {
    for (const overwrite of [false, true]) {
      const path = fresh("expiry");
      const old = content(SESSION_SIZE, 5);
      if (overwrite) {
        expect((await dav(`${fx.url}${path}`, "PUT", { body: old })).status).toBe(201);
      }
      const next = content(SESSION_SIZE, 6);
      await resetStats(fx.emu.url);
      const emulator = fx.emu.url;
      // A slow client: once the first chunk is upstream, the session's 24 h (and the access
      // token's hour) pass before the rest of the body arrives.
      const body = Readable.from(
        (async function* () {
          const piece = next.length / 8;
          for (let i = 0; i < 8; i++) {
            if (i === 4) {
              while (((await stats(emulator)).requests[R.chunk] ?? 0) < 1) await sleep(10);
              await advanceClock(emulator, 86_400 + 60);
            }
            yield next.subarray(i * piece, (i + 1) * piece);
          }
        })(),
      );
      const r = await dav(`${fx.url}${path}`, "PUT", {
        headers: { "content-length": String(next.length), ...MTIME },
        body,
      });
      expect(r.status).toBe(503);
      await api.login();
      if (overwrite) await expectStored(api, path.slice(1), old);
      else expect(await upstreamInfo(api, path.slice(1))).toBeUndefined();
      await expectNothingLeft(fx.emu.url);
      const calls = (await stats(fx.emu.url)).requests;
      expect(calls[R.refresh] ?? 0).toBeGreaterThan(0);
      // Cancelled (a call that meets the expired token is made again after the renewal).
      expect(calls[R.cancel]).toBeGreaterThanOrEqual(1);
    }
  });
});

describe("PUT as one chunk (relay mode: chunk_size 0), kept on disk for a retry", () => {
  const fx = useGateway({ chunkSize: 0 }, { cacheTtlSeconds: 0 });
  let api: Api;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });

  it("a 70 MiB body whose one chunk fails twice is resent from disk, byte for byte", async () => {
    const body = content(70 * 1024 * 1024, 77);
    await setFaults(fx.emu.url, [{ route: R.chunk, failWith: "reset", times: 2 }]);
    await resetStats(fx.emu.url);
    const reply = await dav(`${fx.url}/whole.bin`, "PUT", { body, headers: MTIME });
    await setFaults(fx.emu.url, []);
    expect(reply.status).toBe(201);
    expect((await stats(fx.emu.url)).requests[R.chunk]).toBe(3);
    await expectStored(api, "whole.bin", body);
    await expectNothingLeft(fx.emu.url);
  });
});
