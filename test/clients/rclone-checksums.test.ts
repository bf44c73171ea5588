/**
 * rclone 1.60 comparing contents through the gateway (issue 14): with vendor `nextcloud` it
 * reads SHA-1 from `oc:checksums`, so `rclone check` without `--download` compares hashes. A
 * file changed by another client must never pass with the checksum of the bytes it had; MOVE,
 * COPY and an overwrite through the gateway must leave the checksum of what is there.
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checksumsOf, servedChecksums } from "../helpers/checksums.js";
import { Api, put, upstreamInfo } from "../helpers/emulator.js";
import { content } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";
import { enc, raw } from "../helpers/http-raw.js";
import { until } from "../helpers/wait.js";
import { ok, rclone, rcloneEnv, requireTool, type Spec, writeTree } from "./tools.js";

/**
 * Both upload paths: small files in one call (with the time in the same metadata call as the
 * checksums), the 5 MB one by upload session.
 */
function makeTree(): Map<string, Spec> {
  const mtime = Date.parse("2024-01-02T03:04:05Z") / 1000;
  return new Map<string, Spec>([
    ["readme.txt", { data: Buffer.from("read me\n"), mtime }],
    ["empty.bin", { data: Buffer.alloc(0), mtime }],
    ["docs/notes ü.md", { data: Buffer.from("# notes\n"), mtime }],
    ["docs/deeper/small.bin", { data: content(70_001, 1), mtime }],
    ["big.bin", { data: content(5 * 1024 * 1024 + 3, 2), mtime }],
  ]);
}

const sha1 = (data: Buffer) => createHash("sha1").update(data).digest("hex");

describe("rclone check compares SHA-1 through oc:checksums (vendor nextcloud)", () => {
  // Changes made by another client reach the gateway through Cloudreve's change events.
  const fx = useGateway({ eventDebounceMs: 200 });
  const tree = makeTree();
  let api: Api;
  let env: NodeJS.ProcessEnv;
  let work: string;
  const up = () => join(work, "up");
  const rc = (args: string[]) =>
    rclone(env, [...args, "--low-level-retries", "1", "--retries", "1"]);

  /** The version the gateway shows for a path (its ETag), unquoted. */
  async function servedEtag(path: string): Promise<string | undefined> {
    const r = await raw(fx.url, "PROPFIND", enc(path), {
      headers: { depth: "0", "content-type": "application/xml" },
      body: `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>`,
    });
    return /<D:getetag>(?:"|&quot;)([^"&<]+)/.exec(r.text)?.[1];
  }

  beforeAll(async () => {
    requireTool("rclone", "rclone");
    api = new Api(fx.emu.url);
    await api.login();
    env = rcloneEnv(fx.url, "nextcloud");
    work = await mkdtemp(join(tmpdir(), "cloudreve-dav-rclone-checksums-"));
    await writeTree(up(), tree);
  });

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("copies a tree up, and check compares every file's hash: all match", async () => {
    // rclone compares the hash it sent with the one the gateway then serves after each upload.
    ok("rclone copy", await rc(["copy", up(), "X:tree"]));
    const r = await rc(["check", up(), "X:tree"]);
    ok("rclone check", r);
    expect(r.stderr).not.toContain("could not be checked");
    expect(r.stderr).toContain("0 differences found");
    expect(r.stderr).toContain(`${tree.size} matching files`);
    // What rclone read is the SHA-1 of each file's bytes.
    const sums = ok("rclone hashsum", await rc(["hashsum", "SHA1", "X:tree"]));
    const listed = new Map(
      sums
        .trim()
        .split("\n")
        .map((line) => [line.slice(42), line.slice(0, 40)] as const),
    );
    expect(listed).toEqual(new Map([...tree].map(([rel, spec]) => [rel, sha1(spec.data)])));
  });

  it("a file given other bytes of the same length by another client is never taken as matching", async () => {
    const rel = "docs/deeper/small.bin";
    const before = await upstreamInfo(api, `tree/${rel}`);
    const other = content(tree.get(rel)!.data.length, 3);
    const written = await put(api, `tree/${rel}`, other);
    expect(written.primary_entity).not.toBe(before?.primary_entity);
    await until(
      "the gateway to see the new version",
      async () => (await servedEtag(`/tree/${rel}`)) === written.primary_entity,
      10_000,
    );

    // Same size, so only a hash could tell: the gateway has none for this version.
    const r = await rc(["check", up(), "X:tree", "-vv"]);
    expect(r.stderr).toContain("1 hashes could not be checked");
    expect(r.stderr).toMatch(/small\.bin: OK - could not check hash/);
    expect(r.stderr).not.toMatch(/small\.bin: OK\n/);
    expect(await servedChecksums(fx.url, `/tree/${rel}`)).toBeUndefined();
    // The content does differ, as --download finds.
    const downloaded = await rc(["check", up(), "X:tree", "--download"]);
    expect(downloaded.code).not.toBe(0);
    expect(downloaded.stderr).toContain("1 differences found");
  });

  it("an overwrite through the gateway gives the file the checksum of its new bytes", async () => {
    const rel = "docs/deeper/small.bin";
    // Sent whatever the remote shows (its time is the other client's upload).
    ok("rclone copyto", await rc(["copyto", join(up(), rel), `X:tree/${rel}`, "--no-check-dest"]));
    expect(await servedChecksums(fx.url, `/tree/${rel}`)).toBe(checksumsOf(tree.get(rel)!.data));
    const r = await rc(["check", up(), "X:tree"]);
    ok("rclone check", r);
    expect(r.stderr).not.toContain("could not be checked");
    expect(r.stderr).toContain(`${tree.size} matching files`);
  });

  it("a server-side MOVE and COPY keep a correct checksum", async () => {
    const big = tree.get("big.bin")!.data;
    const readme = tree.get("readme.txt")!.data;
    ok("rclone moveto", await rc(["moveto", "X:tree/big.bin", "X:moved/big moved.bin"]));
    ok("rclone copyto", await rc(["copyto", "X:tree/readme.txt", "X:copied/readme copy.txt"]));
    const folderCopy = await raw(fx.url, "COPY", "/tree/docs/", {
      headers: { destination: `${fx.url}/copied/docs/` },
    });
    expect(folderCopy.status).toBe(201);
    expect(await servedChecksums(fx.url, "/moved/big moved.bin")).toBe(checksumsOf(big));
    expect(await servedChecksums(fx.url, "/copied/readme copy.txt")).toBe(checksumsOf(readme));
    expect(await servedChecksums(fx.url, "/tree/readme.txt")).toBe(checksumsOf(readme));
    expect(await servedChecksums(fx.url, "/copied/docs/deeper/small.bin")).toBe(
      checksumsOf(tree.get("docs/deeper/small.bin")!.data),
    );
    const r = await rc(["check", join(up(), "docs"), "X:copied/docs"]);
    ok("rclone check of the copied folder", r);
    expect(r.stderr).not.toContain("could not be checked");
    expect(r.stderr).toContain("2 matching files");
  });
});
