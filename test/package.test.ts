/**
 * The package as a user gets it: `npm pack` from a checkout without dist/, then
 * `npm install -g` of the tarball, then the installed command.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { cp, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyPassword } from "../src/passwords.js";
import { Cli, cleanEnv } from "./helpers/cli.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const exec = promisify(execFile);
const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
};

let dir: string;
let tarball: string;
let installed: string;

/** What the checkout holds and a fresh clone would not. */
const LOCAL = new Set(["node_modules", "dist", ".git", "coverage", ".state"]);

/** The command as a user's shell runs it: no npm script around it, no gateway settings. */
function userEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !k.startsWith("CLOUDREVE_DAV_") && !k.startsWith("npm_lifecycle_"),
    ),
  );
}

function run(command: string, args: string[], options: { cwd?: string; input?: string } = {}) {
  const child = exec(command, args, { cwd: options.cwd ?? dir, env: userEnv() });
  child.child.stdin!.end(options.input ?? "");
  return child;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-package-"));
  // A copy, so that prepack builds its own dist/ (as in a clean clone) while other suites run
  // the working tree's; the installed dependencies are shared.
  const checkout = join(dir, "checkout");
  await cp(ROOT, checkout, {
    recursive: true,
    filter: (source) => !LOCAL.has(source.slice(ROOT.length).split("/")[0]!),
  });
  await symlink(join(ROOT, "node_modules"), join(checkout, "node_modules"), "dir");
  await run("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: checkout });
  tarball = join(dir, `cloudreve-dav-${version}.tgz`);
  // The dependencies come from npm's cache where it has them (`npm ci` filled it).
  await run("npm", [
    "install",
    "--global",
    "--prefix",
    join(dir, "prefix"),
    "--prefer-offline",
    "--no-audit",
    "--no-fund",
    tarball,
  ]);
  installed = join(dir, "prefix", "bin", "cloudreve-dav");
}, 300_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("npm pack", () => {
  it("holds the built program, the license, the docs, the example config and the systemd unit; no sources or tests", async () => {
    const { stdout } = await run("tar", ["-tzf", tarball]);
    const files = stdout
      .split("\n")
      .filter(Boolean)
      .map((f) => f.replace(/^package\//, ""));
    for (const wanted of [
      "package.json",
      "dist/cli.js",
      "dist/emulator/index.js",
      "LICENSE",
      "README.md",
      "config.example.json",
      "packaging/cloudreve-dav.service",
    ]) {
      expect(files).toContain(wanted);
    }
    expect(files.filter((f) => /^(src|test|bench|node_modules)\//.test(f))).toEqual([]);
  });
});

describe("npm install -g of the tarball", () => {
  it("--version and -v print package.json's version", async () => {
    for (const flag of ["--version", "-v"]) {
      expect((await run(installed, [flag])).stdout).toBe(`${version}\n`);
    }
  });

  it("--help names the installed command", async () => {
    const { stdout } = await run(installed, ["--help"]);
    expect(stdout).toContain("cloudreve-dav hash-password");
    expect(stdout).toContain("--upstream");
    expect(stdout).not.toContain("npm start");
  });

  it("hash-password reads standard input and prints a hash that verifies", async () => {
    const { stdout } = await run(installed, ["hash-password"], { input: "a long passphrase\n" });
    expect(await verifyPassword("a long passphrase", stdout.trim())).toBe(true);
  });

  it("runs demo mode with what the package carries (the sample media included)", async () => {
    const cli = join(dir, "prefix", "lib", "node_modules", "cloudreve-dav", "dist", "cli.js");
    const demo = new Cli([cli, "--port", "0"], cleanEnv(dir));
    try {
      const [, url] = await demo.waitFor(/Mount (http:\/\/\S+)/);
      const listing = await fetch(url!, { method: "PROPFIND", headers: { depth: "1" } });
      expect(listing.status).toBe(207);
      demo.child.kill("SIGTERM");
      expect(await demo.finished()).toEqual({ code: 0, signal: null });
    } finally {
      demo.kill();
    }
  });
});
