import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type WebDAVClient } from "webdav";
import { Api } from "../helpers/emulator.js";
import { useGateway } from "../helpers/gateway.js";
import { requireTool, upstreamTree } from "./tools.js";

/**
 * cadaver 0.24 (neon-based interactive WebDAV shell, docs/clients.md §D.3), driven through stdin one
 * command at a time: it prints its prompt before reading each line and its exit code is always 0,
 * so every command's output is checked for `succeeded.` / `failed:`. Results are verified
 * through the emulator's Cloudreve API and the `webdav` npm client.
 */

const COMMAND_TIMEOUT_MS = 20_000;
/** cadaver's prompt, e.g. `dav:/cad/> `, printed before it reads a command. */
const PROMPT = /(?:^|\n)dav:[^\n]*> $/;

interface Step {
  command: string;
  output: string;
}

/** One cadaver process; `send` writes a command and resolves with what it printed. */
class Cadaver {
  private out = "";
  private waiter: (() => void) | undefined;
  readonly transcript: Step[] = [];
  private exited = false;
  /** The last prompt printed, e.g. `dav:/cad/>`. */
  prompt = "";

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    const onData = (d: string) => {
      this.out += d;
      this.waiter?.();
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", () => {
      this.exited = true;
      this.waiter?.();
    });
  }

  static async start(binary: string, url: string, cwd: string): Promise<Cadaver> {
    // HOME=cwd: no ~/.netrc or ~/.cadaverrc from the machine (the gateway has no users).
    const child = spawn(binary, [url], { cwd, env: { ...process.env, HOME: cwd } });
    const c = new Cadaver(child);
    const banner = await c.waitFor((s) => PROMPT.test(s), "the first prompt");
    c.transcript.push({ command: "(start)", output: banner });
    return c;
  }

  /** Waits (bounded) until `done(output so far)`; returns the output and clears it. */
  private waitFor(done: (s: string) => boolean, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`cadaver: no ${what} within ${COMMAND_TIMEOUT_MS} ms\n${this.log()}`));
      }, COMMAND_TIMEOUT_MS);
      const check = () => {
        if (done(this.out) || this.exited) {
          clearTimeout(timer);
          this.waiter = undefined;
          const s = this.out;
          this.out = "";
          resolve(s);
        }
      };
      this.waiter = check;
      check();
    });
  }

  /** Runs one command; returns its output without the echoed command and the next prompt. */
  async send(command: string): Promise<string> {
    this.child.stdin.write(`${command}\n`);
    const raw = await this.waitFor((s) => PROMPT.test(s), `prompt after \`${command}\``);
    if (!PROMPT.test(raw)) throw new Error(`cadaver exited during \`${command}\`\n${raw}`);
    this.prompt = PROMPT.exec(raw)![0].trim();
    const echo = `${command}\n`;
    const body = raw.replace(PROMPT, "");
    const output = raw.startsWith(echo) ? body.slice(echo.length) : body;
    this.transcript.push({ command, output });
    return output;
  }

  /** Runs a command that must report `succeeded.` and no `failed:`. */
  async ok(command: string): Promise<string> {
    const output = await this.send(command);
    expect(output, `\`${command}\`\n${this.log()}`).toMatch(/succeeded\.\s*$/m);
    expect(output, `\`${command}\`\n${this.log()}`).not.toMatch(/failed:/);
    return output;
  }

  /** Runs a command that must report `failed:`; returns the reason line(s). */
  async fails(command: string): Promise<string> {
    const output = await this.send(command);
    expect(output, `\`${command}\` should fail\n${this.log()}`).toMatch(/failed:/);
    expect(output).not.toMatch(/succeeded\./);
    return output.slice(output.indexOf("failed:") + "failed:".length).trim();
  }

  async quit(): Promise<void> {
    if (this.exited) return;
    this.child.stdin.write("quit\n");
    this.child.stdin.end();
    await this.waitFor(() => false, "exit").catch(() => this.child.kill("SIGKILL"));
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }

  log(): string {
    return this.transcript.map((s) => `dav> ${s.command}\n${s.output}`).join("\n");
  }
}

