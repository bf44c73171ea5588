/**
 * OSS and OBS: multipart stores that call Cloudreve back themselves once a completion has
 * stored the object. First their emulated protocol over HTTP (presigned URLs and the headers
 * they are signed with, ETags, the completion, the storage's callback and its 203 when
 * Cloudreve refuses it), then what the gateway does about it: retries, a refused callback that
 * fails the PUT and leaves nothing, a completion whose answer was lost. The generic size and
 * overwrite matrix is matrix.test.ts's.
 *
 * Whether the storage still holds an object or parts is not visible over HTTP (an object is
 * read only through a presigned URL of a stored entity), so the suites look at the emulator's
 * data directory for that.
 */
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { R, resetStats, setFaults, type StorageSiteStats } from "../helpers/control.js";
import {
  advance,
  Api,
  bytes,
  code,
  expectStored,
  info,
  myUri,
  ok,
  upstreamBytes,
  upstreamInfo,
  useEmulator,
} from "../helpers/emulator.js";
import { content, dav, expectNothingLeft } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";

/** Above the 100 KB both stores require of every part but the last. */
const CHUNK = 128 * 1024;
const OCTET = "application/octet-stream";
const OSS_COMPLETE = {
  "content-type": OCTET,
  "x-oss-forbid-overwrite": "true",
  "x-oss-complete-all": "yes",
};

interface Session {
  session_id: string;
  upload_id: string;
  chunk_size: number;
  upload_urls: string[];
  completeURL: string;
  callback_secret: string;
  storage_policy: { type: string; relay: boolean };
}

interface Store {
  type: "oss" | "obs";
  callbackParam: string;
  /** The completion as the web UI sends it. */
  complete(s: Session, etags: string[]): Promise<Response>;
  /** Checks the body of a 203: the store's CallbackFailed error. */
  expectCallbackFailed(text: string): void;
}

const completeXml = (etags: string[]) =>
  "<CompleteMultipartUpload>" +
  etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join("") +
  "</CompleteMultipartUpload>";

const STORES: Store[] = [
  {
    type: "oss",
    callbackParam: "callback",
    complete: (s) => fetch(s.completeURL, { method: "POST", body: "", headers: OSS_COMPLETE }),
    expectCallbackFailed: (text) => expect(text).toContain("<Code>CallbackFailed</Code>"),
  },
  {
    type: "obs",
    callbackParam: "x-obs-callback",
    complete: (s, etags) =>
      fetch(s.completeURL, {
        method: "POST",
        body: completeXml(etags),
        headers: { "content-type": OCTET },
      }),
    expectCallbackFailed: (text) =>
      expect(JSON.parse(text)).toMatchObject({ code: "CallbackFailed" }),
  },
];

const callbackRoute = (type: string) => `POST /api/v4/callback/${type}/:sessionId/:key`;

type Stats = StorageSiteStats;

async function emulatorStats(base: string): Promise<Stats> {
  return (await (await fetch(`${base}/__emulator/stats`)).json()) as Stats;
}

/** A data directory of our own, to see what the storage holds. */
function useDataDir(): { dir: string; objects(): Promise<string[]>; parts(): Promise<string[]> } {
  const dir = mkdtempSync(join(tmpdir(), "cloudreve-oss-test-"));
  afterAll(() => rm(dir, { recursive: true, force: true }));
  return {
    dir,
    objects: () => readdir(join(dir, "storage", "objects")),
    parts: () => readdir(join(dir, "storage", "parts")),
  };
}

function putPart(url: string, body: Uint8Array, headers: Record<string, string> = {}) {
  return fetch(url, { method: "PUT", body, headers: { "content-type": OCTET, ...headers } });
}

