/**
 * Modification times set after an upload (rclone's PROPPATCH lastmodified, Windows'
 * Win32LastModifiedTime): Cloudreve can only take one at upload time and bumps updated_at on
 * rename and move, so the drive keeps its own per-version time in `dav:` metadata.
 */
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloudreveApi } from "../../src/cloudreve/api.js";
import { Drive } from "../../src/drive/drive.js";
import { WrongType } from "../../src/errors.js";
import { EMAIL, PASSWORD, useEmulator } from "../helpers/emulator.js";

const ctx = useEmulator();
let api: CloudreveApi;
beforeAll(() => {
  api = new CloudreveApi({ baseUrl: ctx.emu.url, email: EMAIL, password: PASSWORD });
});
afterAll(() => api.close());

const body = (text: string) => ({ source: Readable.from([Buffer.from(text)]), size: text.length });
const MTIME = Date.UTC(2001, 1, 3, 4, 5, 6);

describe("setModTime", () => {
  it("shows the time set, also to a fresh drive that reads it from upstream", async () => {
    const drive = new Drive(api);
    await drive.write("/m1.txt", body("one"));
    const entry = await drive.setModTime("/m1.txt", MTIME);
    expect(entry.mtimeMs).toBe(MTIME);
    expect((await drive.stat("/m1.txt")).mtimeMs).toBe(MTIME);
    expect((await new Drive(api).stat("/m1.txt")).mtimeMs).toBe(MTIME);
  });

  it("survives a rename and a move, which bump Cloudreve's updated_at", async () => {
    const drive = new Drive(api);
    await drive.mkdir("/dir");
    await drive.write("/m2.txt", body("two"));
    await drive.setModTime("/m2.txt", MTIME);
    await drive.move("/m2.txt", "/dir/renamed.txt", { overwrite: false });
    expect((await new Drive(api).stat("/dir/renamed.txt")).mtimeMs).toBe(MTIME);
  });

  it("stops counting once new content is uploaded", async () => {
    const drive = new Drive(api);
    await drive.write("/m3.txt", body("three"));
    await drive.setModTime("/m3.txt", MTIME);
    const later = Date.UTC(2010, 0, 1);
    await drive.write("/m3.txt", { ...body("changed"), mtimeMs: later });
    expect((await new Drive(api).stat("/m3.txt")).mtimeMs).toBe(later);
  });

  it("is not listed among the dead properties", async () => {
    const drive = new Drive(api);
    await drive.write("/m4.txt", body("four"));
    await drive.setModTime("/m4.txt", MTIME);
    expect((await new Drive(api).getDeadProps(["/m4.txt"]))[0]).toEqual([]);
  });

  it("refuses folders", async () => {
    const drive = new Drive(api);
    await drive.mkdir("/folder");
    await expect(drive.setModTime("/folder", MTIME)).rejects.toBeInstanceOf(WrongType);
  });
});
