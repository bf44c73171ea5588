/**
 * The s3 policy against an independent S3 implementation: Ceph's Object Gateway (radosgw, from
 * Debian) holds the objects, and the emulator reaches it as Cloudreve's s3 driver does, with
 * the AWS SDK and its SigV4 presigner (`EmulatorOptions.s3Backend`). radosgw checks the
 * signatures (the part URLs sign their Content-Length), the expiry, the 5 MiB minimum of every
 * part but the last and the part ETags, and gives a multipart object the ETag of its parts.
 * Writes go through the gateway in upload sessions (`directUploadMaxBytes: 0`), except an empty
 * file and the server's own writes (`PUT /file/content`, relay), which are PutObjects; each is
 * read back byte for byte through the gateway, Cloudreve's download URL and from the server.
 */
import { Readable } from "node:stream";
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  S3ServiceException,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { EmulatorOptions } from "../../src/emulator/options.js";
import { AwsS3Backend, s3Client } from "../helpers/aws-s3-backend.js";
import { startRadosGateway, type RadosGateway } from "../helpers/ceph-rgw.js";
import { R, resetStats, stats } from "../helpers/control.js";
import { Api, expectStored, myUri, upstreamInfo } from "../helpers/emulator.js";
import { content, dav, expectNothingLeft, leftovers } from "../helpers/faults.js";
import { useGateway, type GatewayFixture } from "../helpers/gateway.js";
import { settled, until } from "../helpers/wait.js";

const MiB = 1024 * 1024;
/** S3's minimum part size, which radosgw enforces on every part but the last. */
const CHUNK = 5 * MiB;
const BUCKET = "cloudreve";

let rgw: RadosGateway;
let client: S3Client;
/** Seconds the next presigned URL is dated back by: the server finds it expired on arrival. */
let backdate = 0;
const backend = () =>
  new AwsS3Backend(client, BUCKET, () => {
    const date = new Date(Date.now() - backdate * 1000);
    backdate = 0;
    return date;
  });

// Before the emulators of the describe blocks start (their options read the backend then).
const sessions: EmulatorOptions = { policy: "s3", chunkSize: CHUNK, chunkConcurrency: 3 };
const relayed: EmulatorOptions = { policy: "s3", relay: true };
beforeAll(async () => {
  rgw = await startRadosGateway();
  client = s3Client(rgw);
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  sessions.s3Backend = backend();
  relayed.s3Backend = backend();
}, 60_000);
afterAll(async () => {
  client?.destroy();
  await rgw?.stop();
});

/** The object key a presigned URL of the bucket names. */
const keyOf = (url: string) =>
  decodeURIComponent(new URL(url).pathname.slice(`/${BUCKET}/`.length));

async function serverBytes(key: string): Promise<Buffer> {
  const out = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

async function serverETag(key: string): Promise<string | undefined> {
  return (await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).ETag;
}

async function serverHas(key: string): Promise<boolean> {
  try {
    await serverETag(key);
    return true;
  } catch (err) {
    if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404) return false;
    throw err;
  }
}

async function openUploads(): Promise<string[]> {
  const out = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
  return (out.Uploads ?? []).map((u) => u.Key!);
}

/** Cloudreve's download URL of the file: radosgw's, presigned. */
async function downloadUrl(api: Api, path: string): Promise<string> {
  const r = await api.call<{ urls: { url: string }[] }>("POST", "/file/url", {
    json: { uris: [myUri(path)] },
  });
  expect(r.json?.code, r.text).toBe(0);
  const url = r.json.data!.urls[0]!.url;
  expect(url.startsWith(`${rgw.endpoint}/${BUCKET}/`), url).toBe(true);
  return url;
}

/** Stored as `body` upstream, on the server, and through the gateway; answers its key. */
async function expectEverywhere(
  fx: GatewayFixture,
  api: Api,
  path: string,
  body: Buffer,
): Promise<string> {
  await expectStored(api, path, body);
  const key = keyOf(await downloadUrl(api, path));
  expect((await serverBytes(key)).equals(body), `${path} on the server`).toBe(true);
  const got = await dav(`${fx.url}/${path}`, "GET");
  expect(got.status).toBe(200);
  expect(got.body.equals(body), `${path} through the gateway`).toBe(true);
  return key;
}

