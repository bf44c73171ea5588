import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  advance,
  Api,
  bytes,
  code,
  info,
  ms,
  myUri,
  ok,
  put,
  used,
  useEmulator,
} from "../helpers/emulator.js";
import type { CrFile, LockConflict } from "../helpers/emulator.js";

interface UploadSession {
  session_id: string;
  upload_id?: string;
  chunk_size: number;
  expires: number;
  uri: string;
  callback_secret: string;
  storage_policy?: { id: string; name: string; type: string; max_size: number };
}

const CHUNK = 1024;
const OTHER = { email: "other@example.com", password: "other-password" };
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function list(api: Api, path: string): Promise<CrFile[]> {
  return ok(
    await api.call<{ files: CrFile[] }>("GET", "/file", {
      query: { uri: myUri(path), page_size: 2000 },
    }),
  ).files;
}

function startSession(api: Api, path: string, size: number, extra: Record<string, unknown> = {}) {
  return api.call<UploadSession>("PUT", "/file/upload", {
    json: { uri: myUri(path), size, ...extra },
  });
}

async function session(
  api: Api,
  path: string,
  size: number,
  extra: Record<string, unknown> = {},
): Promise<UploadSession> {
  return ok(await startSession(api, path, size, extra));
}

function chunk(api: Api, sessionId: string, index: number, body: Uint8Array) {
  return api.call("POST", `/file/upload/${sessionId}/${index}`, {
    body,
    headers: { "content-type": "application/octet-stream" },
  });
}

/** Sends every chunk in order, each reply must be a bare success. */
async function sendAll(api: Api, s: UploadSession, data: Uint8Array): Promise<void> {
  const n = Math.max(1, Math.ceil(data.length / s.chunk_size));
  for (let i = 0; i < n; i++) {
    const r = await chunk(
      api,
      s.session_id,
      i,
      data.slice(i * s.chunk_size, (i + 1) * s.chunk_size),
    );
    expect(code(r), r.text).toBe(0);
  }
}

function cancel(api: Api, id: string, path: string) {
  return api.call("DELETE", "/file/upload", { json: { id, uri: myUri(path) } });
}

async function signedUrl(api: Api, path: string): Promise<string> {
  const r = await api.call<{ urls: { url: string }[] }>("POST", "/file/url", {
    json: { uris: [myUri(path)], no_cache: true },
  });
  return ok(r).urls[0]!.url;
}

async function download(api: Api, path: string): Promise<Uint8Array> {
  const res = await fetch(await signedUrl(api, path));
  expect(res.status).toBe(200);
  return new Uint8Array(await res.arrayBuffer());
}

// ---------------------------------------------------------------------------

