/**
 * The drive's single-item operations against the emulator: dead properties in Cloudreve's own
 * encoding (spec §9.5), mkdir, write, read, remove, quota and path checks.
 */
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloudreveApi } from "../../src/cloudreve/api.js";
import { Drive } from "../../src/drive/drive.js";
import type { DeadProp, ReadResult } from "../../src/drive/types.js";
import {
  BadName,
  Exists,
  Forbidden,
  MissingParent,
  NotFound,
  TooLarge,
  WrongType,
} from "../../src/errors.js";
import { EMAIL, PASSWORD, myUri, useEmulator } from "../helpers/emulator.js";
import { contentOf } from "../helpers/content.js";
import { calls, resetStats, totalCalls } from "../helpers/control.js";

const CAPACITY = 10 * 1024 * 1024;
const ctx = useEmulator({ capacity: CAPACITY });
let api: CloudreveApi;
beforeAll(async () => {
  api = new CloudreveApi({ baseUrl: ctx.emu.url, email: EMAIL, password: PASSWORD });
  await api.capacity();
});
afterAll(() => api.close());

async function rawMetadata(path: string): Promise<Record<string, string>> {
  const r = await ctx.api.call<{ metadata: Record<string, string> }>("GET", "/file/info", {
    query: { uri: myUri(path) },
  });
  expect(r.json.code, r.text).toBe(0);
  return r.json.data!.metadata;
}

const bytes = (text: string) => ({ source: Readable.from([Buffer.from(text)]), size: text.length });

const text = async (r: ReadResult) => (await contentOf(r)).toString();

const byName = (a: DeadProp, b: DeadProp) => (a.ns + a.name < b.ns + b.name ? -1 : 1);

describe("dead properties", () => {
  const rich: DeadProp = {
    ns: "http://example.com/ns/",
    name: "note",
    lang: "de-CH",
    innerXml: '<x:b xmlns:x="urn:x">Grüße</x:b> und <x:i xmlns:x="urn:x">日本語 🎉</x:i>',
  };
  const plain: DeadProp = {
    ns: "urn:schemas-microsoft-com:",
    name: "Win32FileAttributes",
    innerXml: "00000020",
  };
  const noNs: DeadProp = { ns: "", name: "bare", innerXml: "" };

  it("round-trip with xml:lang, child elements and unicode, in Cloudreve's encoding", async () => {
    const drive = new Drive(api);
    await drive.mkdir("/dp");
    await drive.write("/dp/a.txt", bytes("a"));
    await drive.setDeadProps("/dp/a.txt", { set: [rich, plain, noNs], remove: [] });
    expect((await drive.getDeadProps(["/dp/a.txt"]))[0]!.sort(byName)).toEqual(
      [rich, plain, noNs].sort(byName),
    );

    const meta = await rawMetadata("dp/a.txt");
    expect(meta["dav:http://example.com/ns/|note"]).toBe(
      JSON.stringify({ l: "de-CH", i: Buffer.from(rich.innerXml, "utf8").toString("base64") }),
    );
    expect(meta["dav:urn:schemas-microsoft-com:|Win32FileAttributes"]).toBe(
      '{"l":"","i":"MDAwMDAwMjA="}',
    );
    expect(meta["dav:|bare"]).toBe('{"l":"","i":""}');

    // A drive with a cold cache reads them back from the upstream (a listing, here).
    const fresh = new Drive(api);
    await fresh.list("/dp");
    expect((await fresh.getDeadProps(["/dp/a.txt"]))[0]!.sort(byName)).toEqual(
      [rich, plain, noNs].sort(byName),
    );
  });

  it("removes properties and sets others in one PATCH call", async () => {
    const drive = new Drive(api);
    await drive.write("/dp/b.txt", bytes("b"));
    await drive.setDeadProps("/dp/b.txt", { set: [rich, plain], remove: [] });
    await resetStats(ctx.emu.url);
    await drive.setDeadProps("/dp/b.txt", {
      set: [noNs],
      remove: [rich, { ns: "urn:x", name: "absent" }],
    });
    expect(await calls(ctx.emu.url, "PATCH /api/v4/file/metadata")).toBe(1);
    expect(await totalCalls(ctx.emu.url)).toBe(1);
    expect((await drive.getDeadProps(["/dp/b.txt"]))[0]!.sort(byName)).toEqual(
      [plain, noNs].sort(byName),
    );
    const keys = Object.keys(await rawMetadata("dp/b.txt")).filter((k) => k.startsWith("dav:"));
    // Beside the gateway's own record of the checksums of what it wrote.
    expect(keys.sort()).toEqual([
      "dav:urn:cloudreve-dav:|checksums",
      "dav:urn:schemas-microsoft-com:|Win32FileAttributes",
      "dav:|bare",
    ]);
  });

  it("reads properties written by Cloudreve's own WebDAV server", async () => {
    await ctx.api.call("POST", "/file/create", {
      json: { uri: myUri("dp/theirs"), type: "folder" },
    });
    const inner = '<D:href xmlns:D="DAV:">/x</D:href>';
    const r = await ctx.api.call("PATCH", "/file/metadata", {
      json: {
        uris: [myUri("dp/theirs")],
        patches: [
          {
            key: "dav:urn:y|link",
            value: JSON.stringify({ l: "en", i: Buffer.from(inner).toString("base64") }),
          },
          { key: "dav:urn:y|junk", value: "not json" },
        ],
      },
    });
    expect(r.json.code, r.text).toBe(0);
    expect((await new Drive(api).getDeadProps(["/dp/theirs"]))[0]).toEqual([
      { ns: "urn:y", name: "link", lang: "en", innerXml: inner },
    ]);
  });

  it("applies a patch with a bad entry not at all", async () => {
    const drive = new Drive(api);
    await drive.write("/dp/c.txt", bytes("c"));
    await drive.setDeadProps("/dp/c.txt", { set: [plain], remove: [] });
    const before = await rawMetadata("dp/c.txt");
    const huge: DeadProp = { ns: "urn:x", name: "huge", innerXml: "x".repeat(60_000) };
    await resetStats(ctx.emu.url);
    await expect(
      drive.setDeadProps("/dp/c.txt", { set: [rich, huge], remove: [plain] }),
    ).rejects.toBeInstanceOf(TooLarge);
    expect(await totalCalls(ctx.emu.url)).toBe(0);
    expect(await rawMetadata("dp/c.txt")).toEqual(before);
    expect((await drive.getDeadProps(["/dp/c.txt"]))[0]).toEqual([plain]);
  });

  it("refuses properties on the root and on a missing path", async () => {
    const drive = new Drive(api);
    await expect(drive.setDeadProps("/", { set: [plain], remove: [] })).rejects.toBeInstanceOf(
      Forbidden,
    );
    await expect(
      drive.setDeadProps("/dp/none", { set: [plain], remove: [] }),
    ).rejects.toBeInstanceOf(NotFound);
    expect((await drive.getDeadProps(["/"]))[0]).toEqual([]);
  });

  it("answers for many paths in order, a listing's members from the cache", async () => {
    const drive = new Drive(api);
    await drive.mkdir("/dp/many");
    await drive.write("/dp/many/x", bytes("x"));
    await drive.write("/dp/many/y", bytes("y"));
    await drive.setDeadProps("/dp/many/y", { set: [plain], remove: [] });
    const fresh = new Drive(api);
    await fresh.list("/dp/many");
    await resetStats(ctx.emu.url);
    expect(await fresh.getDeadProps(["/dp/many/y", "/dp/many/x", "/dp/many/y"])).toEqual([
      [plain],
      [],
      [plain],
    ]);
    expect(await totalCalls(ctx.emu.url)).toBe(0);
    await expect(fresh.getDeadProps(["/dp/many/x", "/dp/many/none"])).rejects.toBeInstanceOf(
      NotFound,
    );
  });
});

