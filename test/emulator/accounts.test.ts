/**
 * Several accounts on one emulator, each with its own drive, quota and storage policy (the
 * policy of its group, as on a real server), over HTTP only; and `--user` on the CLI.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  advance,
  Api,
  bytes,
  code,
  EMAIL,
  myUri,
  ok,
  put,
  upstreamBytes,
  useEmulator,
  type CrFile,
} from "../helpers/emulator.js";
import { until } from "../helpers/wait.js";

interface Session {
  session_id: string;
  upload_id: string;
  chunk_size: number;
  upload_urls?: string[];
  completeURL?: string;
  callback_secret: string;
  storage_policy: { id: string; name: string; type: string };
}

interface Me {
  id: string;
  group: { id: string; name: string };
}

const CHUNK = 64 * 1024;
const S3_USER = {
  email: "b@example.com",
  password: "pw-b",
  capacity: 1024 ** 2,
  policy: "s3" as const,
};

const names = (files: CrFile[]) => files.map((f) => f.name);

async function list(api: Api, uri: string) {
  return api.call<{ files: CrFile[]; storage_policy: Session["storage_policy"] }>("GET", "/file", {
    query: { uri },
  });
}

async function startSession(api: Api, path: string, size: number): Promise<Session> {
  return ok(await api.call<Session>("PUT", "/file/upload", { json: { uri: myUri(path), size } }));
}

async function capacity(api: Api): Promise<{ total: number; used: number }> {
  return ok(await api.call<{ total: number; used: number }>("GET", "/user/capacity"));
}

async function fileUrl(api: Api, path: string): Promise<string> {
  const r = await api.call<{ urls: { url: string }[] }>("POST", "/file/url", {
    json: { uris: [myUri(path)], no_cache: true },
  });
  return ok(r).urls[0]!.url;
}

/** The s3 flow: the parts and the completion to the storage origin, then the callback. */
async function uploadS3(api: Api, s: Session, body: Uint8Array): Promise<void> {
  const parts: string[] = [];
  for (const [i, url] of s.upload_urls!.entries()) {
    const res = await fetch(url, {
      method: "PUT",
      body: body.subarray(i * s.chunk_size, (i + 1) * s.chunk_size),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    parts.push(
      `<Part><PartNumber>${i + 1}</PartNumber><ETag>${res.headers.get("etag")}</ETag></Part>`,
    );
  }
  const xml = `<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`;
  expect((await fetch(s.completeURL!, { method: "POST", body: xml })).status).toBe(200);
  const r = await api.call("GET", `/callback/s3/${s.session_id}/${s.callback_secret}`, {
    auth: false,
  });
  expect([r.status, code(r)], r.text).toEqual([200, 0]);
}

describe("accounts with their own drive, quota and policy", () => {
  // The primary account (`ctx.api`) has the local policy and the default 1 GiB.
  const ctx = useEmulator({ chunkSize: CHUNK, extraUsers: [S3_USER] });
  const b = {} as { api: Api };
  beforeAll(async () => {
    b.api = new Api(ctx.emu.url);
    await b.api.login(S3_USER.email, S3_USER.password);
  });

  it("starts one storage origin for the s3 policy, none for local", async () => {
    expect(ctx.emu.storageUrl).toBeUndefined();
    expect(Object.keys(ctx.emu.storageUrls)).toEqual(["s3"]);
    expect(ctx.emu.storageUrls.s3).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const stats = await ctx.api.call<never>("GET", "/__emulator/stats");
    expect(JSON.parse(stats.text)).toHaveProperty("storage");
  });

  it("lists each account's own files only; another's root by hash id is 403", async () => {
    await put(ctx.api, "mine/a.txt", "A's");
    await put(b.api, "theirs/b.txt", "B's");
    expect(names(ok(await list(ctx.api, myUri())).files)).toContain("mine");
    expect(names(ok(await list(ctx.api, myUri())).files)).not.toContain("theirs");
    expect(names(ok(await list(b.api, myUri())).files)).toEqual(["theirs"]);
    const a = ok(await ctx.api.call<Me>("GET", "/user/me"));
    const r = await list(b.api, `cloudreve://${a.id}@my/mine`);
    expect([r.status, code(r)]).toEqual([200, 403]);
    const read = await b.api.call("POST", "/file/url", {
      json: { uris: [`cloudreve://${a.id}@my/mine/a.txt`] },
    });
    expect(code(read)).toBe(403);
  });

  it("gives each account its own capacity", async () => {
    const [mine, theirs] = [await capacity(ctx.api), await capacity(b.api)];
    expect(mine.total).toBe(1024 ** 3);
    expect(theirs.total).toBe(S3_USER.capacity);
    await put(b.api, "quota/one.bin", bytes(1000));
    expect(await capacity(b.api)).toEqual({ ...theirs, used: theirs.used + 1000 });
    expect(await capacity(ctx.api)).toEqual(mine);
    // A session the primary account has room for is beyond B's quota.
    const size = S3_USER.capacity;
    const r = await b.api.call("PUT", "/file/upload", { json: { uri: myUri("big.bin"), size } });
    expect(code(r)).toBe(40051);
  });

  it("reports each account's policy, with its own id, name and group", async () => {
    const mine = ok(await list(ctx.api, myUri())).storage_policy;
    const theirs = ok(await list(b.api, myUri())).storage_policy;
    expect(mine).toMatchObject({ type: "local", name: "Default storage policy" });
    expect(theirs).toMatchObject({ type: "s3", relay: false });
    expect(theirs.id).not.toBe(mine.id);
    expect(theirs.name).not.toBe(mine.name);
    const [a, bMe] = [
      ok(await ctx.api.call<Me>("GET", "/user/me")),
      ok(await b.api.call<Me>("GET", "/user/me")),
    ];
    expect(a.group.name).toBe("User");
    expect(bMe.group.id).not.toBe(a.group.id);
  });

  it("opens an s3 session for the s3 account, stored and read back from its origin", async () => {
    const body = bytes(2 * CHUNK + 7, 5);
    const s = await startSession(b.api, "up/s3.bin", body.length);
    expect(s.storage_policy.type).toBe("s3");
    expect(s.chunk_size).toBe(CHUNK);
    expect(s.upload_id).not.toBe("");
    expect(s.upload_urls).toHaveLength(3);
    for (const url of [...s.upload_urls!, s.completeURL!])
      expect(url.startsWith(`${ctx.emu.storageUrls.s3}/`)).toBe(true);
    // Its chunks do not go to Cloudreve.
    const chunk = await b.api.call("POST", `/file/upload/${s.session_id}/0`, { body: "x" });
    expect(code(chunk)).toBe(40006);
    await uploadS3(b.api, s, body);
    expect((await fileUrl(b.api, "up/s3.bin")).startsWith(`${ctx.emu.storageUrls.s3}/`)).toBe(true);
    expect((await upstreamBytes(b.api, "up/s3.bin")).equals(body)).toBe(true);
  });

  it("opens a local session for the local account, chunks through Cloudreve", async () => {
    const body = bytes(CHUNK + 3, 6);
    const s = await startSession(ctx.api, "up/local.bin", body.length);
    expect(s.storage_policy.type).toBe("local");
    expect(s.upload_urls).toBeUndefined();
    expect(s.upload_id).toBe("");
    // The s3 callback is not the local session's policy (§6.6: 401 / 40006).
    const wrong = await ctx.api.call("GET", `/callback/s3/${s.session_id}/${s.callback_secret}`);
    expect([wrong.status, code(wrong)]).toEqual([401, 40006]);
    for (let i = 0; i * CHUNK < body.length; i++) {
      const r = await ctx.api.call("POST", `/file/upload/${s.session_id}/${i}`, {
        body: body.subarray(i * CHUNK, (i + 1) * CHUNK),
      });
      expect(code(r), r.text).toBe(0);
    }
    expect((await fileUrl(ctx.api, "up/local.bin")).startsWith(`${ctx.emu.url}/api/v4/`)).toBe(
      true,
    );
    expect((await upstreamBytes(ctx.api, "up/local.bin")).equals(body)).toBe(true);
  });

  it("writes each account's PUT /file/content into its own policy's storage", async () => {
    await put(b.api, "content/b.txt", "into s3");
    expect((await fileUrl(b.api, "content/b.txt")).startsWith(`${ctx.emu.storageUrls.s3}/`)).toBe(
      true,
    );
    expect((await upstreamBytes(b.api, "content/b.txt")).toString()).toBe("into s3");
    await put(ctx.api, "content/a.txt", "kept local");
    expect((await fileUrl(ctx.api, "content/a.txt")).startsWith(`${ctx.emu.url}/`)).toBe(true);
  });

  it("removes a deleted file's object from its policy's storage", async () => {
    await put(b.api, "gone/b.txt", "short-lived");
    const url = await fileUrl(b.api, "gone/b.txt");
    const r = await b.api.call("DELETE", "/file", {
      json: { uris: [myUri("gone/b.txt")], skip_soft_delete: true },
    });
    expect(code(r), r.text).toBe(0);
    const status = async () => {
      const res = await fetch(url);
      await res.arrayBuffer();
      return res.status;
    };
    await until("the object is deleted", async () => (await status()) === 404, 5000);
  });

  // Last: it moves the clock past every token and session.
  it("sweeps the s3 account's abandoned session, not the local one's", async () => {
    await startSession(b.api, "sentinel/b.bin", 10);
    await startSession(ctx.api, "sentinel/a.bin", 10);
    const owners = async () => {
      const r = await ctx.api.call<never>("GET", "/__emulator/locks");
      const { uploads } = JSON.parse(r.text) as { uploads: { owner: string }[] };
      return uploads.map((u) => u.owner).sort();
    };
    expect(await owners()).toEqual([EMAIL, S3_USER.email]);
    // The sentinel drops an s3 upload 5 minutes after its session (86,400 s) expired.
    await advance(ctx.api, 86_400 + 301);
    expect(code(await ctx.api.call("GET", "/user/capacity"))).toBe(0);
    expect(await owners()).toEqual([EMAIL]);
  });
});

// ---------------------------------------------------------------------------------------------

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The emulator's CLI from source; `output` resolves once it names its s3 origin, or it ended. */
function cli(args: string[]): { child: ChildProcess; output: Promise<string> } {
  const child = spawn(process.execPath, ["--import", "tsx", "src/emulator/cli.ts", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (t: string) => (out += t));
  child.stderr!.setEncoding("utf8").on("data", (t: string) => (out += t));
  const output = new Promise<string>((resolve) => {
    child.stdout!.on("data", () => /s3 storage on .*\n/.test(out) && resolve(out));
    child.once("close", () => resolve(out));
  });
  return { child, output };
}

describe("cloudreve-emulator --user", () => {
  let running: ChildProcess | undefined;
  afterEach(async () => {
    if (running?.exitCode === null) {
      running.kill("SIGTERM");
      await once(running, "exit");
    }
  });

  it("adds an account with its own policy, which logs in", async () => {
    const { child, output } = cli([
      ...["--port", "0", "--email", "a@example.com", "--password", "pass-a"],
      ...["--user", "b@example.com:pass-b:s3", "--user", "c@example.com:with:colon"],
    ]);
    running = child;
    const text = await output;
    const url = /listening on (http:\S+)/.exec(text)?.[1];
    expect(url, text).toBeDefined();
    expect(text).toMatch(/^s3 storage on http:\/\/127\.0\.0\.1:\d+$/m);
    const b = new Api(url!);
    await b.login("b@example.com", "pass-b");
    expect(ok(await list(b, myUri())).storage_policy.type).toBe("s3");
    // A last part that names no policy type belongs to the password.
    const c = new Api(url!);
    await c.login("c@example.com", "with:colon");
    expect(ok(await list(c, myUri())).storage_policy.type).toBe("local");
  });

  for (const bad of ["nobody", ":pw", "b@example.com:", "b@example.com::s3"]) {
    it(`refuses --user ${JSON.stringify(bad)} with exit 2`, async () => {
      const { child, output } = cli(["--port", "0", "--user", bad]);
      running = child;
      const text = await output;
      expect(child.exitCode).toBe(2);
      expect(text).toContain("--user must be EMAIL:PASSWORD[:TYPE]");
    });
  }
});
