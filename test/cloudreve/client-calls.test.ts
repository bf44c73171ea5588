/**
 * The Cloudreve client's calls against the emulator over HTTP: error envelopes mapped to typed
 * errors, retries of idempotent calls only, listing in both pagination modes at the server's
 * page size, and batches split at the server's batch size.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { CloudreveApi } from "../../src/cloudreve/api.js";
import { BatchFailed } from "../../src/cloudreve/errors.js";
import { FileSchema } from "../../src/cloudreve/types.js";
import { Exists, Locked, NotFound, UpstreamError } from "../../src/errors.js";
import { myUri, useEmulator } from "../helpers/emulator.js";
import { newClient } from "./client-helpers.js";
import { calls, R, resetStats, seed, setFaults, stats } from "../helpers/control.js";

/** Names of every file the listing iterator yields, and how many list calls it took. */
async function listAll(api: CloudreveApi, uri: string): Promise<string[]> {
  const names: string[] = [];
  for await (const page of api.list(uri)) names.push(...page.files.map((f) => f.name));
  return names;
}

const fileName = (i: number) => `file-${String(i).padStart(5, "0")}.bin`;

describe("error envelopes become typed errors", () => {
  const ctx = useEmulator();
  let api: CloudreveApi;
  beforeAll(() => {
    api = newClient(ctx.emu.url);
  });
  afterAll(() => api.close());

  it("40016 (path not exist) → NotFound", async () => {
    const err = await api.info(myUri("errors/missing.txt")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFound);
    expect((err as NotFound).code).toBe(40016);
    expect((err as NotFound).correlationId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("a single-URI DELETE of a missing path (40081 around 40016) → NotFound, unwrapped", async () => {
    const err = await api.remove([myUri("errors/gone.txt")], true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFound);
    expect((err as NotFound).code).toBe(40016);
  });

  it("a multi-URI DELETE with some failures → BatchFailed with per-URI items", async () => {
    await api.create(myUri("errors/batch/keep-a.txt"), "file", false);
    await api.create(myUri("errors/batch/del-b.txt"), "file", false);
    const missing1 = myUri("errors/batch/missing 1.txt");
    const missing2 = myUri("errors/batch/missing-2.txt");
    const err = await api
      .remove([myUri("errors/batch/del-b.txt"), missing1, missing2], true)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchFailed);
    const batch = err as BatchFailed;
    expect(batch.code).toBe(40081);
    expect([...batch.items.keys()].sort()).toEqual([missing1, missing2].sort());
    for (const item of batch.items.values()) {
      expect(item).toBeInstanceOf(NotFound);
      expect(item.code).toBe(40016);
    }
    // The item that could be deleted was deleted; the other file is untouched.
    await expect(api.info(myUri("errors/batch/del-b.txt"))).rejects.toBeInstanceOf(NotFound);
    expect((await api.info(myUri("errors/batch/keep-a.txt"))).name).toBe("keep-a.txt");
  });

  it("40073 (a path locked by an upload session) → Locked with the conflicts", async () => {
    const uri = myUri("errors/uploading.bin");
    const session = await api.createUploadSession({ uri, size: 10 });
    try {
      const err = await api.rename(uri, "renamed.bin").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Locked);
      const locked = err as Locked;
      expect(locked.code).toBe(40073);
      expect(locked.conflicts.length).toBeGreaterThanOrEqual(1);
      expect(locked.conflicts[0]!.application).toBe("upload");
      expect(locked.conflicts[0]!.path).toBe(uri);
      expect(locked.conflicts[0]!.token).toBeTruthy();
    } finally {
      await api.cancelUpload(session.session_id, uri);
    }
    await expect(api.info(uri)).rejects.toBeInstanceOf(NotFound);
  });

  it("40004 (object existed) → Exists", async () => {
    const uri = myUri("errors/dir");
    await api.create(uri, "folder", true);
    const err = await api.create(uri, "folder", true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Exists);
    expect((err as Exists).code).toBe(40004);
    // Without err_on_conflict the existing folder comes back.
    expect((await api.create(uri, "folder", false)).name).toBe("dir");
  });

  it("a reply whose data does not have the expected shape → UpstreamError", async () => {
    // The capacity reply decoded as a File: the envelope is fine, the data is not a File.
    const err = await api.transport
      .call({ method: "GET", path: "/user/capacity", schema: FileSchema, idempotent: true })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toMatch(/unexpected shape/);
  });

  it("a reply that is not an envelope → UpstreamError", async () => {
    // Content routes answer raw bytes (here an unknown route's plain-text 404 is not JSON either).
    const err = await api.transport
      .call({ method: "GET", path: "/no/such/route", schema: z.unknown(), idempotent: true })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toMatch(/HTTP 404/);
  });
});

describe("retries", () => {
  const ctx = useEmulator();
  let api: CloudreveApi;
  const uri = myUri("retry/a.txt");
  beforeAll(async () => {
    api = newClient(ctx.emu.url);
    await api.create(uri, "file", false);
  });
  beforeEach(async () => {
    await setFaults(ctx.emu.url, []);
    await resetStats(ctx.emu.url);
  });
  afterAll(async () => {
    await setFaults(ctx.emu.url, []);
    await api.close();
  });

  for (const failWith of [503, 502, "reset"] as const) {
    it(`an idempotent call (GET /file/info) is retried after ${failWith} ×2 and succeeds: 3 calls`, async () => {
      await setFaults(ctx.emu.url, [{ route: R.info, failWith, times: 2 }]);
      expect((await api.info(uri)).name).toBe("a.txt");
      expect(await calls(ctx.emu.url, R.info)).toBe(3);
    });

    it(`a non-idempotent call (POST /file/rename) is repeated after ${failWith} and lands once: 2 calls`, async () => {
      await setFaults(ctx.emu.url, [{ route: R.rename, failWith, times: 1 }]);
      expect((await api.rename(uri, "b.txt")).name).toBe("b.txt");
      expect(await calls(ctx.emu.url, R.rename)).toBe(2);
      await setFaults(ctx.emu.url, []);
      await api.rename(myUri("retry/b.txt"), "a.txt");
    });
  }

  it("a rename whose answer is lost after it acted is found done: 2 calls, renamed once", async () => {
    await setFaults(ctx.emu.url, [{ route: R.rename, failWith: "reset", afterBytes: 0, times: 1 }]);
    expect((await api.rename(uri, "b.txt")).name).toBe("b.txt");
    // The repeat is refused (no source), and the new name is found upstream.
    expect(await calls(ctx.emu.url, R.rename)).toBe(2);
    await setFaults(ctx.emu.url, []);
    await api.rename(myUri("retry/b.txt"), "a.txt");
  });

  it("gives up after maxRetries (4): 5 calls, then UpstreamError", async () => {
    await setFaults(ctx.emu.url, [{ route: R.info, failWith: 503, times: 100 }]);
    const err = await api.info(uri).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toMatch(/HTTP 503/);
    expect(await calls(ctx.emu.url, R.info)).toBe(5);
  });
});

describe("listing a 5,000-entry folder", () => {
  const N = 5000;
  const expected = Array.from({ length: N }, (_, i) => fileName(i));

  for (const pagination of ["cursor", "offset"] as const) {
    describe(`${pagination} mode, max_page_size 700`, () => {
      const ctx = useEmulator({ pagination, maxPageSize: 700 });
      beforeAll(() => seed(ctx.emu.url, { uri: myUri("big"), files: N, size: 1 }));
      beforeEach(() => resetStats(ctx.emu.url));

      it("yields every file exactly once in ceil(5000/700) = 8 list calls", async () => {
        const api = newClient(ctx.emu.url);
        try {
          const names = await listAll(api, myUri("big"));
          expect(names.length).toBe(N);
          expect(new Set(names).size).toBe(N);
          expect([...names].sort()).toEqual(expected);
          // The first call asks for 2000 (the server default) and is clamped to 700, so even
          // before the page size is learned no call is wasted.
          expect(await calls(ctx.emu.url, R.list)).toBe(8);
          // Again, with the size known: still 8.
          await resetStats(ctx.emu.url);
          expect((await listAll(api, myUri("big"))).length).toBe(N);
          expect(await calls(ctx.emu.url, R.list)).toBe(8);
        } finally {
          await api.close();
        }
      });
    });

    describe(`${pagination} mode, max_page_size 3000 (above the first request's 2000)`, () => {
      const ctx = useEmulator({ pagination, maxPageSize: 3000 });
      beforeAll(() => seed(ctx.emu.url, { uri: myUri("big"), files: N, size: 1 }));
      beforeEach(() => resetStats(ctx.emu.url));

      it("yields every file exactly once", async () => {
        const api = newClient(ctx.emu.url);
        try {
          const names = await listAll(api, myUri("big"));
          expect(new Set(names).size).toBe(N);
          expect(names.length).toBe(N);
          // Cursor: 2000 then 3000 → 2 calls. Offset: page numbers count in the first page's
          // size, so the iteration keeps 2000 → 3 calls.
          expect(await calls(ctx.emu.url, R.list)).toBe(pagination === "cursor" ? 2 : 3);
          // The next listing uses the learned 3000 from its first call: 2 calls.
          await resetStats(ctx.emu.url);
          expect((await listAll(api, myUri("big"))).length).toBe(N);
          expect(await calls(ctx.emu.url, R.list)).toBe(2);
        } finally {
          await api.close();
        }
      });
    });
  }

  describe("empty folders and folders of exactly one page", () => {
    const ctx = useEmulator({ pagination: "offset", maxPageSize: 700 });
    it("an empty folder is one call; 1,400 entries are two", async () => {
      await seed(ctx.emu.url, { uri: myUri("empty") });
      await seed(ctx.emu.url, { uri: myUri("exact"), files: 1400 });
      const api = newClient(ctx.emu.url);
      try {
        await resetStats(ctx.emu.url);
        expect(await listAll(api, myUri("empty"))).toEqual([]);
        expect(await calls(ctx.emu.url, R.list)).toBe(1);
        await resetStats(ctx.emu.url);
        expect(new Set(await listAll(api, myUri("exact"))).size).toBe(1400);
        expect(await calls(ctx.emu.url, R.list)).toBe(2);
      } finally {
        await api.close();
      }
    });
  });
});

describe("batches are split at max_batch_size", () => {
  const ctx = useEmulator({ maxBatchSize: 3 });
  let api: CloudreveApi;
  beforeAll(async () => {
    api = newClient(ctx.emu.url);
    await seed(ctx.emu.url, { uri: myUri("src"), files: 8, size: 3 });
    await api.create(myUri("dst"), "folder", false);
    await resetStats(ctx.emu.url);
  });
  afterAll(() => api.close());

  it("moving 8 URIs costs ceil(8/3) = 3 move calls (and one site-config call)", async () => {
    const uris = Array.from({ length: 8 }, (_, i) => myUri(`src/${fileName(i)}`));
    await api.move(uris, myUri("dst"));
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.move]).toBe(3);
    expect(s.requests[R.explorerConfig]).toBe(1);
    const moved = await (async () => {
      const names: string[] = [];
      for await (const page of api.list(myUri("dst"))) names.push(...page.files.map((f) => f.name));
      return names.sort();
    })();
    expect(moved).toEqual(Array.from({ length: 8 }, (_, i) => fileName(i)));
  });

  it("removing 7 URIs costs ceil(7/3) = 3 delete calls; the batch size is not asked again", async () => {
    await resetStats(ctx.emu.url);
    const uris = Array.from({ length: 7 }, (_, i) => myUri(`dst/${fileName(i)}`));
    await api.remove(uris, true);
    const s = await stats(ctx.emu.url);
    expect(s.requests[R.remove]).toBe(3);
    expect(s.requests[R.explorerConfig]).toBeUndefined();
    const left: string[] = [];
    for await (const page of api.list(myUri("dst"))) left.push(...page.files.map((f) => f.name));
    expect(left).toEqual([fileName(7)]);
  });

  it("failures in several slices come back as one BatchFailed naming every failed URI", async () => {
    await seed(ctx.emu.url, { uri: myUri("mixed"), files: 7 });
    await resetStats(ctx.emu.url);
    const uris = Array.from({ length: 7 }, (_, i) => myUri(`mixed/${fileName(i)}`));
    // Slice 1 = [0, missing, 2], slice 2 = [3, 4, 5], slice 3 = [missing] (a one-URI slice).
    const missingA = myUri("mixed/missing-a.bin");
    const missingB = myUri("mixed/missing-b.bin");
    const asked = [uris[0]!, missingA, uris[2]!, uris[3]!, uris[4]!, uris[5]!, missingB];
    const err = await api.remove(asked, true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchFailed);
    const items = (err as BatchFailed).items;
    expect([...items.keys()].sort()).toEqual([missingA, missingB].sort());
    for (const item of items.values()) expect(item).toBeInstanceOf(NotFound);
    expect(await calls(ctx.emu.url, R.remove)).toBe(3);
    // Every URI that could be removed was removed, in every slice.
    const left: string[] = [];
    for await (const page of api.list(myUri("mixed"))) left.push(...page.files.map((f) => f.name));
    expect(left.sort()).toEqual([fileName(1), fileName(6)]);
  });

  it("a batch of exactly max_batch_size is one call", async () => {
    await seed(ctx.emu.url, { uri: myUri("three"), files: 3 });
    await resetStats(ctx.emu.url);
    await api.remove(
      Array.from({ length: 3 }, (_, i) => myUri(`three/${fileName(i)}`)),
      true,
    );
    expect(await calls(ctx.emu.url, R.remove)).toBe(1);
  });
});