describe("s3 policy on radosgw through the gateway, in sessions", () => {
  const fx = useGateway(sessions, {
    cacheTtlSeconds: 0,
    directUploadMaxBytes: 0,
    permanentDelete: true,
  });
  let api: Api;
  let seq = 0;
  const fresh = (label: string) => `rgw-${label}-${++seq}.bin`;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });
  beforeEach(() => resetStats(fx.emu.url));

  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3.5 * CHUNK]) {
    it(`PUT of ${size} bytes, read back from everywhere`, async () => {
      const path = fresh(`size-${size}`);
      const body = content(size, size % 251);
      expect((await dav(`${fx.url}/${path}`, "PUT", { body })).status).toBe(201);
      const key = await expectEverywhere(fx, api, path, body);
      // A multipart object's ETag is the MD5 of its parts' MD5s and their count. An empty file
      // is written directly (PUT /file/content) whatever the threshold: a PutObject.
      const parts = Math.ceil(size / CHUNK);
      expect(await serverETag(key)).toMatch(
        new RegExp(`^"[0-9a-f]{32}${size === 0 ? "" : `-${parts}`}"$`),
      );
      expect(await openUploads()).toEqual([]);
      const s = await stats(fx.emu.url);
      expect(s.requests[size === 0 ? R.putContent : R.createSession]).toBe(1);
      // Nothing reached the emulator's own storage origin.
      expect(s.storage?.requests).toEqual({});
      await expectNothingLeft(fx.emu.url);
    });
  }

  it("an overwrite is a new object; DELETE removes every object of the file", async () => {
    const path = fresh("overwrite");
    const first = content(CHUNK + 1, 5);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: first })).status).toBe(201);
    const firstKey = await expectEverywhere(fx, api, path, first);
    const second = content(2 * CHUNK + 7, 6);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: second })).status).toBe(204);
    const secondKey = await expectEverywhere(fx, api, path, second);
    expect(secondKey).not.toBe(firstKey);
    await expectNothingLeft(fx.emu.url);

    expect((await dav(`${fx.url}/${path}`, "DELETE")).status).toBe(204);
    expect(await upstreamInfo(api, path)).toBeUndefined();
    // Cloudreve deletes the objects once the last reference goes, after answering.
    await until(
      "the file's objects to go from the server",
      async () => !(await serverHas(firstKey)) && !(await serverHas(secondKey)),
      10_000,
    );
  });

  it("ranged GETs, and a GET whose presigned URL the server finds expired", async () => {
    const path = fresh("read");
    const body = content(CHUNK + 1000, 7);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body })).status).toBe(201);
    await resetStats(fx.emu.url);
    // radosgw checks expiry by its own clock, not the emulator's: the first URL Cloudreve
    // hands out is dated two hours back, valid for one hour, so it arrives expired (403).
    backdate = 7200;
    const late = await dav(`${fx.url}/${path}`, "GET", { headers: { range: "bytes=5-" } });
    expect(late.status).toBe(206);
    expect(late.body.equals(body.subarray(5))).toBe(true);
    // The refused URL was signed afresh.
    expect((await stats(fx.emu.url)).requests[R.url]).toBe(2);

    const across = await dav(`${fx.url}/${path}`, "GET", {
      headers: { range: `bytes=${CHUNK - 10}-${CHUNK + 9}` },
    });
    expect(across.status).toBe(206);
    expect(across.headers["content-range"]).toBe(`bytes ${CHUNK - 10}-${CHUNK + 9}/${body.length}`);
    expect(across.body.equals(body.subarray(CHUNK - 10, CHUNK + 10))).toBe(true);
    const whole = await dav(`${fx.url}/${path}`, "GET");
    expect(whole.status).toBe(200);
    expect(whole.body.equals(body)).toBe(true);
    // The fresh URL is reused while it is valid.
    expect((await stats(fx.emu.url)).requests[R.url]).toBe(2);
  });

  it("a client that goes away mid-body: the multipart upload is aborted, the old content kept", async () => {
    const path = fresh("abort");
    const old = content(CHUNK + 3, 9);
    expect((await dav(`${fx.url}/${path}`, "PUT", { body: old })).status).toBe(201);
    await resetStats(fx.emu.url);
    const next = content(3 * CHUNK, 10);
    const cut = Readable.from(
      (async function* () {
        yield next.subarray(0, CHUNK + 100);
        throw new Error("the client went away");
      })(),
    );
    const r = await dav(`${fx.url}/${path}`, "PUT", {
      body: cut,
      headers: { "content-length": String(next.length) },
    });
    expect(r.status === 0 || r.status >= 400).toBe(true);
    await settled(
      "upstream to settle after the cut upload",
      async () => JSON.stringify([await leftovers(fx.emu.url), (await stats(fx.emu.url)).requests]),
      10_000,
    );
    expect((await stats(fx.emu.url)).requests[R.cancel]).toBe(1);
    expect(await openUploads()).toEqual([]);
    await expectEverywhere(fx, api, path, old);
    await expectNothingLeft(fx.emu.url);
  });

  it("the server holds Cloudreve's presigned URLs to what they sign, and cancel aborts", async () => {
    const path = fresh("signed");
    const r = await api.call<{ session_id: string; upload_urls: string[]; completeURL: string }>(
      "PUT",
      "/file/upload",
      { json: { uri: myUri(path), size: CHUNK + 1 } },
    );
    expect(r.json?.code, r.text).toBe(0);
    const { session_id: id, upload_urls: urls, completeURL } = r.json.data!;
    expect(urls).toHaveLength(2);
    // The last part is signed with its length, one byte; the query is signed.
    const longer = await fetch(urls[1]!, { method: "PUT", body: Buffer.alloc(2) });
    expect(longer.status).toBe(403);
    expect(await longer.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
    const tampered = new URL(urls[1]!);
    tampered.searchParams.set("partNumber", "1");
    expect((await fetch(tampered, { method: "PUT", body: Buffer.alloc(1) })).status).toBe(403);
    const etags: string[] = [];
    for (const [i, body] of [Buffer.alloc(CHUNK, 1), Buffer.alloc(1, 2)].entries()) {
      const part = await fetch(urls[i]!, { method: "PUT", body });
      expect(part.status).toBe(200);
      etags.push(part.headers.get("etag")!);
    }
    // A completion naming a part by another ETag is refused.
    const wrong = await fetch(completeURL, {
      method: "POST",
      body:
        `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${etags[1]}</ETag></Part>` +
        `<Part><PartNumber>2</PartNumber><ETag>${etags[1]}</ETag></Part></CompleteMultipartUpload>`,
    });
    expect(wrong.status).toBe(400);
    expect(await wrong.text()).toContain("<Code>InvalidPart</Code>");
    expect(await openUploads()).toEqual([keyOf(urls[0]!)]);
    const cancel = await api.call("DELETE", "/file/upload", { json: { id, uri: myUri(path) } });
    expect(cancel.json?.code, cancel.text).toBe(0);
    expect(await openUploads()).toEqual([]);
    expect(await upstreamInfo(api, path)).toBeUndefined();
    await expectNothingLeft(fx.emu.url);
  });
});

describe("s3 policy on radosgw through the gateway: the server's own writes", () => {
  const fx = useGateway(relayed, { cacheTtlSeconds: 0 });
  let api: Api;
  beforeAll(async () => {
    api = new Api(fx.emu.url);
    await api.login();
  });
  beforeEach(() => resetStats(fx.emu.url));

  const writes = [
    { label: "a direct write (PUT /file/content)", size: 3 * MiB + 5, route: R.putContent },
    { label: "a relayed upload", size: 6 * MiB + 3, route: R.chunk },
  ];
  for (const [i, { label, size, route }] of writes.entries()) {
    it(`${label} is a PutObject of the server`, async () => {
      const path = `rgw-own-${i}.bin`;
      const body = content(size, 11 + i);
      expect((await dav(`${fx.url}/${path}`, "PUT", { body })).status).toBe(201);
      expect((await stats(fx.emu.url)).requests[route]).toBe(1);
      const key = await expectEverywhere(fx, api, path, body);
      // One PutObject: the object's ETag is its plain MD5.
      expect(await serverETag(key)).toMatch(/^"[0-9a-f]{32}"$/);
      await expectNothingLeft(fx.emu.url);
    });
  }
});
