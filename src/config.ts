import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import proxyaddr from "proxy-addr";

/**
 * Every setting, its flag, its environment variable and its JSON key. Precedence:
 * flags > environment (CLOUDREVE_DAV_…) > config file (--config) > defaults.
 */
export interface GatewayUser {
  /** The sign-in name; with `auth: "cloudreve"`, the Cloudreve email these settings apply to. */
  name: string;
  /**
   * From `cloudreve-dav hash-password`: scrypt$N$r$p$salt$hash. Absent when the htpasswd
   * file holds the password (or Cloudreve checks it).
   */
  passwordHash?: string;
  /** The Cloudreve account this user works in; absent: the gateway's own. */
  account?: AccountCredentials;
  /** The folder of the served root the user sees as "/" (a gateway path, default "/"). */
  root?: string;
  /** Every write answers 403. */
  readOnly?: boolean;
}

/** One Cloudreve account's credentials: email and password, or a refresh token. */
export interface AccountCredentials {
  email?: string;
  password?: string;
  refreshToken?: string;
}

export interface Config {
  /** Cloudreve site URL; absent = demo mode (an emulator in-process). */
  upstream: string | undefined;
  email: string | undefined;
  password: string | undefined;
  refreshToken: string | undefined;
  /** Where the token pair is kept between runs. */
  stateDir: string;
  host: string;
  port: number;
  rootUri: string;
  cacheTtlSeconds: number;
  /** The cache lifetime while Cloudreve's change events flow (they tell what changed). */
  cacheTtlWithEventsSeconds: number;
  cacheMaxEntries: number;
  /** Files up to this size are written with one `PUT /file/content`, larger ones by session. */
  directUploadMaxBytes: number;
  concurrency: number;
  permanentDelete: boolean;
  downloadMode: "proxy" | "redirect";
  /** Finder's AppleDouble `._*` files: uploaded to the drive, or kept in the state folder. */
  appleDouble: "upload" | "local";
  lockTimeoutMaxSeconds: number;
  /** How long in-flight requests may run on after SIGTERM/SIGINT before they are cut. */
  shutdownTimeoutSeconds: number;
  /** Bounds on waiting for Cloudreve and its storage: a hung upstream answers 504. */
  upstreamConnectTimeoutSeconds: number;
  upstreamResponseTimeoutSeconds: number;
  upstreamIdleTimeoutSeconds: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Who checks passwords: the gateway (users, htpasswd) or Cloudreve (each user's own login). */
  auth: "users" | "cloudreve";
  users: GatewayUser[];
  /** An Apache htpasswd file (bcrypt, apr1 MD5, SHA-1 entries). */
  htpasswd: string | undefined;
  /** Every write method answers 403, for every user. */
  readOnly: boolean;
  /** Addresses (CIDR, or loopback/linklocal/uniquelocal) whose X-Forwarded-* headers are believed. */
  trustedProxy: string[];
  /** The URL path WebDAV is served under: "" (the root) or e.g. "/dav". */
  baseUrl: string;
  /** PEM certificate chain and key: HTTPS instead of HTTP. */
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  /** An account nobody used for this long lets go of its connections, cache and event stream. */
  accountIdleSeconds: number;
  /** Redis for locks and cache invalidations shared by several gateway instances. */
  redis: string | undefined;
  workers: number;
  /** HOST:PORT of the Prometheus listener (GET /metrics), apart from WebDAV; "off": none. */
  metricsListen: string;
}

type Kind = "string" | "url" | "int" | "bool" | "enum" | "users" | "list";

interface Setting {
  key: keyof Config;
  kind: Kind;
  example: string;
  help: string;
  values?: readonly string[];
  min?: number;
  max?: number;
  /** A string must match this; `shape` says how, for the message. */
  pattern?: RegExp;
  shape?: string;
}

const SETTINGS: readonly Setting[] = [
  {
    key: "upstream",
    kind: "url",
    example: "https://pan.example.com",
    help: "Cloudreve site URL (none: demo mode)",
  },
  { key: "email", kind: "string", example: "me@example.com", help: "Cloudreve account email" },
  {
    key: "password",
    kind: "string",
    example: "secret",
    help: "Cloudreve account password (none needed after `cloudreve-dav login`)",
  },
  {
    key: "refreshToken",
    kind: "string",
    example: "eyJhbGciOi…",
    help: "Cloudreve refresh token (for accounts with captcha or 2FA)",
  },
  {
    key: "stateDir",
    kind: "string",
    example: "/var/lib/cloudreve-dav",
    help: "where the token pair is kept",
  },
  { key: "host", kind: "string", example: "127.0.0.1", help: "address to listen on" },
  { key: "port", kind: "int", example: "8080", help: "port to listen on", min: 0, max: 65535 },
  {
    key: "rootUri",
    kind: "string",
    example: "cloudreve://my/",
    help: "the Cloudreve folder served as /",
    pattern: /^cloudreve:\/\/[^/]+/i,
    shape: "a cloudreve:// URI",
  },
  { key: "cacheTtlSeconds", kind: "int", example: "30", help: "metadata cache lifetime", min: 0 },
  {
    key: "cacheTtlWithEventsSeconds",
    kind: "int",
    example: "600",
    help: "metadata cache lifetime while Cloudreve's change events flow (4.11 and later; not when --cache-ttl-seconds is 0)",
    min: 0,
  },
  { key: "cacheMaxEntries", kind: "int", example: "50000", help: "metadata cache size", min: 1 },
  {
    key: "directUploadMaxBytes",
    kind: "int",
    example: "4194304",
    help: "files up to this size are written in one call (kept in memory for a retry)",
    min: 0,
    max: 50 * 1024 * 1024,
  },
  {
    key: "concurrency",
    kind: "int",
    example: "8",
    help: "parallel calls to Cloudreve",
    min: 1,
    max: 256,
  },
  {
    key: "permanentDelete",
    kind: "bool",
    example: "true",
    help: "DELETE skips the Cloudreve trash",
  },
  {
    key: "downloadMode",
    kind: "enum",
    values: ["proxy", "redirect"],
    example: "proxy",
    help: "GET streams content (proxy) or answers 302 to the signed URL (redirect)",
  },
  {
    key: "appleDouble",
    kind: "enum",
    values: ["upload", "local"],
    example: "local",
    help: "macOS ._* files go to the drive (upload) or stay in the state folder (local)",
  },
  {
    key: "lockTimeoutMaxSeconds",
    kind: "int",
    example: "3600",
    help: "longest WebDAV lock granted",
    min: 1,
  },
  {
    key: "shutdownTimeoutSeconds",
    kind: "int",
    example: "10",
    help: "on SIGTERM, how long in-flight requests may finish before they are cut",
    min: 0,
    max: 3600,
  },
  {
    key: "upstreamConnectTimeoutSeconds",
    kind: "int",
    example: "10",
    help: "how long connecting to Cloudreve or its storage may take",
    min: 1,
    max: 600,
  },
  {
    key: "upstreamResponseTimeoutSeconds",
    kind: "int",
    example: "60",
    help: "how long Cloudreve may take to start answering a call",
    min: 1,
    max: 3600,
  },
  {
    key: "upstreamIdleTimeoutSeconds",
    kind: "int",
    example: "60",
    help: "how long a transfer from Cloudreve or its storage may stall before it is retried",
    min: 1,
    max: 3600,
  },
  {
    key: "logLevel",
    kind: "enum",
    values: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    example: "info",
    help: "log level",
  },
  {
    key: "auth",
    kind: "enum",
    values: ["users", "cloudreve"],
    example: "cloudreve",
    help: "who checks passwords: the gateway's users and htpasswd file, or Cloudreve (each signs in with their own Cloudreve email and password and sees their own drive)",
  },
  {
    key: "users",
    kind: "users",
    example: '[{"name":"me","passwordHash":"scrypt$…"}]',
    help: 'gateway users (JSON): name, passwordHash, and optionally account {email, password | refreshToken}, root "/folder", readOnly; none: loopback only',
  },
  {
    key: "htpasswd",
    kind: "string",
    example: "/etc/cloudreve-dav.htpasswd",
    help: "an Apache htpasswd file of gateway users (bcrypt, apr1 MD5 or SHA-1 entries; reread on SIGHUP)",
  },
  { key: "readOnly", kind: "bool", example: "true", help: "every write answers 403, for everyone" },
  {
    key: "trustedProxy",
    kind: "list",
    example: "10.0.0.0/8",
    help: "a reverse proxy's address or CIDR (repeatable; also loopback, linklocal, uniquelocal) whose X-Forwarded-For, -Proto and -Host are believed",
  },
  {
    key: "baseUrl",
    kind: "string",
    example: "/dav",
    help: "the URL path WebDAV is served under",
    pattern: /^\/[^?#]*$/,
    shape: 'a path starting with "/"',
  },
  {
    key: "tlsCert",
    kind: "string",
    example: "/etc/cloudreve-dav/cert.pem",
    help: "PEM certificate (chain): serve HTTPS (reloaded on SIGHUP)",
  },
  {
    key: "tlsKey",
    kind: "string",
    example: "/etc/cloudreve-dav/key.pem",
    help: "PEM private key of --tls-cert",
  },
  {
    key: "redis",
    kind: "string",
    example: "redis://127.0.0.1:6379",
    help: "Redis shared by several gateway instances serving the same drives: WebDAV locks and cache invalidations (none: this process alone)",
    pattern: /^rediss?:\/\//i,
    shape: "a redis:// or rediss:// URL",
  },
  {
    key: "workers",
    kind: "int",
    example: "4",
    help: "gateway processes sharing the port on this machine (locks and change notices shared through the first process, or --redis); metrics are off with more than 1",
    min: 1,
    max: 64,
  },
  {
    key: "accountIdleSeconds",
    kind: "int",
    example: "900",
    help: "an upstream account unused this long releases its connections, cache and event stream",
    min: 1,
  },
  {
    key: "metricsListen",
    kind: "string",
    example: "127.0.0.1:9464",
    help: 'where Prometheus metrics are served (GET /metrics, no sign-in: keep it private), "off" for none',
    pattern:
      /^(?:off|(?:\[[0-9A-Fa-f:.]+\]|[^\s:[\]/]+):(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4}))$/,
    shape: 'HOST:PORT (an IPv6 host in brackets) or "off"',
  },
];

export function defaults(): Config {
  const stateHome = process.env.XDG_STATE_HOME ?? join(homedir(), ".local", "state");
  return {
    upstream: undefined,
    email: undefined,
    password: undefined,
    refreshToken: undefined,
    stateDir: join(stateHome, "cloudreve-dav"),
    host: "127.0.0.1",
    port: 8080,
    rootUri: "cloudreve://my/",
    cacheTtlSeconds: 30,
    cacheTtlWithEventsSeconds: 600,
    cacheMaxEntries: 50_000,
    directUploadMaxBytes: 4 * 1024 * 1024,
    concurrency: 8,
    permanentDelete: false,
    downloadMode: "proxy",
    appleDouble: "upload",
    lockTimeoutMaxSeconds: 3600,
    shutdownTimeoutSeconds: 10,
    upstreamConnectTimeoutSeconds: 10,
    upstreamResponseTimeoutSeconds: 60,
    upstreamIdleTimeoutSeconds: 60,
    logLevel: "info",
    auth: "users",
    users: [],
    htpasswd: undefined,
    readOnly: false,
    trustedProxy: [],
    baseUrl: "",
    tlsCert: undefined,
    tlsKey: undefined,
    accountIdleSeconds: 900,
    redis: undefined,
    workers: 1,
    metricsListen: "127.0.0.1:9464",
  };
}

/** A bad or missing setting: the message names the key, what is wrong and an example. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

const flagOf = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
const envOf = (key: string) =>
  `CLOUDREVE_DAV_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

/** Where a value came from, so that the message and its example speak the same language. */
type Source =
  { kind: "flag" } | { kind: "env" } | { kind: "file"; file: string } | { kind: "settings" };

function describe(s: Setting, source: Source): string {
  switch (source.kind) {
    case "flag":
      return flagOf(s.key);
    case "env":
      return `environment ${envOf(s.key)}`;
    case "file":
      return `config file ${source.file}`;
    case "settings":
      return "settings";
  }
}

/** An example of a good value, written the way the bad one was given. */
function exampleOf(s: Setting, source: Source): string {
  const json = () => {
    if (s.kind === "int") return s.example;
    if (s.kind === "bool" || s.kind === "users") return s.example;
    if (s.kind === "list") return JSON.stringify([s.example]);
    return JSON.stringify(s.example);
  };
  switch (source.kind) {
    case "env":
      return `${envOf(s.key)}=${s.kind === "users" ? `'${s.example}'` : s.example}`;
    case "file":
      return `"${s.key}": ${json()}`;
    default:
      return s.kind === "users"
        ? `"users": ${s.example} in the config file, or ${envOf(s.key)}='${s.example}'`
        : `${flagOf(s.key)}${s.kind === "bool" ? "" : ` ${s.example}`}`;
  }
}

function fail(s: Setting, source: Source, problem: string): never {
  throw new ConfigError(
    `${s.key} (${describe(s, source)}): ${problem}. Example: ${exampleOf(s, source)}`,
  );
}

const SCRYPT_HASH = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$/;

const USER_FIELDS = new Set(["name", "passwordHash", "account", "root", "readOnly"]);
const ACCOUNT_FIELDS = new Set(["email", "password", "refreshToken"]);

/** One entry of `users`, checked field by field; `fail` gets the problem after the entry number. */
function userOf(raw: unknown, fail: (problem: string) => never): GatewayUser {
  const u = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const { name, passwordHash, account, root, readOnly } = u;
  if (typeof name !== "string" || name === "" || name.includes(":"))
    fail(': name must be a non-empty string without ":"');
  const problem: (what: string) => never = (what) => fail(` (${name}): ${what}`);
  const extra = Object.keys(u).find((k) => !USER_FIELDS.has(k));
  if (extra) problem(`unknown field "${extra}"`);
  const user: GatewayUser = { name };
  if (passwordHash !== undefined) {
    if (typeof passwordHash !== "string" || !SCRYPT_HASH.test(passwordHash))
      problem(
        "passwordHash must be a scrypt hash printed by `cloudreve-dav hash-password`, never the password itself",
      );
    user.passwordHash = passwordHash;
  }
  if (account !== undefined) {
    const a = (typeof account === "object" && account !== null ? account : {}) as Record<
      string,
      unknown
    >;
    const odd = Object.keys(a).find((k) => !ACCOUNT_FIELDS.has(k) || typeof a[k] !== "string");
    if (typeof account !== "object" || account === null || odd)
      problem(`account must be {"email": …, "password": …} or {"refreshToken": …}`);
    if (!a.refreshToken && !(a.email && a.password))
      problem("account needs an email and a password, or a refresh token");
    user.account = a as AccountCredentials;
  }
  if (root !== undefined) {
    const segments = typeof root === "string" ? root.split("/").filter(Boolean) : [];
    if (
      typeof root !== "string" ||
      !root.startsWith("/") ||
      segments.some((x) => /^\.\.?$/.test(x))
    )
      problem(`root must be a folder path such as "/Family/${name}"`);
    user.root = `/${segments.join("/")}`;
  }
  if (readOnly !== undefined) {
    if (typeof readOnly !== "boolean") problem("readOnly must be true or false");
    user.readOnly = readOnly;
  }
  return user;
}

/** The JSON type each kind of setting takes in the config file. */
const JSON_TYPE: Record<Kind, "string" | "number" | "boolean" | "array"> = {
  string: "string",
  url: "string",
  int: "number",
  bool: "boolean",
  enum: "string",
  users: "array",
  list: "array",
};

const jsonTypeOf = (value: unknown) =>
  Array.isArray(value) ? "array" : value === null ? "null" : typeof value;

/** Reads one value of a setting from text (flags, environment) or JSON (the config file). */
function convert(s: Setting, raw: unknown, source: Source): Config[keyof Config] {
  const text = typeof raw === "string" ? raw.trim() : raw;
  const got = JSON.stringify(raw) ?? String(raw);
  // Flags and the environment can only spell a value as text; in JSON, "yes" or "8080" in
  // quotes is a mistake (a typed value was meant, or a string was put in the wrong key).
  if (source.kind === "file" && jsonTypeOf(raw) !== JSON_TYPE[s.kind])
    fail(s, source, `must be a JSON ${JSON_TYPE[s.kind]}, got ${got}`);
  switch (s.kind) {
    case "string":
      if (typeof text !== "string" || text === "")
        fail(s, source, `must be a non-empty string, got ${got}`);
      if (s.pattern && !s.pattern.test(text)) fail(s, source, `must be ${s.shape}, got ${got}`);
      return text;
    case "url": {
      if (typeof text !== "string" || text === "") fail(s, source, `must be a URL, got ${got}`);
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        fail(s, source, `${got} is not a URL`);
      }
      if (url.protocol !== "http:" && url.protocol !== "https:")
        fail(s, source, `must start with http:// or https://, got ${got}`);
      if (url.username || url.password)
        fail(s, source, "must not carry credentials: give them as email and password");
      if (url.search || url.hash) fail(s, source, `must not have a query or fragment, got ${got}`);
      return url.toString().replace(/\/+$/, "");
    }
    case "int": {
      const n =
        typeof text === "number"
          ? text
          : typeof text === "string" && /^\d+$/.test(text)
            ? Number(text)
            : NaN;
      const inRange = Number.isInteger(n) && n >= (s.min ?? -Infinity) && n <= (s.max ?? Infinity);
      if (!inRange) {
        const range = s.max !== undefined ? `from ${s.min} to ${s.max}` : `of at least ${s.min}`;
        fail(s, source, `must be an integer ${range}, got ${got}`);
      }
      return n;
    }
    case "bool":
      if (typeof text === "boolean") return text;
      if (typeof text === "string") {
        const word = text.toLowerCase();
        if (["true", "1", "yes", "on"].includes(word)) return true;
        if (["false", "0", "no", "off"].includes(word)) return false;
      }
      fail(s, source, `must be true or false, got ${got}`);
      break;
    case "enum":
      if (typeof text !== "string" || !s.values!.includes(text)) {
        fail(s, source, `must be one of ${s.values!.join(", ")}, got ${got}`);
      }
      return text;
    case "users": {
      let value = text;
      if (typeof value === "string") {
        try {
          value = JSON.parse(value);
        } catch {
          fail(s, source, "must be a JSON array of {name, passwordHash}");
        }
      }
      if (!Array.isArray(value)) fail(s, source, "must be an array of {name, passwordHash}");
      const names = new Set<string>();
      return value.map((u: unknown, i) => {
        const user = userOf(u, (problem) => fail(s, source, `entry ${i}${problem}`));
        if (names.has(user.name))
          fail(s, source, `entry ${i}: the name "${user.name}" is repeated`);
        names.add(user.name);
        return user;
      });
    }
    case "list": {
      // Repeated flags come as an array, the environment as one comma-separated string.
      const items = typeof text === "string" ? text.split(",") : text;
      if (!Array.isArray(items)) fail(s, source, `must be a list of strings, got ${got}`);
      return items.map((item: unknown) => {
        if (typeof item !== "string" || item.trim() === "")
          fail(s, source, `must be a list of non-empty strings, got ${got}`);
        const entry = item.trim();
        try {
          proxyaddr.compile(entry);
        } catch {
          fail(s, source, `"${entry}" is not an IP address, a CIDR range or a known name`);
        }
        return entry;
      });
    }
  }
  return undefined;
}