describe("cadaver against the gateway", () => {
  const fx = useGateway();
  let binary: string;
  let dir: string;
  let api: Api;
  let client: WebDAVClient;
  let cad: Cadaver | undefined;
  const text = "hello from cadaver\nsecond line\n";
  const text2 = "written while locked\n";
  const binary1 = randomBytes(200_000);

  beforeAll(async () => {
    binary = requireTool("cadaver", "cadaver");
    dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-cadaver-"));
    await writeFile(join(dir, "local.txt"), text);
    await writeFile(join(dir, "local2.txt"), text2);
    await writeFile(join(dir, "blob.bin"), binary1);
    api = new Api(fx.emu.url);
    await api.login();
    client = createClient(fx.url);
    cad = await Cadaver.start(binary, `${fx.url}/`, dir);
  });

  afterAll(async () => {
    await cad?.quit();
    cad?.kill();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("mkcol, cd, put and get (text and binary)", async () => {
    await cad!.ok("mkcol cad");
    await cad!.send("cd cad");
    expect(cad!.prompt, cad!.log()).toBe("dav:/cad/>");
    await cad!.ok("put local.txt up.txt");
    await cad!.ok("put blob.bin blob.bin");
    await cad!.ok("get up.txt got.txt");
    await cad!.ok("get blob.bin got.bin");
    expect(await readFile(join(dir, "got.txt"), "utf8")).toBe(text);
    expect(await readFile(join(dir, "got.bin")).then((b) => b.equals(binary1))).toBe(true);
    const ls = await cad!.ok("ls");
    expect(ls).toMatch(/^\s+up\.txt\s+31\s/m);
    expect(ls).toMatch(/^\s+blob\.bin\s+200000\s/m);
    expect(await cad!.fails("get missing.txt nothing.txt")).toMatch(/404/);

    const tree = await upstreamTree(api, "cad");
    expect(tree, "cad exists upstream").toBeDefined();
    expect([...tree!.keys()].sort()).toEqual(["blob.bin", "up.txt"]);
    expect(tree!.get("up.txt")!.size).toBe(Buffer.byteLength(text));
    expect(tree!.get("blob.bin")!.size).toBe(binary1.length);
  });

  it("copy and move", async () => {
    await cad!.ok("mkcol sub");
    await cad!.ok("copy up.txt sub/copy.txt");
    await cad!.ok("move blob.bin sub/moved.bin");
    // Copy onto an existing file overwrites it (cadaver sends Overwrite: T).
    await cad!.ok("copy sub/copy.txt up.txt");
    const tree = await upstreamTree(api, "cad");
    expect([...tree!.keys()].sort()).toEqual(["sub/", "sub/copy.txt", "sub/moved.bin", "up.txt"]);
    expect(tree!.get("sub/moved.bin")!.size).toBe(binary1.length);
    const moved = (await client.getFileContents("/cad/sub/moved.bin")) as Buffer;
    expect(Buffer.from(moved).equals(binary1)).toBe(true);
    expect(await client.getFileContents("/cad/sub/copy.txt", { format: "text" })).toBe(text);
    expect(await cad!.fails("move nothing.txt sub/x.txt")).toMatch(/404/);
  });

  it("propset and propget a dead property, read back by a second session", async () => {
    await cad!.ok("propset sub/moved.bin color red");
    await cad!.ok("propset sub/moved.bin flavour 'vanilla fudge'");
    const one = await cad!.send("propget sub/moved.bin color");
    expect(one, cad!.log()).toMatch(/^Value of color is: red$/m);
    const all = await cad!.send("propget sub/moved.bin");
    expect(all, cad!.log()).toMatch(
      /^http:\/\/webdav\.org\/cadaver\/custom-properties\/ color = red$/m,
    );
    expect(all).toMatch(/^DAV: getcontentlength = 200000$/m);
    expect(all).toMatch(/^DAV: displayname = moved\.bin$/m);

    // A fresh cadaver process (a new connection, no client-side state) sees the same values.
    const other = await Cadaver.start(binary, `${fx.url}/cad/`, dir);
    try {
      const v = await other.send("propget sub/moved.bin color");
      expect(v, other.log()).toMatch(/^Value of color is: red$/m);
      const f = await other.send("propget sub/moved.bin flavour");
      expect(f, other.log()).toMatch(/^Value of flavour is: vanilla fudge$/m);
    } finally {
      await other.quit();
      other.kill();
    }

    // The property follows a move.
    await cad!.ok("move sub/moved.bin sub/renamed.bin");
    const after = await cad!.send("propget sub/renamed.bin color");
    expect(after, cad!.log()).toMatch(/^Value of color is: red$/m);
  });

  it("lock keeps other clients out, the lock holder writes, unlock releases", async () => {
    await cad!.ok("lock up.txt");
    const locks = await cad!.send("discover up.txt");
    expect(locks, cad!.log()).toMatch(/Lock token <opaquelocktoken:[^>]+>/);
    expect(locks).toMatch(/Scope: exclusive\s+Type: write/);

    // Another client without the token is refused.
    await expect(client.putFileContents("/cad/up.txt", "intruder")).rejects.toMatchObject({
      status: 423,
    });
    await expect(client.deleteFile("/cad/up.txt")).rejects.toMatchObject({ status: 423 });

    // cadaver submits its token with the PUT.
    await cad!.ok("put local2.txt up.txt");
    expect(await client.getFileContents("/cad/up.txt", { format: "text" })).toBe(text2);

    await cad!.ok("unlock up.txt");
    const none = await cad!.send("discover up.txt");
    expect(none, cad!.log()).toMatch(/no locks found/);
    expect(await client.putFileContents("/cad/up.txt", "after unlock")).toBe(true);
    expect(await client.getFileContents("/cad/up.txt", { format: "text" })).toBe("after unlock");
  });

  it("rm and rmcol delete upstream", async () => {
    await cad!.ok("rm up.txt");
    await cad!.ok("rm sub/copy.txt");
    expect(await cad!.fails("rm up.txt")).toMatch(/404/);
    await cad!.ok("mkcol empty");
    await cad!.ok("rmcol empty");
    const ls = await cad!.ok("ls");
    expect(ls).toMatch(/^Coll:\s+sub\s/m);
    expect(ls).not.toMatch(/up\.txt|empty/);
    const tree = await upstreamTree(api, "cad");
    expect([...tree!.keys()].sort()).toEqual(["sub/", "sub/renamed.bin"]);
    await cad!.ok("rmcol sub");
    expect(await upstreamTree(api, "cad")).toEqual(new Map());
  });
});