describe("§6 upload sessions (local policy, chunk_size 1024)", () => {
  const ctx = useEmulator({ chunkSize: CHUNK, extraUsers: [OTHER] });

  it("§6.1 session shape: session_id, chunk_size, expires (Unix seconds), uri, callback_secret, storage_policy", async () => {
    const r = await startSession(ctx.api, "shape/a.bin", 3000);
    const s = ok(r);
    expect(s.session_id).toMatch(UUID_RE);
    expect(s.chunk_size).toBe(CHUNK);
    expect(Number.isInteger(s.expires)).toBe(true);
    expect(s.uri).toBe(myUri("shape/a.bin"));
    expect(typeof s.callback_secret).toBe("string");
    expect(s.callback_secret).toHaveLength(32);
    expect(s.storage_policy?.type).toBe("local");
    expect(typeof s.storage_policy?.id).toBe("string");
    // expires = now + upload_session_timeout (86400 s); "now" read off the placeholder.
    const placeholder = ok(await info(ctx.api, "shape/a.bin"));
    const created = ms(placeholder.created_at) / 1000;
    expect(Math.abs(s.expires - (created + 86400))).toBeLessThanOrEqual(60);
    expect(code(await cancel(ctx.api, s.session_id, "shape/a.bin"))).toBe(0);
  });

  it("§6.1 §6.3 the placeholder shows in the listing at size 0 with sys:upload_session_id", async () => {
    const s = await session(ctx.api, "ph/new.bin", 2500);
    const files = await list(ctx.api, "ph");
    const ph = files.find((f) => f.name === "new.bin");
    expect(ph, JSON.stringify(files)).toBeDefined();
    expect(ph!.type).toBe(0);
    expect(ph!.size).toBe(0);
    expect(ph!.metadata?.["sys:upload_session_id"]).toBe(s.session_id);
    expect(code(await cancel(ctx.api, s.session_id, "ph/new.bin"))).toBe(0);
  });

  it("§6.1 §7.1 the declared size is reserved against the quota at session create", async () => {
    const before = await used(ctx.api);
    const s = await session(ctx.api, "reserve/r.bin", 5000);
    expect(await used(ctx.api)).toBe(before + 5000);
    expect(code(await cancel(ctx.api, s.session_id, "reserve/r.bin"))).toBe(0);
    expect(await used(ctx.api)).toBe(before);
  });

  it("§6.1 missing parent folders are created", async () => {
    const s = await session(ctx.api, "deep/x/y/z.bin", 10);
    expect(ok(await info(ctx.api, "deep/x/y")).type).toBe(1);
    expect(code(await cancel(ctx.api, s.session_id, "deep/x/y/z.bin"))).toBe(0);
  });

  it("§6.5 an existing path without entity_type → 40004; with entity_type version → ok", async () => {
    const old = await put(ctx.api, "exist/f.bin", bytes(100, 2));
    const r = await startSession(ctx.api, "exist/f.bin", 50);
    expect(code(r), r.text).toBe(40004);
    const s = await session(ctx.api, "exist/f.bin", 50, { entity_type: "version" });
    expect(s.session_id).toMatch(UUID_RE);
    // The old content stays current until completion.
    const cur = ok(await info(ctx.api, "exist/f.bin"));
    expect(cur.size).toBe(100);
    expect(cur.primary_entity).toBe(old.primary_entity);
    expect(await download(ctx.api, "exist/f.bin")).toEqual(bytes(100, 2));
    expect(code(await cancel(ctx.api, s.session_id, "exist/f.bin"))).toBe(0);
  });

  it("§6.5 entity_type version onto a folder → 40004", async () => {
    ok(
      await ctx.api.call("POST", "/file/create", {
        json: { uri: myUri("vf/dir"), type: "folder" },
      }),
    );
    const r = await startSession(ctx.api, "vf/dir", 10, { entity_type: "version" });
    expect(code(r), r.text).toBe(40004);
  });

  it("§6.1 a second session to a path with a pending version session → 40073; to a pending placeholder → 40004", async () => {
    await put(ctx.api, "pend/f.bin", "old");
    const s = await session(ctx.api, "pend/f.bin", 10, { entity_type: "version" });
    const r = await startSession(ctx.api, "pend/f.bin", 10, { entity_type: "version" });
    expect(code(r), r.text).toBe(40073);
    expect(code(await cancel(ctx.api, s.session_id, "pend/f.bin"))).toBe(0);

    const p = await session(ctx.api, "pend/new.bin", 10);
    const r2 = await startSession(ctx.api, "pend/new.bin", 10);
    expect(code(r2), r2.text).toBe(40004);
    expect(code(await cancel(ctx.api, p.session_id, "pend/new.bin"))).toBe(0);
  });

  it("§6.2 a chunk with the wrong Content-Length → 40013", async () => {
    const s = await session(ctx.api, "len/a.bin", 2500);
    const short = await chunk(ctx.api, s.session_id, 0, bytes(1000));
    expect(code(short), short.text).toBe(40013);
    const long = await chunk(ctx.api, s.session_id, 2, bytes(453));
    expect(code(long), long.text).toBe(40013);
    const ph = ok(await info(ctx.api, "len/a.bin"));
    expect(ph.size).toBe(0);
    expect(code(await cancel(ctx.api, s.session_id, "len/a.bin"))).toBe(0);
  });

  it("§6.2 a chunk index out of range → 40012", async () => {
    const s = await session(ctx.api, "idx/a.bin", 2048);
    const r = await chunk(ctx.api, s.session_id, 2, new Uint8Array(0));
    expect(code(r), r.text).toBe(40012);
    const r2 = await chunk(ctx.api, s.session_id, 7, bytes(CHUNK));
    expect(code(r2), r2.text).toBe(40012);
    expect(code(await cancel(ctx.api, s.session_id, "idx/a.bin"))).toBe(0);
  });

  it("§6.2 an unknown session → 40011", async () => {
    const r = await chunk(ctx.api, randomUUID(), 0, bytes(10));
    expect(code(r), r.text).toBe(40011);
  });

  it("§6.2 another user's session → 40011", async () => {
    const s = await session(ctx.api, "other/a.bin", 10);
    const other = new Api(ctx.emu.url);
    await other.login(OTHER.email, OTHER.password);
    const r = await chunk(other, s.session_id, 0, bytes(10));
    expect(code(r), r.text).toBe(40011);
    const ph = ok(await info(ctx.api, "other/a.bin"));
    expect(ph.size).toBe(0);
    expect(ph.metadata?.["sys:upload_session_id"]).toBe(s.session_id);
    expect(code(await cancel(ctx.api, s.session_id, "other/a.bin"))).toBe(0);
  });

  it("§6.2 §6.3 out-of-order chunks; replies carry no data; automatic completion", async () => {
    const data = bytes(2500, 3);
    const lastModified = 1_700_000_000_123;
    const s = await session(ctx.api, "ooo/file.bin", data.length, { last_modified: lastModified });
    const folder = ok(await info(ctx.api, "ooo"));
    const parts = [data.slice(0, 1024), data.slice(1024, 2048), data.slice(2048)];

    for (const i of [2, 0]) {
      const r = await chunk(ctx.api, s.session_id, i, parts[i]!);
      expect(code(r), r.text).toBe(0);
      expect(r.json.data).toBeUndefined();
      expect("data" in r.json).toBe(false);
    }
    const mid = ok(await info(ctx.api, "ooo/file.bin"));
    expect(mid.size).toBe(0);
    expect(mid.metadata?.["sys:upload_session_id"]).toBe(s.session_id);

    const last = await chunk(ctx.api, s.session_id, 1, parts[1]!);
    expect(code(last), last.text).toBe(0);
    expect("data" in last.json).toBe(false);

    const done = ok(await info(ctx.api, "ooo/file.bin"));
    expect(done.size).toBe(2500);
    expect(done.primary_entity).not.toBe(folder.primary_entity);
    expect(done.primary_entity).not.toBe(mid.primary_entity);
    expect(ms(done.updated_at)).toBe(lastModified);
    expect(done.metadata?.["sys:upload_session_id"]).toBeUndefined();
    expect(await download(ctx.api, "ooo/file.bin")).toEqual(data);

    // The session is gone after completion.
    const again = await chunk(ctx.api, s.session_id, 0, parts[0]!);
    expect(code(again), again.text).toBe(40011);
  });

  it("§6.2 sequential chunks with a short last chunk produce byte-identical content", async () => {
    const data = bytes(5 * CHUNK + 7, 4);
    const s = await session(ctx.api, "seq/data.bin", data.length);
    await sendAll(ctx.api, s, data);
    const f = ok(await info(ctx.api, "seq/data.bin"));
    expect(f.size).toBe(data.length);
    expect(await download(ctx.api, "seq/data.bin")).toEqual(data);
  });

  it("§6.2 a re-sent chunk before completion is idempotent", async () => {
    const data = bytes(2000, 5);
    const s = await session(ctx.api, "resend/a.bin", data.length);
    expect(code(await chunk(ctx.api, s.session_id, 0, data.slice(0, CHUNK)))).toBe(0);
    expect(code(await chunk(ctx.api, s.session_id, 0, data.slice(0, CHUNK)))).toBe(0);
    expect(ok(await info(ctx.api, "resend/a.bin")).size).toBe(0);
    expect(code(await chunk(ctx.api, s.session_id, 1, data.slice(CHUNK)))).toBe(0);
    expect(await download(ctx.api, "resend/a.bin")).toEqual(data);
  });

  it("§6.2 size 0 needs exactly one empty chunk 0", async () => {
    const s = await session(ctx.api, "zero/empty.bin", 0);
    const before = ok(await info(ctx.api, "zero/empty.bin"));
    expect(before.metadata?.["sys:upload_session_id"]).toBe(s.session_id);
    const r = await chunk(ctx.api, s.session_id, 0, new Uint8Array(0));
    expect(code(r), r.text).toBe(0);
    expect("data" in r.json).toBe(false);
    const after = ok(await info(ctx.api, "zero/empty.bin"));
    expect(after.size).toBe(0);
    expect(after.metadata?.["sys:upload_session_id"]).toBeUndefined();
    expect(code(await chunk(ctx.api, s.session_id, 0, new Uint8Array(0)))).toBe(40011);
  });

  it("§6.3 §6.5 a version upload replaces the content on completion and keeps the old one", async () => {
    const oldData = bytes(1500, 6);
    const old = await put(ctx.api, "ver/f.bin", oldData);
    const oldUrl = await signedUrl(ctx.api, "ver/f.bin");
    const newData = bytes(2100, 7);
    const s = await session(ctx.api, "ver/f.bin", newData.length, { entity_type: "version" });
    // Until completion the old content stays current and readable.
    expect(ok(await info(ctx.api, "ver/f.bin")).primary_entity).toBe(old.primary_entity);
    const mid = await fetch(oldUrl);
    expect(mid.status).toBe(200);
    expect(new Uint8Array(await mid.arrayBuffer())).toEqual(oldData);

    await sendAll(ctx.api, s, newData);
    const f = ok(await info(ctx.api, "ver/f.bin"));
    expect(f.id).toBe(old.id);
    expect(f.size).toBe(2100);
    expect(f.primary_entity).not.toBe(old.primary_entity);
    expect(f.metadata?.["sys:upload_session_id"]).toBeUndefined();
    expect(await download(ctx.api, "ver/f.bin")).toEqual(newData);

    // §6.5: retention keeps the previous content as an old version: its URL still serves it.
    const kept = await fetch(oldUrl);
    expect(kept.status).toBe(200);
    expect(new Uint8Array(await kept.arrayBuffer())).toEqual(oldData);
  });

  it("§6.1 §6.3 session metadata is applied on completion", async () => {
    const key = "dav:urn:test|note";
    const s = await session(ctx.api, "smeta/a.bin", 10, { metadata: { [key]: "hello" } });
    await sendAll(ctx.api, s, bytes(10));
    const f = ok(await info(ctx.api, "smeta/a.bin"));
    expect(f.metadata?.[key]).toBe("hello");
    expect(f.metadata?.["sys:upload_session_id"]).toBeUndefined();
  });

  it("§6.1 bad metadata → 40001; a bad name → 40052; nothing is created", async () => {
    const r = await startSession(ctx.api, "badmeta/a.bin", 10, { metadata: { "nope:x": "v" } });
    expect(code(r), r.text).toBe(40001);
    expect((await info(ctx.api, "badmeta/a.bin")).json.code).toBe(40016);
    const n = await startSession(ctx.api, "badname/a:b.bin", 10);
    expect(code(n), n.text).toBe(40052);
  });

  it("§6.3 without last_modified, updated_at is the completion time", async () => {
    const s = await session(ctx.api, "nolm/a.bin", 10);
    const ph = ok(await info(ctx.api, "nolm/a.bin"));
    await advance(ctx.api, 500);
    await sendAll(ctx.api, s, bytes(10));
    const f = ok(await info(ctx.api, "nolm/a.bin"));
    expect(ms(f.updated_at) - ms(ph.created_at)).toBeGreaterThanOrEqual(499_000);
  });

  it("§6.4 DELETE /file/upload of a new file removes the placeholder and releases the quota", async () => {
    const before = await used(ctx.api);
    const s = await session(ctx.api, "cancel1/new.bin", 3000);
    expect(await used(ctx.api)).toBe(before + 3000);
    expect(code(await chunk(ctx.api, s.session_id, 0, bytes(CHUNK)))).toBe(0);
    const r = await cancel(ctx.api, s.session_id, "cancel1/new.bin");
    expect(code(r), r.text).toBe(0);
    expect((await info(ctx.api, "cancel1/new.bin")).json.code).toBe(40016);
    expect((await list(ctx.api, "cancel1")).map((f) => f.name)).toEqual([]);
    expect(await used(ctx.api)).toBe(before);
    expect(code(await chunk(ctx.api, s.session_id, 1, bytes(CHUNK)))).toBe(40011);
  });

  it("§6.4 cancelling a version upload keeps the old content", async () => {
    const oldData = bytes(800, 8);
    const old = await put(ctx.api, "cancel2/f.bin", oldData);
    const before = await used(ctx.api);
    const s = await session(ctx.api, "cancel2/f.bin", 1200, { entity_type: "version" });
    expect(await used(ctx.api)).toBe(before + 1200);
    expect(code(await chunk(ctx.api, s.session_id, 0, bytes(CHUNK)))).toBe(0);
    const r = await cancel(ctx.api, s.session_id, "cancel2/f.bin");
    expect(code(r), r.text).toBe(0);
    const f = ok(await info(ctx.api, "cancel2/f.bin"));
    expect(f.size).toBe(800);
    expect(f.primary_entity).toBe(old.primary_entity);
    expect(f.metadata?.["sys:upload_session_id"]).toBeUndefined();
    expect(await download(ctx.api, "cancel2/f.bin")).toEqual(oldData);
    expect(await used(ctx.api)).toBe(before);
  });

  it("§6.4 cancel with a session id that does not belong to that uri → 404", async () => {
    const s = await session(ctx.api, "cancel3/a.bin", 100);
    const other = await session(ctx.api, "cancel3/b.bin", 100);
    const r = await cancel(ctx.api, randomUUID(), "cancel3/a.bin");
    expect(code(r), r.text).toBe(404);
    const r2 = await cancel(ctx.api, other.session_id, "cancel3/a.bin");
    expect(code(r2), r2.text).toBe(404);
    // Nothing was cancelled.
    const ph = ok(await info(ctx.api, "cancel3/a.bin"));
    expect(ph.metadata?.["sys:upload_session_id"]).toBe(s.session_id);
    expect(code(await cancel(ctx.api, s.session_id, "cancel3/a.bin"))).toBe(0);
    expect(code(await cancel(ctx.api, other.session_id, "cancel3/b.bin"))).toBe(0);
  });

  it("§6.4 cancel of a missing uri → 40016", async () => {
    const r = await cancel(ctx.api, randomUUID(), "cancel4/none.bin");
    expect(code(r), r.text).toBe(40016);
  });

  it("§5.11 §6.1 the session lock blocks rename, delete and move with 40073 until cancel", async () => {
    await put(ctx.api, "locked/f.bin", "content");
    ok(
      await ctx.api.call("POST", "/file/create", {
        json: { uri: myUri("locked/dst"), type: "folder" },
      }),
    );
    const uri = myUri("locked/f.bin");
    const s = await session(ctx.api, "locked/f.bin", 100, { entity_type: "version" });

    const ren = await ctx.api.call<LockConflict[]>("POST", "/file/rename", {
      json: { uri, new_name: "g.bin" },
    });
    expect(code(ren), ren.text).toBe(40073);
    expect(ren.json.data?.[0]?.owner.application.type).toBe("upload");
    const del = await ctx.api.call("DELETE", "/file", { json: { uris: [uri] } });
    expect(code(del), del.text).toBe(40073);
    const mv = await ctx.api.call("POST", "/file/move", {
      json: { uris: [uri], dst: myUri("locked/dst"), copy: false },
    });
    expect(code(mv), mv.text).toBe(40073);
    expect((await list(ctx.api, "locked")).map((f) => f.name).sort()).toEqual(["dst", "f.bin"]);

    expect(code(await cancel(ctx.api, s.session_id, "locked/f.bin"))).toBe(0);
    const ren2 = await ctx.api.call("POST", "/file/rename", { json: { uri, new_name: "g.bin" } });
    expect(code(ren2), ren2.text).toBe(0);
    const mv2 = await ctx.api.call("POST", "/file/move", {
      json: { uris: [myUri("locked/g.bin")], dst: myUri("locked/dst"), copy: false },
    });
    expect(code(mv2), mv2.text).toBe(0);
    const del2 = await ctx.api.call("DELETE", "/file", {
      json: { uris: [myUri("locked/dst/g.bin")] },
    });
    expect(code(del2), del2.text).toBe(0);
  });

  it("§5.11 the placeholder of a new-file session is locked too", async () => {
    const s = await session(ctx.api, "locked2/new.bin", 100);
    const ren = await ctx.api.call("POST", "/file/rename", {
      json: { uri: myUri("locked2/new.bin"), new_name: "other.bin" },
    });
    expect(code(ren), ren.text).toBe(40073);
    expect(code(await cancel(ctx.api, s.session_id, "locked2/new.bin"))).toBe(0);
  });
});

