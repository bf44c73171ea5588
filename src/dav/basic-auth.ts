import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { GatewayUser } from "../config.js";

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

/** Failed logins per client address: after MAX_FAILURES within WINDOW_MS, refuse until it passes. */
const MAX_FAILURES = 10;
const WINDOW_MS = 60_000;

export type AuthOutcome = { ok: true; user: string } | { ok: false; throttled: boolean };

/**
 * HTTP Basic authentication against the configured users. Verified credentials are
 * remembered by a digest of the header (never the header itself), so a client sending them
 * with every request costs one scrypt, not one per request.
 */
export class BasicAuth {
  private readonly failures = new Map<string, { count: number; since: number }>();
  private readonly verified = new Map<string, string>();

  constructor(
    private readonly users: readonly GatewayUser[],
    private readonly now: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.users.length > 0;
  }

  async check(req: IncomingMessage): Promise<AuthOutcome> {
    const address = req.socket.remoteAddress ?? "";
    const record = this.failures.get(address);
    if (record && this.now() - record.since > WINDOW_MS) this.failures.delete(address);
    else if (record && record.count >= MAX_FAILURES) return { ok: false, throttled: true };

    const header = req.headers.authorization ?? "";
    const digest = createHash("sha256").update(header).digest("base64");
    const known = this.verified.get(digest);
    if (known) return { ok: true, user: known };
    const user = await this.verify(header);
    if (user) {
      if (this.verified.size > 1000) this.verified.clear();
      this.verified.set(digest, user);
      return { ok: true, user };
    }
    if (header) {
      const failures = this.failures.get(address) ?? { count: 0, since: this.now() };
      failures.count++;
      this.failures.set(address, failures);
    }
    return { ok: false, throttled: false };
  }

  private async verify(header: string): Promise<string | undefined> {
    if (!header.toLowerCase().startsWith("basic ")) return undefined;
    const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return undefined;
    const name = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const user = this.users.find((u) => u.name === name);
    // Unknown names cost a hash too, so timing does not tell which names exist.
    const ok = await verifyPassword(password, user?.passwordHash ?? DUMMY_HASH);
    return ok && user ? user.name : undefined;
  }
}

const DUMMY_HASH = `scrypt$${COST}$${BLOCK_SIZE}$${PARALLELISM}$${Buffer.alloc(16).toString("base64")}$${Buffer.alloc(KEY_LENGTH).toString("base64")}`;
