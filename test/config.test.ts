import { spawnSync } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, defaults, loadConfig, usage } from "../src/config.js";
import { hashPassword } from "../src/passwords.js";

let dir: string;

/**
 * The message of loading the config file `file`, as a process the file's permissions bind.
 * Root reads anything, so as root (CI) the load runs in a child that keeps uid 0 but drops
 * every capability (util-linux's setpriv), which makes the file's mode apply to it too.
 */
async function loadAsUnprivileged(file: string): Promise<string> {
  if (process.getuid?.() !== 0)
    return configError(() => loadConfig(["--config", file], {})).message;
  const script =
    `import("./src/config.ts").then(({ loadConfig }) => { try { loadConfig(["--config", ` +
    `${JSON.stringify(file)}], {}); } catch (err) { process.stdout.write(err.message); } })`;
  const child = spawnSync(
    "setpriv",
    ["--bounding-set=-all", "--inh-caps=-all", process.execPath, "--import", "tsx", "-e", script],
    { cwd: fileURLToPath(new URL("..", import.meta.url)), encoding: "utf8" },
  );
  expect(child.error, "setpriv (util-linux) runs the unprivileged load").toBeUndefined();
  expect(child.status, child.stderr).toBe(0);
  return child.stdout;
}
let hash: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloudreve-dav-config-"));
  hash = await hashPassword("correct horse");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let files = 0;