// ---------------------------------------------------------------------------

describe("§6 upload session expiry (upload_session_timeout 600 s)", () => {
  const ctx = useEmulator({ chunkSize: CHUNK, uploadSessionTtl: 600 });

  it("§6.1 expires reflects upload_session_timeout", async () => {
    const s = await session(ctx.api, "ttl/a.bin", 10);
    const ph = ok(await info(ctx.api, "ttl/a.bin"));
    expect(Math.abs(s.expires - (ms(ph.created_at) / 1000 + 600))).toBeLessThanOrEqual(60);
    expect(code(await cancel(ctx.api, s.session_id, "ttl/a.bin"))).toBe(0);
  });

  it("§6.2 a chunk for an expired session → 40011", async () => {
    const s = await session(ctx.api, "exp/a.bin", 2000);
    expect(code(await chunk(ctx.api, s.session_id, 0, bytes(CHUNK)))).toBe(0);
    await advance(ctx.api, 700);
    const r = await chunk(ctx.api, s.session_id, 1, bytes(2000 - CHUNK));
    expect(code(r), r.text).toBe(40011);
    expect(ok(await info(ctx.api, "exp/a.bin")).size).toBe(0);
  });

  it("§6.4 cancel works after the session expired", async () => {
    const before = await used(ctx.api);
    const s = await session(ctx.api, "exp2/a.bin", 500);
    await advance(ctx.api, 700);
    const r = await cancel(ctx.api, s.session_id, "exp2/a.bin");
    expect(code(r), r.text).toBe(0);
    expect((await info(ctx.api, "exp2/a.bin")).json.code).toBe(40016);
    expect(await used(ctx.api)).toBe(before);
  });

  it("§5.11 the lock of an expired session no longer blocks the path", async () => {
    await put(ctx.api, "exp3/f.bin", "old");
    await session(ctx.api, "exp3/f.bin", 10, { entity_type: "version" });
    const blocked = await ctx.api.call("POST", "/file/rename", {
      json: { uri: myUri("exp3/f.bin"), new_name: "g.bin" },
    });
    expect(code(blocked), blocked.text).toBe(40073);
    await advance(ctx.api, 700);
    const r = await ctx.api.call("POST", "/file/rename", {
      json: { uri: myUri("exp3/f.bin"), new_name: "g.bin" },
    });
    expect(code(r), r.text).toBe(0);
  });
});