/** Sends every part, answering their ETags in order. */
async function putParts(s: Session, body: Uint8Array): Promise<string[]> {
  const etags: string[] = [];
  for (const [i, url] of s.upload_urls.entries()) {
    const res = await putPart(url, body.subarray(i * s.chunk_size, (i + 1) * s.chunk_size));
    expect(res.status, await res.clone().text()).toBe(200);
    etags.push(res.headers.get("etag")!);
  }
  return etags;
}

const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

describe.each(STORES)("$type storage, as emulated", (store) => {
  const data = useDataDir();
  const ctx = useEmulator({ policy: store.type, chunkSize: CHUNK, dataDir: data.dir });
  beforeEach(async () => {
    await setFaults(ctx.emu.url, []);
    await resetStats(ctx.emu.url);
  });

  async function session(path: string, size: number): Promise<Session> {
    return ok(
      await ctx.api.call<Session>("PUT", "/file/upload", { json: { uri: myUri(path), size } }),
    );
  }

  const cancel = (s: Session, path: string) =>
    ctx.api.call("DELETE", "/file/upload", { json: { id: s.session_id, uri: myUri(path) } });

  it("presigns the parts and a completion that carries the callback to Cloudreve", async () => {
    const s = await session(`${store.type}/session.bin`, 2 * CHUNK + 1);
    expect(s.storage_policy).toMatchObject({ type: store.type, relay: false });
    expect(s.upload_id).not.toBe("");
    expect(s.upload_urls).toHaveLength(3);
    for (const url of [...s.upload_urls, s.completeURL])
      expect(url.startsWith(`${ctx.emu.storageUrl}/`)).toBe(true);
    const complete = new URL(s.completeURL);
    expect(complete.searchParams.get("uploadId")).toBe(s.upload_id);
    const policy = JSON.parse(
      Buffer.from(complete.searchParams.get(store.callbackParam)!, "base64").toString(),
    ) as Record<string, string>;
    expect(policy).toMatchObject({
      callbackUrl: `${ctx.emu.url}/api/v4/callback/${store.type}/${s.session_id}/${s.callback_secret}`,
      callbackBodyType: "application/json",
    });
    expect(policy.callbackBody).toContain("${size}");
    // The callback is the storage's: a tampered one breaks the URL's signature.
    complete.searchParams.set(store.callbackParam, Buffer.from("{}").toString("base64"));
    const tampered = await store.complete({ ...s, completeURL: complete.toString() }, []);
    expect(tampered.status).toBe(403);
    expect(await tampered.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
  });

  for (const size of [0, 1, CHUNK, CHUNK + 1, 2.5 * CHUNK]) {
    it(`stores ${size} B from its parts, then calls Cloudreve back itself`, async () => {
      const path = `${store.type}/size-${size}.bin`;
      const body = bytes(size, size % 5);
      const s = await session(path, size);
      const etags = await putParts(s, body);
      etags.forEach((etag, i) =>
        expect(etag).toBe(`"${md5(body.subarray(i * CHUNK, (i + 1) * CHUNK))}"`),
      );
      const done = await store.complete(s, etags);
      // Cloudreve's answer to the storage's callback, relayed.
      expect(done.status).toBe(200);
      expect(done.headers.get("content-type")).toBe("application/json");
      expect(done.headers.get("etag")).toMatch(new RegExp(`^"[0-9a-f]{32}-${etags.length}"$`));
      expect((await done.json()) as unknown).toMatchObject({ code: 0 });
      const file = ok(await info(ctx.api, path));
      expect(file.size).toBe(size);
      expect(file.metadata?.["sys:upload_session_id"]).toBeUndefined();
      if (size > 0) expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, path))).toBe(true);
      const s1 = await emulatorStats(ctx.emu.url);
      expect(s1.requests[callbackRoute(store.type)]).toBe(1);
      expect(s1.storage.requests).toMatchObject({
        "PUT part": etags.length,
        "POST complete": 1,
      });
      // The upload id went with the completion: a second one (a retry) finds none.
      const again = await store.complete(s, etags);
      expect(again.status).toBe(404);
      expect(await again.text()).toContain("<Code>NoSuchUpload</Code>");
      expect((await emulatorStats(ctx.emu.url)).requests[callbackRoute(store.type)]).toBe(1);
      expect(await data.parts()).toEqual([]);
    });
  }

  it("refuses a request without the headers its URL is signed with", async () => {
    const body = bytes(CHUNK + 1);
    const s = await session(`${store.type}/unsigned.bin`, body.length);
    const bare = await fetch(s.upload_urls[0]!, { method: "PUT", body: body.subarray(0, CHUNK) });
    expect(bare.status).toBe(403);
    expect(await bare.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
    const etags = await putParts(s, body);
    const xml = await fetch(s.completeURL, {
      method: "POST",
      body: completeXml(etags),
      headers: { "content-type": "application/xml" },
    });
    expect(xml.status).toBe(403);
    expect(await xml.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
    expect((await store.complete(s, etags)).status).toBe(200);
  });

  it("refuses an expired URL with 403 AccessDenied", async () => {
    const s = await session(`${store.type}/expired.bin`, 10);
    await advance(ctx.api, 86_400 + 10);
    const part = await putPart(s.upload_urls[0]!, bytes(10));
    expect(part.status).toBe(403);
    expect(await part.text()).toContain("<Message>Request has expired</Message>");
    const done = await store.complete(s, ['"x"']);
    expect(done.status).toBe(403);
    expect(await done.text()).toContain("<Code>AccessDenied</Code>");
    expect((await emulatorStats(ctx.emu.url)).requests[callbackRoute(store.type)]).toBeUndefined();
  });

  it("refuses parts below 100 KB but the last with EntityTooSmall", async () => {
    const s = await session(`${store.type}/small.bin`, CHUNK + 1);
    const first = await putPart(s.upload_urls[0]!, bytes(1000));
    const last = await putPart(s.upload_urls[1]!, bytes(1));
    const etags = [first.headers.get("etag")!, last.headers.get("etag")!];
    const done = await store.complete(s, etags);
    expect(done.status).toBe(400);
    expect(await done.text()).toContain("<Code>EntityTooSmall</Code>");
    // Nothing happened: the upload is still open for the right parts.
    expect(await store.complete(s, await putParts(s, bytes(CHUNK + 1)))).toHaveProperty(
      "status",
      200,
    );
  });

  it("answers 203 CallbackFailed when Cloudreve refuses the callback; cancel removes the object", async () => {
    const path = `${store.type}/refused.bin`;
    const objectsBefore = (await data.objects()).length;
    const s = await session(path, CHUNK + 5);
    const etags = await putParts(s, bytes(CHUNK + 5, 3));
    await setFaults(ctx.emu.url, [{ route: callbackRoute(store.type), failWith: 500 }]);
    const done = await store.complete(s, etags);
    expect(done.status).toBe(203);
    store.expectCallbackFailed(await done.text());
    expect((await emulatorStats(ctx.emu.url)).requests[callbackRoute(store.type)]).toBe(1);
    // The object is stored and the upload id gone, but Cloudreve has not completed.
    expect(await data.objects()).toHaveLength(objectsBefore + 1);
    expect(ok(await info(ctx.api, path)).metadata?.["sys:upload_session_id"]).toBe(s.session_id);
    expect((await store.complete(s, etags)).status).toBe(404);
    expect(code(await cancel(s, path))).toBe(0);
    expect(code(await info(ctx.api, path))).toBe(40016);
    expect(await data.objects()).toHaveLength(objectsBefore);
    expect(await data.parts()).toEqual([]);
  });

  it("cancel drops the parts; the upload id is gone", async () => {
    const path = `${store.type}/cancelled.bin`;
    const s = await session(path, CHUNK + 1);
    expect((await putPart(s.upload_urls[0]!, bytes(CHUNK))).status).toBe(200);
    expect(await data.parts()).toHaveLength(1);
    expect(code(await cancel(s, path))).toBe(0);
    expect(await data.parts()).toEqual([]);
    const part = await putPart(s.upload_urls[1]!, bytes(1));
    expect(part.status).toBe(404);
    expect(await part.text()).toContain("<Code>NoSuchUpload</Code>");
  });
});