export interface LoadedConfig {
  config: Config;
  /** Positional arguments (e.g. the `hash-password` command). */
  positionals: string[];
  help: boolean;
  version: boolean;
}

/** The config file's path: --config, else CLOUDREVE_DAV_CONFIG. */
const CONFIG_ENV = "CLOUDREVE_DAV_CONFIG";

function readConfigFile(file: string): Record<string, unknown> {
  const example = `Example: --config /etc/cloudreve-dav.json, laid out like config.example.json`;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(
      `config (config file ${file}): cannot be read (${e.code ?? e.message}). ${example}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(
      `config (config file ${file}): is not valid JSON (${(err as Error).message}). ${example}`,
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ConfigError(
      `config (config file ${file}): must hold a JSON object of settings. Example: {"port": 8080}`,
    );
  }
  return json as Record<string, unknown>;
}

/** The closest known key, for "did you mean". */
function nearest(key: string): string | undefined {
  const plain = (k: string) => k.toLowerCase().replace(/[-_]/g, "");
  const wanted = plain(key);
  const exact = SETTINGS.find((s) => plain(s.key) === wanted);
  if (exact) return exact.key;
  // A typo: at most two letters wrong, missing, extra or swapped.
  return SETTINGS.find((s) => editDistance(plain(s.key), wanted) <= 2)?.key;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** parseArgs' complaint, told in the words of the settings. */
function argumentError(err: Error & { code?: string }): ConfigError {
  const flag = /'(--?[^' =]+)/.exec(err.message)?.[1] ?? "";
  const s = SETTINGS.find(
    (x) => flagOf(x.key) === flag || `--no-${flagOf(x.key).slice(2)}` === flag,
  );
  const help = "Run with --help for the settings.";
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const guess = nearest(flag.replace(/^-+/, ""));
    return new ConfigError(
      `${flag}: unknown flag${guess ? ` (did you mean ${flagOf(guess)}?)` : ""}. ${help}`,
    );
  }
  if (s && s.kind === "bool") {
    return new ConfigError(
      `${s.key} (${flag}): takes no value. Example: ${flagOf(s.key)} or --no-${flagOf(s.key).slice(2)}`,
    );
  }
  if (s && /ambiguous/.test(err.message)) {
    return new ConfigError(
      `${s.key} (${flag}): a value starting with "-" must be joined with "=", as in ${flag}=-1. Example: ${flag} ${s.example}`,
    );
  }
  if (s) return new ConfigError(`${s.key} (${flag}): needs a value. Example: ${flag} ${s.example}`);
  if (flag === "--config") {
    return new ConfigError(
      `config (--config): needs a file. Example: --config /etc/cloudreve-dav.json`,
    );
  }
  return new ConfigError(`${err.message} ${help}`);
}

/**
 * Flags > environment > config file > defaults. Throws ConfigError with the key, problem and an
 * example. `--help`, `--version` and commands (`hash-password`) skip the settings: they do not
 * need them. `login` reads them but not the rules of serving.
 */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const options: Record<
    string,
    { type: "string" | "boolean"; multiple?: boolean; short?: string }
  > = {
    config: { type: "string" },
    help: { type: "boolean", short: "h" },
    version: { type: "boolean", short: "v" },
  };
  for (const s of SETTINGS) {
    options[flagOf(s.key).slice(2)] = {
      type: s.kind === "bool" ? "boolean" : "string",
      multiple: s.kind === "list",
    };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options,
      allowPositionals: true,
      allowNegative: true,
      strict: true,
    });
  } catch (err) {
    throw argumentError(err as Error & { code?: string });
  }
  const config = defaults();
  const help = Boolean(parsed.values.help);
  const version = Boolean(parsed.values.version);
  // `login` reads the settings naming the account, free of the rules of serving.
  const login = parsed.positionals[0] === "login";
  if (help || version || (parsed.positionals.length > 0 && !login)) {
    return { config, positionals: parsed.positionals, help, version };
  }
  const set = (s: Setting, raw: unknown, source: Source) => {
    (config as unknown as Record<string, unknown>)[s.key] = convert(s, raw, source);
  };

  const fileFlag = parsed.values.config;
  if (fileFlag === "" || (fileFlag === undefined && env[CONFIG_ENV] === "")) {
    throw new ConfigError(
      `config (${fileFlag === "" ? "--config" : `environment ${CONFIG_ENV}`}): must name a file. Example: --config /etc/cloudreve-dav.json`,
    );
  }
  const file = (fileFlag as string | undefined) ?? env[CONFIG_ENV];
  if (file) {
    const json = readConfigFile(file);
    for (const key of Object.keys(json)) {
      if (key.startsWith("$") || key.startsWith("//")) continue; // $schema, comments
      const s = SETTINGS.find((x) => x.key === key);
      if (!s) {
        const guess = nearest(key);
        throw new ConfigError(
          `${key} (config file ${file}): unknown key${guess ? ` (did you mean "${guess}"?)` : ""}. Known keys: ${SETTINGS.map((x) => x.key).join(", ")}. Example: "port": 8080`,
        );
      }
      set(s, json[key], { kind: "file", file });
    }
  }
  for (const s of SETTINGS) {
    const value = env[envOf(s.key)];
    if (value !== undefined) set(s, value, { kind: "env" });
  }
  for (const s of SETTINGS) {
    const value = parsed.values[flagOf(s.key).slice(2)];
    if (value !== undefined) set(s, value, { kind: "flag" });
  }
  if (!login) check(config);
  return { config, positionals: parsed.positionals, help, version };
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"]);
export const isLoopback = (host: string) =>
  LOOPBACK.has(host.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(host);

/** Signing in is required: the gateway's users, an htpasswd file, or Cloudreve's own logins. */
export const requiresSignIn = (config: Config) =>
  config.auth === "cloudreve" || config.users.length > 0 || config.htpasswd !== undefined;

/** Rules between settings. */
function check(config: Config): void {
  // "/dav/" and "/dav" serve the same; "/" is no prefix at all.
  config.baseUrl = config.baseUrl.replace(/\/+$/, "");
  if (
    config.baseUrl.split("/").some((segment) => /^(\.|\.\.|%2e|%2e%2e|\.%2e|%2e\.)$/i.test(segment))
  ) {
    throw new ConfigError(
      `baseUrl: ${config.baseUrl} has a "." or ".." segment. Example: --base-url /dav`,
    );
  }
  if (config.auth === "cloudreve") checkCloudreveSignIn(config);
  else checkGatewaySignIn(config);
  if (!config.upstream) {
    const given = (["email", "password", "refreshToken"] as const).find((k) => config[k]);
    if (given) {
      throw new ConfigError(
        `upstream: ${given} is set but upstream is not, so there is no Cloudreve to log in to (without both, demo mode runs). Example: --upstream https://pan.example.com`,
      );
    }
  }
  if (!requiresSignIn(config) && !isLoopback(config.host)) {
    throw new ConfigError(
      `host: ${config.host} is not a loopback address and no gateway users are configured, so anyone on the network could use the drive. Add users (hashes from \`cloudreve-dav hash-password\`), an htpasswd file or --auth cloudreve, or listen on loopback. Example: CLOUDREVE_DAV_USERS='[{"name":"me","passwordHash":"scrypt$…"}]', or --host 127.0.0.1`,
    );
  }
  if (config.redis && config.appleDouble === "local") {
    throw new ConfigError(
      `appleDouble: "local" keeps Finder's ._* files on this instance's disk, which other instances sharing Redis cannot see. Example: --apple-double upload (or run without --redis)`,
    );
  }
  if (config.workers > 1 && config.appleDouble === "local") {
    throw new ConfigError(
      `appleDouble: "local" keeps Finder's ._* files in one process, which the other workers do not see. Example: --apple-double upload (or --workers 1)`,
    );
  }
  if (config.workers > 1 && !config.upstream) {
    // Demo mode's emulator keeps the drive in one process's memory.
    throw new ConfigError(
      `workers: demo mode (no upstream) runs in one process. Example: --upstream https://pan.example.com --workers ${config.workers}, or --workers 1`,
    );
  }
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    const missing = config.tlsCert === undefined ? "tlsCert" : "tlsKey";
    throw new ConfigError(
      `${missing}: HTTPS needs both a certificate and its key. Example: --tls-cert /etc/cloudreve-dav/cert.pem --tls-key /etc/cloudreve-dav/key.pem`,
    );
  }
}