// ---------------------------------------------------------------------------

describe("§6.1 upload limits: quota and policy max_size", () => {
  // Retention off: the replaced version is released on completion.
  const ctx = useEmulator({
    chunkSize: CHUNK,
    capacity: 10_000,
    policyMaxSize: 4000,
    versionRetention: 1,
  });

  it("§6.1 size above the policy max_size → 40049", async () => {
    const r = await startSession(ctx.api, "big/a.bin", 4001);
    expect(code(r), r.text).toBe(40049);
    expect((await info(ctx.api, "big/a.bin")).json.code).toBe(40016);
    const s = await session(ctx.api, "big/b.bin", 4000);
    expect(code(await cancel(ctx.api, s.session_id, "big/b.bin"))).toBe(0);
  });

  it("§6.1 §7.1 reservations count against the quota: over quota → 40051", async () => {
    expect(await used(ctx.api)).toBe(0);
    const a = await session(ctx.api, "quota/a.bin", 3500);
    const b = await session(ctx.api, "quota/b.bin", 3500);
    expect(await used(ctx.api)).toBe(7000);
    const r = await startSession(ctx.api, "quota/c.bin", 3500);
    expect(code(r), r.text).toBe(40051);
    expect((await info(ctx.api, "quota/c.bin")).json.code).toBe(40016);
    expect(await used(ctx.api)).toBe(7000);
    expect(code(await cancel(ctx.api, a.session_id, "quota/a.bin"))).toBe(0);
    const c = await session(ctx.api, "quota/c.bin", 3500);
    expect(await used(ctx.api)).toBe(7000);
    expect(code(await cancel(ctx.api, b.session_id, "quota/b.bin"))).toBe(0);
    expect(code(await cancel(ctx.api, c.session_id, "quota/c.bin"))).toBe(0);
    expect(await used(ctx.api)).toBe(0);
  });

  it("§6.1 §7.1 a version upload needs free space for the new version first", async () => {
    await put(ctx.api, "vq/f.bin", bytes(3500));
    await put(ctx.api, "vq/g.bin", bytes(3500));
    expect(await used(ctx.api)).toBe(7000);
    // 7000 + 3500 > 10000 even though the old 3500 would be released afterwards.
    const r = await startSession(ctx.api, "vq/f.bin", 3500, { entity_type: "version" });
    expect(code(r), r.text).toBe(40051);
    const s = await session(ctx.api, "vq/f.bin", 2900, { entity_type: "version" });
    expect(await used(ctx.api)).toBe(9900);
    await sendAll(ctx.api, s, bytes(2900, 9));
    // The old version (3500) is released on completion.
    expect(await used(ctx.api)).toBe(6400);
  });
});

describe("§7.1 zero capacity", () => {
  const ctx = useEmulator({ chunkSize: CHUNK, capacity: 0 });

  it("§7.1 max_storage 0 makes every non-empty upload fail with 40051", async () => {
    const r = await startSession(ctx.api, "z/a.bin", 1);
    expect(code(r), r.text).toBe(40051);
    const s = await session(ctx.api, "z/empty.bin", 0);
    const c = await chunk(ctx.api, s.session_id, 0, new Uint8Array(0));
    expect(code(c), c.text).toBe(0);
    expect(ok(await info(ctx.api, "z/empty.bin")).size).toBe(0);
  });
});
