import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

/**
 * Every setting, its flag, its environment variable and its JSON key. Precedence:
 * flags > environment (CLOUDREVE_DAV_…) > config file (--config) > defaults.
 */
export interface GatewayUser {
  name: string;
  /** From `cloudreve-dav hash-password`: scrypt$N$r$p$salt$hash. */
  passwordHash: string;
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
  cacheMaxEntries: number;
  concurrency: number;
  permanentDelete: boolean;
  downloadMode: "proxy" | "redirect";
  lockTimeoutMaxSeconds: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  users: GatewayUser[];
}

type Kind = "string" | "url" | "int" | "bool" | "enum" | "users";

interface Setting {
  key: keyof Config;
  kind: Kind;
  example: string;
  help: string;
  values?: readonly string[];
  min?: number;
  max?: number;
}

const SETTINGS: readonly Setting[] = [
  {
    key: "upstream",
    kind: "url",
    example: "https://pan.example.com",
    help: "Cloudreve site URL (none: demo mode)",
  },
  { key: "email", kind: "string", example: "me@example.com", help: "Cloudreve account email" },
  { key: "password", kind: "string", example: "secret", help: "Cloudreve account password" },
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
  },
  { key: "cacheTtlSeconds", kind: "int", example: "30", help: "metadata cache lifetime", min: 0 },
  { key: "cacheMaxEntries", kind: "int", example: "50000", help: "metadata cache size", min: 1 },
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
    key: "lockTimeoutMaxSeconds",
    kind: "int",
    example: "3600",
    help: "longest WebDAV lock granted",
    min: 1,
  },
  {
    key: "logLevel",
    kind: "enum",
    values: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    example: "info",
    help: "log level",
  },
  {
    key: "users",
    kind: "users",
    example: '[{"name":"me","passwordHash":"scrypt$…"}]',
    help: "gateway users (JSON); none: loopback only",
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
    cacheMaxEntries: 50_000,
    concurrency: 8,
    permanentDelete: false,
    downloadMode: "proxy",
    lockTimeoutMaxSeconds: 3600,
    logLevel: "info",
    users: [],
  };
}

export class ConfigError extends Error {}

const flagOf = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
const envOf = (key: string) =>
  `CLOUDREVE_DAV_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

function fail(s: Setting, source: string, problem: string): never {
  const how = s.kind === "users" ? `"users": ${s.example}` : `${flagOf(s.key)} ${s.example}`;
  throw new ConfigError(`${s.key} (${source}): ${problem}. Example: ${how}`);
}

/** Reads one value of a setting from text (flags, environment) or JSON (the config file). */
function convert(s: Setting, raw: unknown, source: string): Config[keyof Config] {
  const text = typeof raw === "string" ? raw.trim() : raw;
  switch (s.kind) {
    case "string":
      if (typeof text !== "string" || text === "") fail(s, source, "must be a non-empty string");
      return text;
    case "url": {
      if (typeof text !== "string") fail(s, source, "must be a URL");
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        fail(s, source, `"${text}" is not a URL`);
      }
      if (url.protocol !== "http:" && url.protocol !== "https:")
        fail(s, source, "must be http:// or https://");
      return url.toString().replace(/\/+$/, "");
    }
    case "int": {
      const n = typeof text === "number" ? text : Number(text);
      const inRange = Number.isInteger(n) && n >= (s.min ?? -Infinity) && n <= (s.max ?? Infinity);
      if (!inRange || text === "") {
        const range = s.max !== undefined ? `${s.min}–${s.max}` : `≥ ${s.min}`;
        fail(s, source, `must be an integer ${range}, got ${JSON.stringify(raw)}`);
      }
      return n;
    }
    case "bool":
      if (typeof text === "boolean") return text;
      if (text === "true" || text === "1" || text === "") return true;
      if (text === "false" || text === "0") return false;
      fail(s, source, `must be true or false, got ${JSON.stringify(raw)}`);
      break;
    case "enum":
      if (typeof text !== "string" || !s.values!.includes(text)) {
        fail(s, source, `must be one of ${s.values!.join(", ")}, got ${JSON.stringify(raw)}`);
      }
      return text;
    case "users": {
      let value = text;
      if (typeof value === "string") {
        try {
          value = JSON.parse(value);
        } catch {
          fail(s, source, "must be a JSON array");
        }
      }
      if (!Array.isArray(value)) fail(s, source, "must be an array of {name, passwordHash}");
      return value.map((u: unknown, i) => {
        const user = u as Partial<GatewayUser>;
        if (typeof user?.name !== "string" || user.name === "" || user.name.includes(":")) {
          fail(s, source, `entry ${i}: name must be a non-empty string without ":"`);
        }
        if (typeof user.passwordHash !== "string" || !user.passwordHash.startsWith("scrypt$")) {
          fail(
            s,
            source,
            `entry ${i}: passwordHash must come from \`cloudreve-dav hash-password\``,
          );
        }
        return { name: user.name, passwordHash: user.passwordHash };
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
}