/** Someone works in the gateway's own account: every user who does not name another. */
export const needsOwnAccount = (config: Config) =>
  config.auth === "users" &&
  (config.users.length === 0 ||
    config.htpasswd !== undefined ||
    config.users.some((u) => !u.account));

function checkGatewaySignIn(config: Config): void {
  const needsOwn = needsOwnAccount(config);
  // An email alone will do when `cloudreve-dav login` saved a session for it. Whether it did is
  // learnt at the first sign-in (at start), which names the fix: a session can be revoked any
  // time, so a file found here could still be useless.
  if (config.upstream && needsOwn && !config.refreshToken && !config.email) {
    throw new ConfigError(
      `email: upstream is set but there are no credentials for it. Give an email and a password (or a session saved by \`cloudreve-dav login\`), or a refresh token (or an account for every user). Example: --email me@example.com --password secret (or --refresh-token …)`,
    );
  }
  const withoutPassword = config.users.find((u) => !u.passwordHash);
  if (withoutPassword && config.htpasswd === undefined) {
    throw new ConfigError(
      `users: "${withoutPassword.name}" has no passwordHash and there is no htpasswd file to hold it. Example: "passwordHash": "scrypt$…" from \`cloudreve-dav hash-password\`, or --htpasswd /etc/cloudreve-dav.htpasswd`,
    );
  }
  if (!config.upstream && config.users.some((u) => u.account)) {
    throw new ConfigError(
      `users: an account is named but upstream is not set (demo mode has one account). Example: --upstream https://pan.example.com`,
    );
  }
}