async function configFile(content: unknown): Promise<string> {
  const file = join(dir, `config-${files++}.json`);
  await writeFile(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

/** The ConfigError `fn` throws; fails the test when it throws nothing or something else. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

const UPSTREAM = ["--upstream", "https://pan.example.com", "--email", "a@b.c", "--password", "pw"];

describe("precedence: flags > environment > config file > defaults", () => {
  it("uses the defaults when nothing is set", () => {
    const { config, help, positionals } = loadConfig([], {});
    expect(config).toEqual(defaults());
    expect(config.host).toBe("127.0.0.1");
    expect(config.port).toBe(8080);
    expect(config.upstream).toBeUndefined();
    expect(help).toBe(false);
    expect(positionals).toEqual([]);
  });

  it("takes the flag over the environment and the file for the same key", async () => {
    const file = await configFile({ port: 1111, cacheTtlSeconds: 5, downloadMode: "redirect" });
    const env = { CLOUDREVE_DAV_PORT: "2222", CLOUDREVE_DAV_DOWNLOAD_MODE: "proxy" };
    const { config } = loadConfig(["--config", file, "--port", "3333"], env);
    expect(config.port).toBe(3333); // flag beats env and file
    expect(config.downloadMode).toBe("proxy"); // env beats file
    expect(config.cacheTtlSeconds).toBe(5); // file beats default
    expect(config.concurrency).toBe(defaults().concurrency); // default otherwise
  });

  it("takes the environment over the file", async () => {
    const file = await configFile({ port: 1111, logLevel: "warn" });
    const { config } = loadConfig(["--config", file], { CLOUDREVE_DAV_PORT: "2222" });
    expect(config.port).toBe(2222);
    expect(config.logLevel).toBe("warn");
  });

  it("finds the config file through CLOUDREVE_DAV_CONFIG, and --config beats it", async () => {
    const a = await configFile({ port: 1111 });
    const b = await configFile({ port: 2222 });
    expect(loadConfig([], { CLOUDREVE_DAV_CONFIG: a }).config.port).toBe(1111);
    expect(loadConfig(["--config", b], { CLOUDREVE_DAV_CONFIG: a }).config.port).toBe(2222);
  });

  it("reads every setting from each source", async () => {
    const all = {
      upstream: "https://pan.example.com/",
      email: "me@example.com",
      password: "pw",
      refreshToken: "rt",
      stateDir: "/tmp/state",
      host: "0.0.0.0",
      port: 9000,
      rootUri: "cloudreve://my/Photos",
      cacheTtlSeconds: 7,
      cacheTtlWithEventsSeconds: 8,
      cacheMaxEntries: 100,
      directUploadMaxBytes: 1000,
      concurrency: 3,
      permanentDelete: true,
      downloadMode: "redirect",
      appleDouble: "local",
      lockTimeoutMaxSeconds: 60,
      shutdownTimeoutSeconds: 2,
      upstreamConnectTimeoutSeconds: 3,
      upstreamResponseTimeoutSeconds: 4,
      upstreamIdleTimeoutSeconds: 5,
      logLevel: "debug",
      auth: "users",
      users: [{ name: "me", passwordHash: hash }],
      htpasswd: "/etc/dav.htpasswd",
      readOnly: true,
      trustedProxy: ["10.0.0.0/8"],
      baseUrl: "/dav",
      tlsCert: "/etc/cert.pem",
      tlsKey: "/etc/key.pem",
      accountIdleSeconds: 60,
      metricsListen: "[::]:9100",
      // Above 1 it refuses appleDouble "local" (above); read from each source in "workers".
      workers: 1,
    };
    const expected = { ...all, upstream: "https://pan.example.com" };
    const fromFile = loadConfig(["--config", await configFile(all)], {}).config;
    expect(fromFile).toEqual(expected);

    const env: Record<string, string> = {};
    const flags: string[] = [];
    for (const [key, value] of Object.entries(all)) {
      const snake = key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
      const kebab = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      const text = typeof value === "object" ? JSON.stringify(value) : String(value);
      const list = key === "trustedProxy" ? (value as string[]) : undefined;
      // A list: comma-separated in the environment, a repeated flag.
      env[`CLOUDREVE_DAV_${snake}`] = list ? list.join(",") : text;
      if (typeof value === "boolean") flags.push(`--${kebab}`);
      else if (list) for (const item of list) flags.push(`--${kebab}`, item);
      else flags.push(`--${kebab}`, text);
    }
    expect(loadConfig([], env).config).toEqual(expected);
    expect(loadConfig(flags, {}).config).toEqual(expected);
  });
});

describe("redis", () => {
  it("is read from each source, and must be a redis:// URL", async () => {
    const url = "redis://127.0.0.1:6379";
    expect(loadConfig(["--redis", url], {}).config.redis).toBe(url);
    expect(loadConfig([], { CLOUDREVE_DAV_REDIS: url }).config.redis).toBe(url);
    expect(loadConfig(["--config", await configFile({ redis: url })], {}).config.redis).toBe(url);
    const err = configError(() => loadConfig(["--redis", "http://x"], {}));
    expect(err.message).toContain("redis:// or rediss:// URL");
  });

  it("refuses --apple-double local, which keeps files on one instance's disk", () => {
    const err = configError(() =>
      loadConfig(["--redis", "redis://127.0.0.1:6379", "--apple-double", "local"], {}),
    );
    expect(err.message).toMatch(/^appleDouble: .*other instances sharing Redis cannot see/);
  });
});

describe("workers", () => {
  const upstream = ["--upstream", "https://pan.example.com", "--email", "me@example.com"];
  const pw = ["--password", "pw"];

  it("is 1 unless set; read from each source, from 1 to 64", async () => {
    expect(loadConfig([], {}).config.workers).toBe(1);
    expect(loadConfig([...upstream, ...pw, "--workers", "4"], {}).config.workers).toBe(4);
    const env = { CLOUDREVE_DAV_WORKERS: "3" };
    expect(loadConfig([...upstream, ...pw], env).config.workers).toBe(3);
    const file = await configFile({ workers: 64 });
    expect(loadConfig([...upstream, ...pw, "--config", file], {}).config.workers).toBe(64);
    expect(configError(() => loadConfig(["--workers", "0"], {})).message).toMatch(/^workers /);
    expect(configError(() => loadConfig(["--workers", "65"], {})).message).toMatch(/^workers /);
  });

  it("refuses demo mode, whose emulator lives in one process", () => {
    const err = configError(() => loadConfig(["--workers", "2"], {}));
    expect(err.message).toMatch(/^workers: demo mode \(no upstream\) runs in one process/);
  });

  it("refuses --apple-double local, which keeps files in one process", () => {
    const err = configError(() =>
      loadConfig([...upstream, ...pw, "--workers", "2", "--apple-double", "local"], {}),
    );
    expect(err.message).toMatch(/^appleDouble: .*the other workers do not see/);
  });
});

describe("boolean settings", () => {
  it("is set by a bare flag and cleared by --no-…, over the environment", () => {
    expect(loadConfig(["--permanent-delete"], {}).config.permanentDelete).toBe(true);
    const env = { CLOUDREVE_DAV_PERMANENT_DELETE: "true" };
    expect(loadConfig([], env).config.permanentDelete).toBe(true);
    expect(loadConfig(["--no-permanent-delete"], env).config.permanentDelete).toBe(false);
  });

  it("reads true/false words from the environment", () => {
    for (const [text, value] of [
      ["true", true],
      ["1", true],
      ["yes", true],
      ["false", false],
      ["0", false],
      ["off", false],
    ] as const) {
      const env = { CLOUDREVE_DAV_PERMANENT_DELETE: text };
      expect(loadConfig([], env).config.permanentDelete).toBe(value);
    }
  });

  it("refuses anything else", () => {
    const err = configError(() => loadConfig([], { CLOUDREVE_DAV_PERMANENT_DELETE: "maybe" }));
    expect(err.message).toContain("permanentDelete");
    expect(err.message).toContain("CLOUDREVE_DAV_PERMANENT_DELETE");
    expect(err.message).toContain("true or false");
    expect(err.message).toContain("Example: CLOUDREVE_DAV_PERMANENT_DELETE=true");
  });
});

describe("gateway users", () => {
  it("come from the environment as JSON", () => {
    const env = { CLOUDREVE_DAV_USERS: JSON.stringify([{ name: "alice", passwordHash: hash }]) };
    const { config } = loadConfig(["--host", "0.0.0.0"], env);
    expect(config.users).toEqual([{ name: "alice", passwordHash: hash }]);
    expect(config.host).toBe("0.0.0.0");
  });

  it("must have scrypt hashes, not passwords", async () => {
    const env = { CLOUDREVE_DAV_USERS: '[{"name":"alice","passwordHash":"hunter2"}]' };
    const err = configError(() => loadConfig([], env));
    expect(err.message).toMatch(/^users \(environment CLOUDREVE_DAV_USERS\)/);
    expect(err.message).toContain("entry 0 (alice)");
    expect(err.message).toContain("hash-password");
    expect(err.message).toContain("Example: CLOUDREVE_DAV_USERS='[{");

    // Without a hash, only an htpasswd file can hold the password.
    const file = await configFile({ users: [{ name: "bob" }] });
    const fromFile = configError(() => loadConfig(["--config", file], {}));
    expect(fromFile.message).toContain('users: "bob" has no passwordHash');
    expect(fromFile.message).toContain("--htpasswd");
    const withFile = await configFile({ users: [{ name: "bob" }], htpasswd: "/etc/h" });
    expect(loadConfig(["--config", withFile], {}).config.users).toEqual([{ name: "bob" }]);
  });

  it("refuses bad JSON, non-arrays, bad names and repeated names", () => {
    const cases: [string, string][] = [
      ["[{", "JSON array"],
      ['{"name":"a"}', "array"],
      [`[{"name":"a:b","passwordHash":"${hash}"}]`, 'without ":"'],
      [`[{"passwordHash":"${hash}"}]`, "name must be"],
      [`[{"name":"a","passwordHash":"${hash}"},{"name":"a","passwordHash":"${hash}"}]`, "repeated"],
      [`[{"name":"a","passwordHash":"${hash}","password":"x"}]`, 'unknown field "password"'],
    ];
    for (const [value, problem] of cases) {
      const err = configError(() => loadConfig([], { CLOUDREVE_DAV_USERS: value }));
      expect(err.message).toContain("users");
      expect(err.message).toContain(problem);
      expect(err.message).toContain("Example:");
    }
  });
});

describe("bad values", () => {
  /** Every message names the key and where it came from, says what is wrong and shows an example. */
  function expectClear(err: ConfigError, key: string, problem: string | RegExp, example: string) {
    expect(err.message.startsWith(`${key} (`)).toBe(true);
    if (typeof problem === "string") expect(err.message).toContain(problem);
    else expect(err.message).toMatch(problem);
    expect(err.message).toContain(`Example: ${example}`);
  }

  it("a port that is not a port", () => {
    for (const bad of ["http", "-1", "65536", "80.5", "0x50", ""]) {
      const err = configError(() => loadConfig([`--port=${bad}`], {}));
      expectClear(err, "port", "must be an integer from 0 to 65535", "--port 8080");
    }
    const env = configError(() => loadConfig([], { CLOUDREVE_DAV_PORT: "99999" }));
    expectClear(env, "port", '"99999"', "CLOUDREVE_DAV_PORT=8080");
  });

  it("a port of the wrong JSON type in the file", async () => {
    const file = await configFile({ port: true });
    const err = configError(() => loadConfig(["--config", file], {}));
    expectClear(err, "port", "got true", '"port": 8080');
    expect(err.message).toContain(file);
  });

  it("a value of the wrong JSON type in the file, for every kind; the same text from a flag or the environment is fine", async () => {
    const cases: [string, unknown, string, string][] = [
      ["permanentDelete", "yes", 'a JSON boolean, got "yes"', '"permanentDelete": true'],
      ["readOnly", 1, "a JSON boolean, got 1", '"readOnly": true'],
      ["port", "8080", 'a JSON number, got "8080"', '"port": 8080'],
      ["concurrency", [8], "a JSON number, got [8]", '"concurrency": 8'],
      ["host", 127, "a JSON string, got 127", '"host": "127.0.0.1"'],
      ["upstream", null, "a JSON string, got null", '"upstream": "https://pan.example.com"'],
      ["downloadMode", false, "a JSON string, got false", '"downloadMode": "proxy"'],
      [
        "trustedProxy",
        "10.0.0.0/8",
        'a JSON array, got "10.0.0.0/8"',
        '"trustedProxy": ["10.0.0.0/8"]',
      ],
      [
        "users",
        JSON.stringify([{ name: "me", passwordHash: hash }]),
        "a JSON array",
        '"users": [{',
      ],
    ];
    for (const [key, value, problem, example] of cases) {
      const file = await configFile({ [key]: value });
      const err = configError(() => loadConfig(["--config", file], {}));
      expectClear(err, key, `must be ${problem}`, example);
      expect(err.message).toContain(`(config file ${file})`);
    }
    const env = {
      CLOUDREVE_DAV_PERMANENT_DELETE: "yes",
      CLOUDREVE_DAV_TRUSTED_PROXY: "10.0.0.0/8",
    };
    const fromText = loadConfig(["--port", "8080"], env).config;
    expect([fromText.permanentDelete, fromText.port, fromText.trustedProxy]).toEqual([
      true,
      8080,
      ["10.0.0.0/8"],
    ]);
  });

  it("other integers out of range", () => {
    const err = configError(() => loadConfig(["--concurrency", "0"], {}));
    expectClear(err, "concurrency", "from 1 to 256", "--concurrency 8");
    const ttl = configError(() => loadConfig([], { CLOUDREVE_DAV_CACHE_TTL_SECONDS: "-5" }));
    expectClear(ttl, "cacheTtlSeconds", "at least 0", "CLOUDREVE_DAV_CACHE_TTL_SECONDS=30");
  });

  it("an upstream that is not an http(s) URL", () => {
    const cases: [string, string | RegExp][] = [
      ["pan.example.com", "is not a URL"],
      ["ftp://pan.example.com", "http:// or https://"],
      ["https://me:secret@pan.example.com", "must not carry credentials"],
      ["https://pan.example.com/?x=1", "query"],
    ];
    for (const [bad, problem] of cases) {
      const err = configError(() =>
        loadConfig(["--upstream", bad, "--email", "e", "--password", "p"], {}),
      );
      expectClear(err, "upstream", problem, "--upstream https://pan.example.com");
      expect(err.message).not.toContain("secret");
    }
  });

  it("normalises a good upstream URL", () => {
    const { config } = loadConfig(
      [...UPSTREAM.slice(2), "--upstream", "https://pan.example.com/cloud///"],
      {},
    );
    expect(config.upstream).toBe("https://pan.example.com/cloud");
  });

  it("a value outside an enumeration", () => {
    const err = configError(() => loadConfig(["--download-mode", "teleport"], {}));
    expectClear(err, "downloadMode", "must be one of proxy, redirect", "--download-mode proxy");
    const level = configError(() => loadConfig([], { CLOUDREVE_DAV_LOG_LEVEL: "loud" }));
    expectClear(level, "logLevel", '"loud"', "CLOUDREVE_DAV_LOG_LEVEL=info");
  });

  it("an empty string", () => {
    const err = configError(() => loadConfig([], { CLOUDREVE_DAV_STATE_DIR: " " }));
    expectClear(err, "stateDir", "non-empty", "CLOUDREVE_DAV_STATE_DIR=/var/lib/cloudreve-dav");
  });

  it("a root that is not a cloudreve:// URI", () => {
    const err = configError(() => loadConfig(["--root-uri", "/Photos"], {}));
    expectClear(err, "rootUri", "cloudreve:// URI", "--root-uri cloudreve://my/");
  });

  it("an unknown key in the config file", async () => {
    const file = await configFile({ prot: 8080 });
    const err = configError(() => loadConfig(["--config", file], {}));
    expectClear(err, "prot", "unknown key", '"port": 8080');
    expect(err.message).toContain("Known keys: upstream, email");
    const typo = await configFile({ cache_ttl_seconds: 3 });
    const near = configError(() => loadConfig(["--config", typo], {}));
    expect(near.message).toContain('did you mean "cacheTtlSeconds"');
  });

  it("skips $ and // keys in the config file", async () => {
    const file = await configFile({ $schema: "x", "// port": "the port", port: 1234 });
    expect(loadConfig(["--config", file], {}).config.port).toBe(1234);
  });

  it("an unknown flag, a missing flag value or a value for a boolean flag", () => {
    const unknown = configError(() => loadConfig(["--prot", "8080"], {}));
    expect(unknown.message).toBe(
      "--prot: unknown flag (did you mean --port?). Run with --help for the settings.",
    );
    const missing = configError(() => loadConfig(["--port"], {}));
    expect(missing.message).toBe("port (--port): needs a value. Example: --port 8080");
    const dash = configError(() => loadConfig(["--port", "-1"], {}));
    expect(dash.message).toMatch(/^port \(--port\): a value starting with "-" must be joined/);
    const bool = configError(() => loadConfig(["--permanent-delete=yes"], {}));
    expect(bool.message).toBe(
      "permanentDelete (--permanent-delete): takes no value. Example: --permanent-delete or --no-permanent-delete",
    );
    const config = configError(() => loadConfig(["--config"], {}));
    expect(config.message).toMatch(/^config \(--config\): needs a file. Example: --config /);
  });
});