/** Flags > environment > config file > defaults. Throws ConfigError with the key, problem and an example. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const options: Record<string, { type: "string" | "boolean" }> = {
    config: { type: "string" },
    help: { type: "boolean" },
  };
  for (const s of SETTINGS)
    options[flagOf(s.key).slice(2)] = { type: s.kind === "bool" ? "boolean" : "string" };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}. Run with --help for the settings.`);
  }
  const config = defaults();
  const set = (s: Setting, raw: unknown, source: string) => {
    (config as unknown as Record<string, unknown>)[s.key] = convert(s, raw, source);
  };

  const file = (parsed.values.config as string | undefined) ?? env.CLOUDREVE_DAV_CONFIG;
  if (file) {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`config file ${file}: ${(err as Error).message}`);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new ConfigError(`config file ${file}: must hold a JSON object`);
    }
    for (const key of Object.keys(json)) {
      if (key.startsWith("$") || key.startsWith("//")) continue; // $schema, comments
      const s = SETTINGS.find((x) => x.key === key);
      if (!s)
        throw new ConfigError(
          `config file ${file}: unknown key "${key}". Known keys: ${SETTINGS.map((x) => x.key).join(", ")}`,
        );
      set(s, json[key], `config file ${file}`);
    }
  }
  for (const s of SETTINGS) {
    const value = env[envOf(s.key)];
    if (value !== undefined) set(s, value, `environment ${envOf(s.key)}`);
  }
  for (const s of SETTINGS) {
    const value = parsed.values[flagOf(s.key).slice(2)];
    if (value !== undefined) set(s, value, flagOf(s.key));
  }
  check(config);
  return { config, positionals: parsed.positionals, help: Boolean(parsed.values.help) };
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);
export const isLoopback = (host: string) => LOOPBACK.has(host) || host.startsWith("127.");

/** Rules between settings. */
function check(config: Config): void {
  if (config.upstream && !config.refreshToken && !(config.email && config.password)) {
    throw new ConfigError(
      "upstream is set but there are no credentials: give email and password (--email me@example.com --password secret) or a refresh token (--refresh-token …)",
    );
  }
  if (config.users.length === 0 && !isLoopback(config.host)) {
    throw new ConfigError(
      `host ${config.host} is not a loopback address and no gateway users are configured: anyone on the network could use the drive. Add users (see \`cloudreve-dav hash-password\`) or listen on 127.0.0.1`,
    );
  }
  if (!/^cloudreve:\/\/[^/]+/i.test(config.rootUri)) {
    throw new ConfigError(
      `rootUri: must be a cloudreve:// URI, got "${config.rootUri}". Example: --root-uri cloudreve://my/`,
    );
  }
}

export function usage(): string {
  const rows = SETTINGS.map(
    (s) => `  ${flagOf(s.key).padEnd(28)} ${envOf(s.key).padEnd(40)} ${s.help}`,
  );
  return [
    "usage: cloudreve-dav [--config FILE] [settings]     serve a Cloudreve drive over WebDAV",
    "       cloudreve-dav hash-password                 print a password hash for a gateway user",
    "",
    "settings (flag, environment variable, meaning; a config file uses the camelCase key):",
    ...rows,
  ].join("\n");
}