function checkCloudreveSignIn(config: Config): void {
  const why =
    "with --auth cloudreve each user signs in with their own Cloudreve email and password";
  const own = (["email", "password", "refreshToken", "htpasswd"] as const).find((k) => config[k]);
  if (own) {
    throw new ConfigError(
      `${own}: ${why}, so the gateway has no ${own === "htpasswd" ? "password file" : "account"} of its own. Example: --auth cloudreve --upstream https://pan.example.com`,
    );
  }
  const odd = config.users.find((u) => u.passwordHash || u.account);
  if (odd) {
    throw new ConfigError(
      `users: "${odd.name}" has a ${odd.passwordHash ? "passwordHash" : "account"}, but ${why}; a user entry there only sets root and readOnly. Example: [{"name":"me@example.com","readOnly":true}]`,
    );
  }
}

/**
 * The command to name in hints: `npm start --` when run by `npm start` in a checkout (npm sets
 * npm_lifecycle_event), else the installed `cloudreve-dav`.
 */
export const commandName = (env: NodeJS.ProcessEnv = process.env) =>
  env.npm_lifecycle_event === "start" ? "npm start --" : "cloudreve-dav";

function shown(value: Config[keyof Config]): string {
  if (value === undefined) return "";
  if (Array.isArray(value)) return value.length === 0 ? "none" : `${value.length}`;
  return String(value);
}