describe("oss completion", () => {
  const ctx = useEmulator({ policy: "oss", chunkSize: CHUNK });

  async function session(path: string, size: number): Promise<Session> {
    return ok(
      await ctx.api.call<Session>("PUT", "/file/upload", { json: { uri: myUri(path), size } }),
    );
  }

  it("joins every uploaded part itself: a part list is refused, and so is an upload of none", async () => {
    const body = bytes(CHUNK + 7, 2);
    const s = await session("oss/complete-all.bin", body.length);
    const none = await fetch(s.completeURL, { method: "POST", body: "", headers: OSS_COMPLETE });
    expect(none.status).toBe(400);
    expect(await none.text()).toContain("<Code>InvalidPart</Code>");
    const etags = await putParts(s, body);
    const listed = await fetch(s.completeURL, {
      method: "POST",
      body: completeXml(etags),
      headers: OSS_COMPLETE,
    });
    expect(listed.status).toBe(400);
    expect(await listed.text()).toContain("<Code>InvalidArgument</Code>");
    const without = await fetch(s.completeURL, {
      method: "POST",
      body: "",
      headers: { ...OSS_COMPLETE, "x-oss-complete-all": "no" },
    });
    expect(without.status).toBe(403);
    const done = await fetch(s.completeURL, { method: "POST", body: "", headers: OSS_COMPLETE });
    expect(done.status).toBe(200);
    expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, "oss/complete-all.bin"))).toBe(
      true,
    );
  });
});

