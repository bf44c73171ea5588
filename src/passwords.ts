import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import apacheMd5Module from "apache-md5";
import bcrypt from "bcryptjs";
import type { GatewayUser } from "./config.js";

// The package is CommonJS whose module.exports is the function; its typings claim an ES default.
const apacheMd5 = apacheMd5Module as unknown as (password: string, salt: string) => string;

/** scrypt's N, r and p for new hashes; a stored hash carries its own. */
const COST = 16384;
const BLOCK_SIZE = 8;
const PARALLELISM = 1;
const KEY_LENGTH = 32;

function derive(
  password: string,
  salt: Buffer,
  cost: number,
  blockSize: number,
  parallelism: number,
): Promise<Buffer> {
  const options = { N: cost, r: blockSize, p: parallelism, maxmem: 128 * cost * blockSize * 2 };
  return new Promise((resolve, reject) =>
    scrypt(password, salt, KEY_LENGTH, options, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** `scrypt$N$r$p$<salt base64>$<hash base64>`: the format `cloudreve-dav hash-password` prints. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, COST, BLOCK_SIZE, PARALLELISM);
  return `scrypt$${COST}$${BLOCK_SIZE}$${PARALLELISM}$${salt.toString("base64")}$${key.toString("base64")}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, cost, blockSize, parallelism, salt, hash] = stored.split("$");
  if (scheme !== "scrypt" || !salt || !hash) return false;
  const expected = Buffer.from(hash, "base64");
  const key = await derive(
    password,
    Buffer.from(salt, "base64"),
    Number(cost),
    Number(blockSize),
    Number(parallelism),
  );
  return key.length === expected.length && timingSafeEqual(key, expected);
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The htpasswd schemes worth accepting: bcrypt (`htpasswd -B`), Apache's MD5 (`htpasswd`'s
 * default) and SHA-1 (`-s`). crypt(3) and plain text are refused when the file is read: one
 * is weak and platform-bound, the other is no hash at all.
 */
const HTPASSWD_SCHEMES: readonly {
  test: RegExp;
  verify: (password: string, hash: string) => Promise<boolean>;
}[] = [
  { test: /^\$2[aby]\$\d\d\$/, verify: (password, hash) => bcrypt.compare(password, hash) },
  {
    test: /^\$apr1\$/,
    verify: async (password, hash) => sameText(apacheMd5(password, hash), hash),
  },
  {
    test: /^\{SHA\}/,
    verify: async (password, hash) =>
      sameText(`{SHA}${createHash("sha1").update(password).digest("base64")}`, hash),
  },
];

export class HtpasswdError extends Error {
  override name = "HtpasswdError";
}

/** Reads an htpasswd file: `name:hash` per line; blank lines and `#` comments are skipped. */
export async function readHtpasswd(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new HtpasswdError(`htpasswd file ${file} cannot be read (${e.code ?? e.message})`);
  }
  const entries = new Map<string, string>();
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    const hash = line.slice(colon + 1).trim();
    if (colon <= 0 || !HTPASSWD_SCHEMES.some((s) => s.test.test(hash))) {
      throw new HtpasswdError(
        `htpasswd file ${file}, line ${i + 1}: ${colon <= 0 ? "not name:hash" : `the entry of "${name}" is not bcrypt, apr1 MD5 or SHA-1`}. Make it with \`htpasswd -B ${file} ${colon > 0 ? name : "NAME"}\``,
      );
    }
    entries.set(name, hash);
  });
  return entries;
}

/**
 * The gateway's own users: scrypt hashes from the settings, then the htpasswd file. Every
 * attempt costs a hash, known name or not, so timing does not tell which names exist.
 */
export class LocalPasswords {
  constructor(
    private readonly users: readonly GatewayUser[],
    private htpasswd: ReadonlyMap<string, string> = new Map(),
  ) {}

  /** The file was read again (SIGHUP). */
  replaceHtpasswd(entries: ReadonlyMap<string, string>): void {
    this.htpasswd = entries;
  }

  async verify(name: string, password: string): Promise<boolean> {
    const own = this.users.find((u) => u.name === name)?.passwordHash;
    if (own) return verifyPassword(password, own);
    const listed = this.htpasswd.get(name);
    const scheme = listed && HTPASSWD_SCHEMES.find((s) => s.test.test(listed));
    if (listed && scheme) return scheme.verify(password, listed);
    await verifyPassword(password, DUMMY_HASH);
    return false;
  }
}

const DUMMY_HASH = `scrypt$${COST}$${BLOCK_SIZE}$${PARALLELISM}$${Buffer.alloc(16).toString("base64")}$${Buffer.alloc(KEY_LENGTH).toString("base64")}`;
