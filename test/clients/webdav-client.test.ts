import { randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import {
  createClient,
  type FileStat,
  type ReadableLike,
  type Response as DavResponse,
  type WebDAVClient,
} from "webdav";
import { seed } from "../helpers/control.js";
import { Api, myUri } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { until } from "../helpers/wait.js";
import { listUpstream } from "./tools.js";

/**
 * The `webdav` npm client (v5, as used by many Node apps and Electron file managers) against the
 * gateway: listing, stat, upload and download (binary and text), ranged streams, move, copy,
 * delete and exists. Upstream state is checked through the emulator's Cloudreve API.
 */

const CONTENT_ROUTE = "GET /api/v4/file/content/:id/:speed/:name";
const SEED_SIZE = 300_000;
const BASE = "wd";
/** Bounds the wait for the client's response callback. */
const CALLBACK_WAIT_MS = 5_000;

/** Byte i of a seeded file is i % 251. */
function seeded(start: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (start + i) % 251;
  return b;
}

/** The client hands back a Node PassThrough typed as a minimal `ReadableLike`. */
async function readAll(stream: ReadableLike): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<Buffer | string>) {
    parts.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  }
  return Buffer.concat(parts);
}

describe("webdav npm client (v5) against the gateway", () => {
  const fx = useGateway();
  let client: WebDAVClient;
  let api: Api;

  beforeAll(async () => {
    await seed(fx.emu.url, { uri: myUri(`${BASE}/seeded`), files: 3, folders: 2, size: SEED_SIZE });
    client = createClient(fx.url);
    api = new Api(fx.emu.url);
    await api.login();
  });

  const upstreamNames = async (path: string) =>
    (await listUpstream(api, path)).map((i) => `${i.name}${i.type === 1 ? "/" : ""}`).sort();

  it("getDirectoryContents lists files and folders with sizes, types and etags", async () => {
    const items = (await client.getDirectoryContents(`/${BASE}/seeded`)) as FileStat[];
    const byName = new Map(items.map((i) => [i.basename, i]));
    expect([...byName.keys()].sort()).toEqual([
      "file-00000.bin",
      "file-00001.bin",
      "file-00002.bin",
      "folder-00000",
      "folder-00001",
    ]);
    for (const n of [0, 1, 2]) {
      const f = byName.get(`file-0000${n}.bin`)!;
      expect(f.type).toBe("file");
      expect(f.size).toBe(SEED_SIZE);
      expect(f.filename).toBe(`/${BASE}/seeded/file-0000${n}.bin`);
      expect(f.etag).toBeTruthy();
      expect(Number.isNaN(Date.parse(f.lastmod))).toBe(false);
    }
    for (const n of [0, 1]) {
      const d = byName.get(`folder-0000${n}`)!;
      expect(d.type).toBe("directory");
      expect(d.filename).toBe(`/${BASE}/seeded/folder-0000${n}`);
    }
    // The folder itself is not part of its own contents.
    expect(items.some((i) => i.filename === `/${BASE}/seeded`)).toBe(false);
  });

  it("stat describes a file and a folder", async () => {
    const f = (await client.stat(`/${BASE}/seeded/file-00001.bin`)) as FileStat;
    expect(f.type).toBe("file");
    expect(f.size).toBe(SEED_SIZE);
    expect(f.basename).toBe("file-00001.bin");
    expect(f.etag).toBeTruthy();
    const d = (await client.stat(`/${BASE}/seeded`)) as FileStat;
    expect(d.type).toBe("directory");
    expect(d.basename).toBe("seeded");
    await expect(client.stat(`/${BASE}/seeded/nothing-here`)).rejects.toMatchObject({
      status: 404,
    });
  });

  it("putFileContents then getFileContents round-trips binary and text", async () => {
    const binary = randomBytes(1024 * 1024 + 17);
    const text = "Grüße aus dem WebDAV-Test\nligne 2 — ✓\n";
    // PUT needs an existing parent (409 otherwise); createDirectory is a MKCOL.
    await expect(client.putFileContents(`/${BASE}/up/data.bin`, binary)).rejects.toMatchObject({
      status: 409,
    });
    await client.createDirectory(`/${BASE}/up`);
    expect(await client.putFileContents(`/${BASE}/up/data.bin`, binary)).toBe(true);
    expect(await client.putFileContents(`/${BASE}/up/hello world.txt`, text)).toBe(true);

    const gotBinary = (await client.getFileContents(`/${BASE}/up/data.bin`, {
      format: "binary",
    })) as Buffer;
    expect(Buffer.from(gotBinary).equals(binary)).toBe(true);
    const gotText = await client.getFileContents(`/${BASE}/up/hello world.txt`, {
      format: "text",
    });
    expect(gotText).toBe(text);

    // Upstream holds exactly what was written.
    const up = new Map((await listUpstream(api, `${BASE}/up`)).map((i) => [i.name, i]));
    expect([...up.keys()].sort()).toEqual(["data.bin", "hello world.txt"]);
    expect(up.get("data.bin")!.size).toBe(binary.length);
    expect(up.get("hello world.txt")!.size).toBe(Buffer.byteLength(text));

    // Overwriting replaces the content; overwrite: false refuses an existing file.
    const replaced = randomBytes(4096);
    expect(await client.putFileContents(`/${BASE}/up/data.bin`, replaced)).toBe(true);
    const again = (await client.getFileContents(`/${BASE}/up/data.bin`)) as Buffer;
    expect(Buffer.from(again).equals(replaced)).toBe(true);
    expect(await client.putFileContents(`/${BASE}/up/data.bin`, "nope", { overwrite: false })).toBe(
      false,
    );
    const unchanged = (await client.getFileContents(`/${BASE}/up/data.bin`)) as Buffer;
    expect(Buffer.from(unchanged).equals(replaced)).toBe(true);
  });

  it("createReadStream with a range returns exactly those bytes with a 206", async () => {
    const path = `/${BASE}/seeded/file-00002.bin`;
    const cases: { start: number; end?: number }[] = [
      { start: 0, end: 0 },
      { start: 0, end: 999 },
      { start: 123_457, end: 200_000 },
      { start: SEED_SIZE - 1, end: SEED_SIZE - 1 },
      { start: SEED_SIZE - 5000 },
    ];
    for (const range of cases) {
      await fx.resetStats();
      let response: DavResponse | undefined;
      const stream = client.createReadStream(path, {
        range,
        callback: (r) => (response = r),
      });
      const got = await readAll(stream);
      const end = range.end ?? SEED_SIZE - 1;
      const label = JSON.stringify(range);
      expect(got.length, label).toBe(end - range.start + 1);
      expect(got.equals(seeded(range.start, end - range.start + 1)), label).toBe(true);
      // The callback fires on a timer after the stream is handed over.
      await until("the response callback", () => response !== undefined, CALLBACK_WAIT_MS);
      expect(response?.status, label).toBe(206);
      expect(response?.headers.get("content-range"), label).toBe(
        `bytes ${range.start}-${end}/${SEED_SIZE}`,
      );
      const stats = await fx.stats();
      expect(stats.requests[CONTENT_ROUTE], label).toBe(1);
      expect(stats.bytesOut, label).toBeLessThanOrEqual(end - range.start + 1 + 64 * 1024);
    }
  });

  it("copyFile, moveFile, deleteFile and exists", async () => {
    const src = `/${BASE}/seeded/file-00000.bin`;
    await client.createDirectory(`/${BASE}/ops`);
    expect(await client.exists(`/${BASE}/ops`)).toBe(true);
    expect(await client.exists(`/${BASE}/ops/copy.bin`)).toBe(false);

    await client.copyFile(src, `/${BASE}/ops/copy.bin`);
    expect(await client.exists(src)).toBe(true);
    expect(await client.exists(`/${BASE}/ops/copy.bin`)).toBe(true);
    const copy = (await client.getFileContents(`/${BASE}/ops/copy.bin`)) as Buffer;
    expect(Buffer.from(copy).equals(seeded(0, SEED_SIZE))).toBe(true);

    // Move with a rename into another folder.
    await client.moveFile(`/${BASE}/ops/copy.bin`, `/${BASE}/up/moved.bin`);
    expect(await client.exists(`/${BASE}/ops/copy.bin`)).toBe(false);
    expect(await client.exists(`/${BASE}/up/moved.bin`)).toBe(true);
    const moved = (await client.getFileContents(`/${BASE}/up/moved.bin`)) as Buffer;
    expect(Buffer.from(moved).equals(seeded(0, SEED_SIZE))).toBe(true);

    // Copy a folder (depth infinity), then move it, replacing an existing target.
    await client.copyFile(`/${BASE}/seeded`, `/${BASE}/ops/tree`);
    expect(await upstreamNames(`${BASE}/ops/tree`)).toEqual(await upstreamNames(`${BASE}/seeded`));
    await client.putFileContents(`/${BASE}/ops/target.txt`, "to be replaced");
    await client.moveFile(`/${BASE}/up/hello world.txt`, `/${BASE}/ops/target.txt`);
    expect(await client.getFileContents(`/${BASE}/ops/target.txt`, { format: "text" })).toContain(
      "Grüße",
    );
    // overwrite: false refuses an existing destination and leaves both in place.
    await expect(
      client.moveFile(`/${BASE}/up/moved.bin`, `/${BASE}/ops/target.txt`, { overwrite: false }),
    ).rejects.toMatchObject({ status: 412 });
    expect(await client.exists(`/${BASE}/up/moved.bin`)).toBe(true);

    await client.deleteFile(`/${BASE}/up/moved.bin`);
    await client.deleteFile(`/${BASE}/ops/tree`);
    expect(await client.exists(`/${BASE}/up/moved.bin`)).toBe(false);
    expect(await client.exists(`/${BASE}/ops/tree`)).toBe(false);
    await expect(client.deleteFile(`/${BASE}/up/moved.bin`)).rejects.toMatchObject({
      status: 404,
    });

    // Upstream agrees.
    expect(await upstreamNames(`${BASE}/ops`)).toEqual(["target.txt"]);
    expect(await upstreamNames(`${BASE}/up`)).toEqual(["data.bin"]);
    expect(await upstreamNames(`${BASE}/seeded`)).toEqual([
      "file-00000.bin",
      "file-00001.bin",
      "file-00002.bin",
      "folder-00000/",
      "folder-00001/",
    ]);
  });
});
