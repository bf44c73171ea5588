/**
 * rclone 1.60 as a real client of every storage policy the emulator models (and s3 in relay
 * mode): a small tree copied up through the gateway, checked, listed and copied back down, for
 * several of rclone's WebDAV vendors. The tree holds files on both sides of the gateway's
 * one-call threshold (`directUploadMaxBytes`) and files that take several parts of the policy's
 * chunk size, so that both upload paths and the part loop of each policy's uploader are used by
 * a client that sends its files concurrently. Where the bytes went is read from the emulator's
 * stats, and nothing may be left upstream. `POLICIES=a,b` runs some policies only.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { R } from "../helpers/control.js";
import { Api } from "../helpers/emulator.js";
import { content, expectNothingLeft } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";
import { countOf, partRequest, partsFor, SITES } from "../helpers/policies.js";
import {
  rclone,
  rcloneEnv,
  ok,
  requireTool,
  upstreamMtime,
  upstreamTree,
  type RcloneVendor,
  readTree,
  type Spec,
  writeTree,
} from "./tools.js";

/** The policy's chunk size: a multiple of 320 KiB, as OneDrive requires of every fragment. */
const CHUNK = 327_680;
/** Files up to this size go up in one `PUT /file/content`; larger ones by upload session. */
const DIRECT_MAX = 100_000;

/**
 * Every vendor on every policy. `nextcloud` and `owncloud` send X-OC-Mtime on every PUT, so they
 * cover the modification time on both upload paths (the session's `last_modified`, and the
 * gateway's own property after a one-call write); `owncloud` also asks for `oc:checksums` and
 * `oc:permissions` in its PROPFINDs; `other` sends no time and compares by size only. They differ
 * in what they ask of the gateway more than in how the bytes reach the storage, so the other two
 * could run on one policy per upload family only; but a vendor costs about 1.3 s per policy here
 * (the whole file: ~45 s for 11 policies × 3 vendors on two cores), so all of them run.
 */
const VENDORS: readonly RcloneVendor[] = ["nextcloud", "owncloud", "other"];

/** Vendors whose PUTs carry X-OC-Mtime, so the remote keeps the local modification time. */
const keepsMtime = (vendor: RcloneVendor) => vendor !== "other";

/**
 * Nested folders, spaces and non-ASCII in file and folder names, an empty file and sizes on
 * both sides of DIRECT_MAX and of one CHUNK; 2.8 MB in all. The two biggest take four parts.
 */
function makeTree(): Map<string, Spec> {
  const t = (iso: string) => Date.parse(iso) / 1000;
  return new Map<string, Spec>([
    ["empty.bin", { data: Buffer.alloc(0), mtime: t("2018-06-15T08:30:01Z") }],
    ["one byte.txt", { data: Buffer.from("x"), mtime: t("2019-01-02T03:04:05Z") }],
    [
      "docs/nested/deeper/ünïcødé 日本語 🚀.bin",
      { data: content(50_003, 1), mtime: t("2020-02-29T12:00:00Z") },
    ],
    // Written in one call, yet too big for the gateway's small-file cache: read upstream.
    ["docs/ninety KB.bin", { data: content(90_001, 6), mtime: t("2020-10-11T12:13:14Z") }],
    [
      "docs/nested/just over the threshold.bin",
      { data: content(DIRECT_MAX + 1, 2), mtime: t("2021-03-04T05:06:07Z") },
    ],
    // A fractional time: kept to the second.
    [
      "docs/readme.txt",
      { data: Buffer.from("read me\n"), mtime: t("2021-03-04T05:06:07Z") + 0.75 },
    ],
    ["big files/one MB.bin", { data: content(1_000_000, 3), mtime: t("2022-01-01T00:00:01Z") }],
    [
      "big files/sub dir ü/1.2 MB — Größe.bin",
      { data: content(1_200_007, 4), mtime: t("2023-05-06T07:08:09Z") },
    ],
    [
      "big files/sub dir ü/exactly one chunk.bin",
      { data: content(CHUNK, 5), mtime: t("2024-07-08T09:10:11Z") },
    ],
  ]);
}