describe("mkdir, write, read", () => {
  it("mkdir needs an existing parent folder and a free name", async () => {
    const drive = new Drive(api);
    await resetStats(ctx.emu.url);
    await expect(drive.mkdir("/mk/a/b")).rejects.toBeInstanceOf(MissingParent);
    expect(await calls(ctx.emu.url, "POST /api/v4/file/create")).toBe(0);
    const made = await drive.mkdir("/mk");
    expect(made).toMatchObject({ path: "/mk", name: "mk", isDir: true, size: 0 });
    expect(made.etag).toMatch(/^.+-\d+$/);
    await expect(drive.mkdir("/mk")).rejects.toBeInstanceOf(Exists);
    await drive.write("/mk/f.txt", bytes("f"));
    await expect(drive.mkdir("/mk/f.txt")).rejects.toBeInstanceOf(Exists);
    await expect(drive.mkdir("/mk/f.txt/sub")).rejects.toBeInstanceOf(MissingParent);
    await expect(drive.mkdir("/")).rejects.toBeInstanceOf(Exists);
    await expect(new Drive(api).mkdir("/mk")).rejects.toBeInstanceOf(Exists);
  });

  it("write needs an existing parent folder and refuses a folder", async () => {
    const drive = new Drive(api);
    await expect(drive.write("/wr/none/a.txt", bytes("a"))).rejects.toBeInstanceOf(MissingParent);
    await drive.mkdir("/wr");
    await drive.mkdir("/wr/dir");
    await expect(drive.write("/wr/dir", bytes("a"))).rejects.toBeInstanceOf(WrongType);
    await expect(new Drive(api).write("/wr/dir", bytes("a"))).rejects.toBeInstanceOf(WrongType);
    await drive.write("/wr/f.txt", bytes("f"));
    await expect(drive.write("/wr/f.txt/a.txt", bytes("a"))).rejects.toBeInstanceOf(MissingParent);
    await expect(drive.write("/", bytes("a"))).rejects.toBeInstanceOf(WrongType);
    const listing = await ctx.api.call<{ files: { name: string }[] }>("GET", "/file", {
      query: { uri: myUri("wr") },
    });
    expect(listing.json.data!.files.map((f) => f.name).sort()).toEqual(["dir", "f.txt"]);
  });

  it("reads whole files and ranges, and refuses folders", async () => {
    const drive = new Drive(api);
    await drive.mkdir("/rd");
    await drive.write("/rd/a.txt", bytes("0123456789"));
    const whole = await drive.read("/rd/a.txt");
    expect(whole.range).toBeUndefined();
    expect(whole.length).toBe(10);
    expect(await text(whole)).toBe("0123456789");
    const part = await drive.read("/rd/a.txt", { range: { start: 2, end: 5 } });
    expect(part.range).toEqual({ start: 2, end: 5 });
    expect(part.length).toBe(4);
    expect(await text(part)).toBe("2345");
    await expect(drive.read("/rd")).rejects.toBeInstanceOf(WrongType);
    await expect(drive.read("/rd/none")).rejects.toBeInstanceOf(NotFound);
  });

  it("lists only folders: a file is WrongType, a missing path NotFound", async () => {
    const drive = new Drive(api);
    await drive.write("/ls/a.txt", bytes("a")).catch(() => undefined);
    await drive.mkdir("/ls").catch(() => undefined);
    await drive.write("/ls/a.txt", bytes("a"));
    await expect(new Drive(api).list("/ls/a.txt")).rejects.toBeInstanceOf(WrongType);
    await expect(drive.list("/ls/a.txt")).rejects.toBeInstanceOf(WrongType);
    await expect(drive.list("/ls/none")).rejects.toBeInstanceOf(NotFound);
  });

  it("refuses empty, . and .. segments before any upstream call", async () => {
    const drive = new Drive(api);
    await resetStats(ctx.emu.url);
    for (const path of ["/a/../b", "/a//b", "/.", "/..", "/a/", "/a/./b"]) {
      await expect(drive.stat(path)).rejects.toBeInstanceOf(BadName);
      await expect(drive.write(path, bytes("x"))).rejects.toBeInstanceOf(BadName);
      await expect(drive.move("/x", path, { overwrite: true })).rejects.toBeInstanceOf(BadName);
    }
    expect(await totalCalls(ctx.emu.url)).toBe(0);
  });

  it("keeps names with URI-special characters intact", async () => {
    const drive = new Drive(api);
    await drive.mkdir("/odd");
    // Cloudreve refuses \ / : * ? " < > | in names; everything else must survive the URI.
    const name = "a b+c%d#e&f;=中文.txt";
    await drive.write(`/odd/${name}`, bytes("odd"));
    expect((await new Drive(api).list("/odd")).map((e) => e.name)).toEqual([name]);
    expect(await text(await drive.read(`/odd/${name}`))).toBe("odd");
  });
});

