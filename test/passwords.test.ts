/** Password files: htpasswd entries written by Apache's own tool, and the scrypt hashes. */
import { execFileSync } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { hashPassword, LocalPasswords, readHtpasswd } from "../src/passwords.js";
import { requireTool } from "./clients/tools.js";

const dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-htpasswd-"));

/** Runs Debian's htpasswd (apache2-utils); CI installs it, so a missing one fails. */
const htpasswd = (...args: string[]) =>
  execFileSync(requireTool("htpasswd", "apache2-utils"), args, { stdio: "pipe" });

describe("htpasswd files", () => {
  it("reads bcrypt, apr1 MD5 and SHA-1 entries made by htpasswd, and checks them", async () => {
    const file = join(dir, "users");
    htpasswd("-c", "-B", "-b", file, "ann", "pw-ann");
    htpasswd("-m", "-b", file, "ben", "pw-ben");
    htpasswd("-s", "-b", file, "cy", "pw-cy");
    const entries = await readHtpasswd(file);
    expect([...entries.keys()]).toEqual(["ann", "ben", "cy"]);
    const passwords = new LocalPasswords([], entries);
    for (const name of ["ann", "ben", "cy"]) {
      expect(await passwords.verify(name, `pw-${name}`)).toBe(true);
      expect(await passwords.verify(name, `pw-${name}x`)).toBe(false);
    }
    expect(await passwords.verify("dee", "pw-dee")).toBe(false);
  });

  it("refuses crypt and plain entries, naming the line", async () => {
    for (const flag of ["-d", "-p"]) {
      const file = join(dir, `weak${flag}`);
      await writeFile(file, "# made by hand\n");
      htpasswd("-b", flag, file, "old", "pw");
      await expect(readHtpasswd(file)).rejects.toThrow(/line 2: the entry of "old" is not bcrypt/);
    }
    await writeFile(join(dir, "garbage"), "no colon here\n");
    await expect(readHtpasswd(join(dir, "garbage"))).rejects.toThrow(/line 1: not name:hash/);
    await expect(readHtpasswd(join(dir, "absent"))).rejects.toThrow(/cannot be read \(ENOENT\)/);
  });

  it("a user's scrypt hash in the settings comes before the file", async () => {
    const file = join(dir, "both");
    htpasswd("-c", "-B", "-b", file, "ann", "from-file");
    const users = [{ name: "ann", passwordHash: await hashPassword("from-settings") }];
    const passwords = new LocalPasswords(users, await readHtpasswd(file));
    expect(await passwords.verify("ann", "from-settings")).toBe(true);
    expect(await passwords.verify("ann", "from-file")).toBe(false);
  });
});