describe("obs completion", () => {
  const ctx = useEmulator({ policy: "obs", chunkSize: CHUNK });

  it("checks the listed parts before storing anything or calling back", async () => {
    const body = bytes(2 * CHUNK, 4);
    const s = ok(
      await ctx.api.call<Session>("PUT", "/file/upload", {
        json: { uri: myUri("obs/listed.bin"), size: body.length },
      }),
    );
    const etags = await putParts(s, body);
    const post = (xml: string) =>
      fetch(s.completeURL, { method: "POST", body: xml, headers: { "content-type": OCTET } });
    const wrong = await post(completeXml([etags[0]!, '"0123"']));
    expect(wrong.status).toBe(400);
    expect(await wrong.text()).toContain("<Code>InvalidPart</Code>");
    const empty = await post("");
    expect(empty.status).toBe(400);
    expect(await empty.text()).toContain("<Code>MalformedXML</Code>");
    const stats = await emulatorStats(ctx.emu.url);
    expect(stats.requests[callbackRoute("obs")]).toBeUndefined();
    expect((await post(completeXml(etags))).status).toBe(200);
    expect(Buffer.from(body).equals(await upstreamBytes(ctx.api, "obs/listed.bin"))).toBe(true);
  });
});

describe.each(STORES)("$type policy through the gateway", (store) => {
  const data = useDataDir();
  const fx = useGateway(
    { policy: store.type, chunkSize: CHUNK, chunkConcurrency: 2, dataDir: data.dir },
    { cacheTtlSeconds: 0, directUploadMaxBytes: 0 },
  );
  const callback = callbackRoute(store.type);
  let api: Api;
  let seq = 0;
  const fresh = (label: string) => `${store.type}-${label}-${++seq}.bin`;
  const stats = () => emulatorStats(fx.emu.url);
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });
  beforeEach(async () => {
    await setFaults(fx.emu.url, []);
    await resetStats(fx.emu.url);
  });

  /** The storage holds the objects of stored versions, and no parts. */
  async function expectStorageClean(objects: number): Promise<void> {
    expect(await data.objects()).toHaveLength(objects);
    expect(await data.parts()).toEqual([]);
  }

  it("retries a part and the completion on 5xx; the storage calls back once", async () => {
    const path = fresh("retry");
    const body = content(3 * CHUNK + 9, 1);
    await setFaults(fx.emu.url, [
      { route: "PUT part", failWith: 503, times: 1 },
      { route: "POST complete", failWith: 502, times: 1 },
    ]);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body })).status).toBe(201);
    const s = await stats();
    expect(s.storage.requests).toMatchObject({ "PUT part": 4 + 1, "POST complete": 1 + 1 });
    expect(s.requests[callback]).toBe(1);
    // No client callback, nothing through Cloudreve.
    expect(s.requests[R.chunk] ?? 0).toBe(0);
    expect(Object.keys(s.requests).filter((k) => k.includes("/callback/"))).toEqual([callback]);
    await expectStored(api, path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a completion whose answer was lost is done: the retry's NoSuchUpload is not a failure", async () => {
    const path = fresh("lost");
    const body = content(2 * CHUNK, 2);
    await setFaults(fx.emu.url, [
      { route: "POST complete", failWith: "reset", afterBytes: 0, times: 1 },
    ]);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body })).status).toBe(201);
    const s = await stats();
    expect(s.storage.requests["POST complete"]).toBe(2);
    expect(s.requests[callback]).toBe(1);
    expect(s.requests[R.cancel] ?? 0).toBe(0);
    await expectStored(api, path, body);
    await expectNothingLeft(fx.emu.url);
  });

  it("a callback Cloudreve refuses fails the PUT: the old content stays, nothing is left", async () => {
    const path = fresh("refused");
    const old = content(CHUNK + 3, 3);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: old })).status).toBe(201);
    const objects = (await data.objects()).length;
    await resetStats(fx.emu.url);
    await setFaults(fx.emu.url, [{ route: callback, failWith: 500 }]);
    const r = await dav(`${fx.url}/${path}`, "PUT", { body: content(2 * CHUNK + 1, 4) });
    await setFaults(fx.emu.url, []);
    expect(r.status).toBe(502);
    const s = await stats();
    // A 203 is not retried: the object is stored and the upload id gone.
    expect(s.storage.requests["POST complete"]).toBe(1);
    expect(s.requests[R.cancel]).toBe(1);
    await expectStored(api, path, old);
    await expectNothingLeft(fx.emu.url);
    await expectStorageClean(objects);

    const brandNew = fresh("refused-new");
    await setFaults(fx.emu.url, [{ route: callback, failWith: 400 }]);
    const failed = await dav(`${fx.url}/${brandNew}`, "PUT", { body: content(CHUNK, 5) });
    await setFaults(fx.emu.url, []);
    expect(failed.status).toBe(502);
    expect(await upstreamInfo(api, brandNew)).toBeUndefined();
    await expectNothingLeft(fx.emu.url);
    await expectStorageClean(objects);
  });

  it("a lost answer whose callback had failed is found out: the PUT fails, nothing is left", async () => {
    const path = fresh("lost-refused");
    const old = content(CHUNK, 6);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: old })).status).toBe(201);
    const objects = (await data.objects()).length;
    await resetStats(fx.emu.url);
    await setFaults(fx.emu.url, [
      { route: "POST complete", failWith: "reset", afterBytes: 0, times: 1 },
      { route: callback, failWith: 500, times: 1 },
    ]);
    // The same size as before: only the version tells the new content from the old.
    const r = await dav(`${fx.url}/${path}`, "PUT", { body: content(CHUNK, 7) });
    expect(r.status).toBe(502);
    const s = await stats();
    expect(s.storage.requests["POST complete"]).toBe(2);
    expect(s.requests[R.cancel]).toBe(1);
    await expectStored(api, path, old);
    await expectNothingLeft(fx.emu.url);
    await expectStorageClean(objects);
  });
});