describe("remove and quota", () => {
  async function trashNames(): Promise<string[]> {
    const r = await ctx.api.call<{ files: { name: string }[] }>("GET", "/file", {
      query: { uri: "cloudreve://trash" },
    });
    return r.json.data!.files.map((f) => f.name);
  }

  it("removes into the trash by default and for good with permanentDelete", async () => {
    const drive = new Drive(api);
    await drive.mkdir("/rm");
    await drive.write("/rm/soft-deleted.txt", bytes("s"));
    await drive.write("/rm/hard-deleted.txt", bytes("h"));
    await drive.remove("/rm/soft-deleted.txt");
    await new Drive(api, { permanentDelete: true }).remove("/rm/hard-deleted.txt");
    expect(await trashNames()).toContain("soft-deleted.txt");
    expect(await trashNames()).not.toContain("hard-deleted.txt");
    expect(await new Drive(api).list("/rm")).toEqual([]);
    await expect(drive.remove("/rm/soft-deleted.txt")).rejects.toBeInstanceOf(NotFound);
    await expect(drive.remove("/")).rejects.toBeInstanceOf(Forbidden);
  });

  it("reports used and available space, cached briefly and dropped after a write", async () => {
    let now = 0;
    const drive = new Drive(api, { now: () => now, permanentDelete: true });
    const { used } = await drive.quota();
    expect(await drive.quota()).toEqual({ used, available: CAPACITY - used });

    await resetStats(ctx.emu.url);
    await drive.quota();
    expect(await totalCalls(ctx.emu.url)).toBe(0);
    now += 5_000;
    await drive.quota();
    expect(await totalCalls(ctx.emu.url)).toBe(1);

    await drive.mkdir("/q");
    await drive.write("/q/blob.bin", bytes("x".repeat(1000)));
    expect(await drive.quota()).toEqual({ used: used + 1000, available: CAPACITY - used - 1000 });
    await drive.remove("/q/blob.bin");
    expect(await drive.quota()).toEqual({ used, available: CAPACITY - used });
  });
});