export function usage(): string {
  const d = defaults();
  const rows = SETTINGS.flatMap((s) => {
    const value = shown(d[s.key]);
    const flag =
      s.kind === "bool" ? `${flagOf(s.key)}, --no-${flagOf(s.key).slice(2)}` : flagOf(s.key);
    return [
      `  ${s.key}`,
      `      ${flag}   ${envOf(s.key)}`,
      `      ${s.help}${value ? ` (default: ${value})` : ""}`,
    ];
  });
  const cmd = commandName();
  const commands: [string, string][] = [
    [`${cmd} [--config FILE] [settings]`, "serve a Cloudreve drive over WebDAV"],
    [`${cmd} hash-password`, "print a password hash for a gateway user"],
    ["", "(reads the password from standard input)"],
    [`${cmd} login [settings]`, "sign in to Cloudreve (captcha, 2FA) and keep the session"],
    ["", "for the gateway, which then needs no password"],
    [`${cmd} --version, -v`, "print the version"],
    [`${cmd} --help, -h`, "print this help"],
  ];
  const width = Math.max(...commands.map(([command]) => command.length)) + 3;
  return [
    ...commands.map(
      ([command, what], i) => `${i === 0 ? "usage: " : "       "}${command.padEnd(width)}${what}`,
    ),
    "",
    "Precedence: flags > environment variables > config file > defaults.",
    "With no upstream, demo mode runs an emulated Cloudreve in-process.",
    "",
    `  config`,
    `      --config FILE   ${CONFIG_ENV}`,
    `      a JSON file with any of the settings below, by key (see config.example.json)`,
    "",
    "settings (config file key, then flag and environment variable):",
    ...rows,
  ].join("\n");
}