describe("rules between settings", () => {
  it("refuses users without a scrypt hash even on loopback", () => {
    const users = JSON.stringify([{ name: "me", passwordHash: "scrypt$oops" }]);
    const err = configError(() => loadConfig([], { CLOUDREVE_DAV_USERS: users }));
    expect(err.message).toMatch(/^users \(/);
  });

  it("refuses a non-loopback host without users", () => {
    for (const host of ["0.0.0.0", "::", "192.168.1.10", "nas.local"]) {
      const err = configError(() => loadConfig(["--host", host], {}));
      expect(err.message).toMatch(/^host: /);
      expect(err.message).toContain("not a loopback address");
      expect(err.message).toContain("hash-password");
      expect(err.message).toContain("Example:");
    }
  });

  it("allows loopback hosts without users", () => {
    for (const host of ["127.0.0.1", "127.0.0.2", "::1", "localhost"]) {
      expect(loadConfig(["--host", host], {}).config.host).toBe(host);
    }
  });

  it("refuses an upstream without credentials", () => {
    const none = configError(() => loadConfig(["--upstream", "https://pan.example.com"], {}));
    expect(none.message).toMatch(/^email: upstream is set but there are no credentials/);
    expect(none.message).toContain("Example: --email me@example.com --password");
    expect(none.message).toContain("cloudreve-dav login");
  });

  it("accepts an email alone: the session `cloudreve-dav login` saved is found at start", () => {
    const { config } = loadConfig(
      ["--upstream", "https://pan.example.com", "--email", "a@b.c"],
      {},
    );
    expect(config.email).toBe("a@b.c");
    expect(config.password).toBeUndefined();
  });

  it("login reads the account's settings without the rules of serving", () => {
    const { config, positionals } = loadConfig(
      ["login", "--upstream", "https://pan.example.com", "--host", "0.0.0.0"],
      { CLOUDREVE_DAV_EMAIL: "a@b.c", CLOUDREVE_DAV_STATE_DIR: "/var/lib/cdav" },
    );
    expect(positionals).toEqual(["login"]);
    expect(config).toMatchObject({
      upstream: "https://pan.example.com",
      email: "a@b.c",
      stateDir: "/var/lib/cdav",
    });
  });

  it("accepts a refresh token instead of email and password", () => {
    const { config } = loadConfig([], {
      CLOUDREVE_DAV_UPSTREAM: "https://pan.example.com",
      CLOUDREVE_DAV_REFRESH_TOKEN: "rt",
    });
    expect(config.refreshToken).toBe("rt");
  });

  it("refuses credentials without an upstream instead of silently running demo mode", () => {
    const err = configError(() => loadConfig(["--email", "a@b.c", "--password", "pw"], {}));
    expect(err.message).toMatch(/^upstream: email is set but upstream is not/);
    expect(err.message).toContain("Example: --upstream https://pan.example.com");
  });
});

describe("the config file", () => {
  it("that does not exist or cannot be read", async () => {
    const missing = join(dir, "nope.json");
    const err = configError(() => loadConfig(["--config", missing], {}));
    expect(err.message).toMatch(/^config \(config file .*nope\.json\): cannot be read \(ENOENT\)/);
    expect(err.message).toContain("Example: --config");

    const folder = configError(() => loadConfig(["--config", dir], {}));
    expect(folder.message).toContain("cannot be read (EISDIR)");

    const locked = await configFile({ port: 1 });
    await chmod(locked, 0o000);
    expect(await loadAsUnprivileged(locked)).toContain("cannot be read (EACCES)");
  });

  it("that is not valid JSON", async () => {
    const file = await configFile('{"port": 8080,}');
    const err = configError(() => loadConfig(["--config", file], {}));
    expect(err.message).toMatch(/^config \(config file .*\): is not valid JSON/);
    expect(err.message).toContain("Example:");
  });

  it("that holds something other than an object", async () => {
    const file = await configFile("[1, 2]");
    const err = configError(() => loadConfig(["--config", file], {}));
    expect(err.message).toContain("must hold a JSON object");
    expect(err.message).toContain('Example: {"port": 8080}');
  });

  it("named by an empty --config", () => {
    const err = configError(() => loadConfig(["--config", ""], {}));
    expect(err.message).toMatch(/^config \(--config\): must name a file/);
  });

  it("config.example.json is valid and sets every setting", async () => {
    const path = new URL("../config.example.json", import.meta.url).pathname;
    const { readFile } = await import("node:fs/promises");
    const json = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    const keys = Object.keys(json).filter((k) => !k.startsWith("//") && !k.startsWith("$"));
    expect(keys.sort()).toEqual(Object.keys(defaults()).sort());
    const { config } = loadConfig(["--config", path], {});
    expect(config.upstream).toMatch(/^https:\/\//);
    expect(config.users.length).toBeGreaterThan(0);
  });
});

describe("--help", () => {
  it("lists every setting with its key, flag and environment variable", () => {
    const text = usage();
    for (const key of Object.keys(defaults())) {
      const kebab = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      const snake = key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
      expect(text).toContain(`  ${key}\n`);
      expect(text).toContain(`--${kebab}`);
      expect(text).toContain(`CLOUDREVE_DAV_${snake}`);
    }
    expect(text).toContain("--config FILE");
    expect(text).toContain("CLOUDREVE_DAV_CONFIG");
    expect(text).toContain("--no-permanent-delete");
    expect(text).toContain("hash-password");
    expect(text).toContain("flags > environment variables > config file > defaults");
  });

  it("is answered even when the other settings are bad", () => {
    const loaded = loadConfig(["--help"], { CLOUDREVE_DAV_HOST: "0.0.0.0" });
    expect(loaded.help).toBe(true);
  });

  it("commands such as hash-password skip the settings", () => {
    const loaded = loadConfig(["hash-password"], { CLOUDREVE_DAV_HOST: "0.0.0.0" });
    expect(loaded.positionals).toEqual(["hash-password"]);
  });
});