const sorted = (xs: Iterable<string>) => [...xs].sort();
const whole = (s: number) => Math.floor(s);

/** One `rclone lsl` line: size, time (UTC with TZ=UTC), path. */
function parseLsl(out: string): Map<string, { size: number; mtime: number }> {
  const items = new Map<string, { size: number; mtime: number }>();
  for (const line of out.split("\n")) {
    if (!line.trim()) continue;
    const m = /^\s*(\d+) (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)\.\d+ (.+)$/.exec(line);
    expect(m, `an lsl line: ${JSON.stringify(line)}`).not.toBeNull();
    items.set(m![4]!, { size: Number(m![1]), mtime: Date.parse(`${m![2]}T${m![3]}Z`) / 1000 });
  }
  return items;
}

const tree = makeTree();
const small = [...tree.values()].filter((s) => s.data.length <= DIRECT_MAX);
const large = [...tree.values()].filter((s) => s.data.length > DIRECT_MAX);
let local: string;

beforeAll(async () => {
  local = await mkdtemp(join(tmpdir(), "cloudreve-dav-rclone-policies-"));
  await writeTree(join(local, "up"), tree);
});

afterAll(async () => {
  if (local) await rm(local, { recursive: true, force: true });
});

describe.each(SITES)("rclone through the gateway, $name policy", (site) => {
  const fx = useGateway(
    { policy: site.policy, relay: site.relay, chunkSize: CHUNK, chunkConcurrency: 2 },
    { directUploadMaxBytes: DIRECT_MAX },
  );
  const part = partRequest(site);
  const stats = () => fx.stats();
  let api: Api;

  beforeAll(async () => {
    requireTool("rclone", "rclone");
    api = new Api(fx.emu.url);
    await api.login();
  });

  describe.each(VENDORS)("vendor %s", (vendor) => {
    const folder = `${vendor} tree`;
    const remote = `X:${folder}`;
    const upDir = () => join(local, "up");
    const downDir = () => join(local, `down ${site.name} ${vendor}`);
    /** Remote `X:` is the gateway. No retries: a failure must show as one. TZ: lsl's times. */
    const rc = (args: string[]) =>
      rclone(
        { ...rcloneEnv(fx.url, vendor), TZ: "UTC" },
        [...args, "--low-level-retries", "1", "--retries", "1"],
        120_000,
      );

    it("copy up stores every file where the policy says, one call or session by size", async () => {
      await fx.resetStats();
      ok("rclone copy up", await rc(["copy", upDir(), remote, "-v"]));

      const s = await stats();
      const detail = JSON.stringify(s);
      expect(s.requests[R.putContent] ?? 0, detail).toBe(small.length);
      expect(s.requests[R.createSession] ?? 0, detail).toBe(large.length);
      expect(s.requests[R.cancel] ?? 0, detail).toBe(0);
      const parts = large.reduce((n, f) => n + partsFor(site, f.data.length, CHUNK), 0);
      expect(countOf(s, part), detail).toBe(parts);
      if (part.origin === "storage") {
        // The sessions' bytes went straight to the storage's origin, none through Cloudreve.
        expect(s.requests[R.chunk] ?? 0, detail).toBe(0);
        const bytes = large.reduce((n, f) => n + f.data.length, 0);
        expect(s.storage!.bytesIn, detail).toBeGreaterThanOrEqual(bytes);
      } else if (s.storage) {
        expect(
          Object.values(s.storage.requests).reduce((a, b) => a + b, 0),
          detail,
        ).toBe(0);
      }

      const up = await upstreamTree(api, folder);
      expect(up, `${folder} upstream`).toBeDefined();
      const files = [...up!].filter(([rel]) => !rel.endsWith("/"));
      expect(sorted(files.map(([rel]) => rel))).toEqual(sorted(tree.keys()));
      for (const [rel, item] of files) {
        const spec = tree.get(rel)!;
        expect(item.size, `upstream size of ${rel}`).toBe(spec.data.length);
        if (keepsMtime(vendor)) {
          expect(upstreamMtime(item), `upstream time of ${rel}`).toBe(whole(spec.mtime));
        }
      }
      await expectNothingLeft(fx.emu.url);
    }, 120_000);

    it("check finds no difference, by size and byte for byte", async () => {
      const bySize = await rc(["check", upDir(), remote, "--size-only"]);
      ok("rclone check --size-only", bySize);
      expect(bySize.stderr).toContain("0 differences found");
      expect(bySize.stderr).toContain(`${tree.size} matching files`);

      const byContent = await rc(["check", upDir(), remote, "--download"]);
      ok("rclone check --download", byContent);
      expect(byContent.stderr).toContain("0 differences found");
      expect(byContent.stderr).toContain(`${tree.size} matching files`);
    }, 120_000);

    it(`lsl lists every size${keepsMtime(vendor) ? " and modification time" : ""}`, async () => {
      const items = parseLsl(ok("rclone lsl", await rc(["lsl", remote])));
      expect(sorted(items.keys())).toEqual(sorted(tree.keys()));
      for (const [rel, spec] of tree) {
        const item = items.get(rel)!;
        expect(item.size, `size of ${rel}`).toBe(spec.data.length);
        if (keepsMtime(vendor)) expect(item.mtime, `time of ${rel}`).toBe(whole(spec.mtime));
      }
    }, 120_000);

    it("a second copy up finds nothing to transfer", async () => {
      await fx.resetStats();
      ok("rclone copy up again", await rc(["copy", upDir(), remote]));
      const s = await stats();
      expect(s.requests[R.putContent] ?? 0, JSON.stringify(s)).toBe(0);
      expect(s.requests[R.createSession] ?? 0, JSON.stringify(s)).toBe(0);
    }, 120_000);

    it("copy down brings back the same bytes, read from where the policy keeps them", async () => {
      await fx.resetStats();
      ok("rclone copy down", await rc(["copy", remote, downDir()]));

      const got = await readTree(downDir());
      expect(sorted(got.keys())).toEqual(sorted(tree.keys()));
      for (const [rel, spec] of tree) {
        expect(got.get(rel)!.equals(spec.data), `content of ${rel}`).toBe(true);
        if (keepsMtime(vendor)) {
          const st = await stat(join(downDir(), rel));
          expect(whole(st.mtimeMs / 1000), `local time of ${rel}`).toBe(whole(spec.mtime));
        }
      }

      const s = await stats();
      const detail = JSON.stringify(s);
      // The gateway keeps the bytes of files up to 64 KiB per version (drive.ts, read by the
      // checks before): only the larger ones must be read upstream again.
      const read = [...tree.values()].filter((f) => f.data.length > 64 * 1024);
      const readBytes = read.reduce((n, f) => n + f.data.length, 0);
      if (site.policy === "local") {
        expect(s.requests[R.content] ?? 0, detail).toBeGreaterThanOrEqual(read.length);
        expect(s.bytesOut, detail).toBeGreaterThanOrEqual(readBytes);
      } else {
        // Straight from the storage's origin (relay only changes uploads), never via Cloudreve.
        expect(s.storage!.requests["GET object"] ?? 0, detail).toBeGreaterThanOrEqual(read.length);
        expect(s.storage!.bytesOut, detail).toBeGreaterThanOrEqual(readBytes);
        expect(s.requests[R.content] ?? 0, detail).toBe(0);
      }
      await expectNothingLeft(fx.emu.url);
      await rm(downDir(), { recursive: true, force: true });
    }, 120_000);
  });
});
