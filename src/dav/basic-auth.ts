import { createHmac, randomBytes } from "node:crypto";

/**
 * Checks `password` for `name`: the user signed in (the name as the gateway knows it, e.g. an
 * email in its canonical case), or undefined when refused; throws when it cannot tell (503).
 */
export type PasswordCheck = (name: string, password: string) => Promise<string | undefined>;

/**
 * Failed sign-ins per client address and name: after MAX_FAILURES within WINDOW_MS, that pair
 * is refused until the window passes, so a client guessing one user's password does not lock
 * out the same user elsewhere, nor other users at the same address. An address trying many
 * names is stopped by the larger per-address budget.
 */
const MAX_FAILURES = 10;
const MAX_FAILURES_PER_ADDRESS = 100;
const WINDOW_MS = 60_000;
/** How long a checked header is trusted before its password is checked again. */
const VERIFIED_MS = 10 * 60_000;
const MAX_VERIFIED = 1000;
const MAX_TRACKED = 10_000;

export type AuthOutcome =
  | { ok: true; user: string }
  | { ok: false; throttled: false }
  | { ok: false; throttled: true; retryAfterSeconds: number };

interface Failures {
  count: number;
  since: number;
}

/**
 * HTTP Basic authentication. A checked header is remembered, as a keyed hash (a salt of this
 * process's own, never the header or the password), for a while: a client sends the same
 * header with every request, and the check may be an scrypt or a login to Cloudreve. Checks of
 * the same header at once share one.
 */
export class BasicAuth {
  private readonly failures = new Map<string, Failures>();
  private readonly verified = new Map<string, { user: string; until: number }>();
  private readonly checking = new Map<string, Promise<string | undefined>>();
  private readonly key = randomBytes(32);

  constructor(
    private readonly check: PasswordCheck,
    private readonly now: () => number = Date.now,
  ) {}

  async authenticate(header: string | undefined, address: string): Promise<AuthOutcome> {
    const credentials = parseBasic(header ?? "");
    const name = credentials?.name ?? "";
    const blocked = this.blocked(address, name);
    if (blocked !== undefined) return { ok: false, throttled: true, retryAfterSeconds: blocked };
    if (!credentials) {
      if (header) this.fail(address, name);
      return { ok: false, throttled: false };
    }
    const digest = createHmac("sha256", this.key).update(header!).digest("base64");
    const known = this.verified.get(digest);
    if (known && known.until > this.now()) return { ok: true, user: known.user };
    let pending = this.checking.get(digest);
    if (!pending) {
      pending = this.check(credentials.name, credentials.password).finally(() =>
        this.checking.delete(digest),
      );
      this.checking.set(digest, pending);
    }
    const user = await pending;
    if (user === undefined) {
      this.fail(address, name);
      return { ok: false, throttled: false };
    }
    if (this.verified.size >= MAX_VERIFIED)
      this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(digest, { user, until: this.now() + VERIFIED_MS });
    return { ok: true, user };
  }

  /** Forgets every checked header (the password file changed). */
  forgetAll(): void {
    this.verified.clear();
  }

  /** Forgets every checked header of `user` (e.g. Cloudreve no longer takes their password). */
  forget(user: string): void {
    for (const [digest, known] of this.verified)
      if (known.user === user) this.verified.delete(digest);
  }

  /** Seconds until the pair or the address may try again; undefined when not throttled. */
  private blocked(address: string, name: string): number | undefined {
    const now = this.now();
    let until = 0;
    for (const [key, limit] of [
      [`${address}\n${name}`, MAX_FAILURES],
      [address, MAX_FAILURES_PER_ADDRESS],
    ] as const) {
      const record = this.failures.get(key);
      if (record && now - record.since >= WINDOW_MS) this.failures.delete(key);
      else if (record && record.count >= limit) until = Math.max(until, record.since + WINDOW_MS);
    }
    return until > now ? Math.ceil((until - now) / 1000) : undefined;
  }

  private fail(address: string, name: string): void {
    if (this.failures.size > MAX_TRACKED) this.forgetOldFailures();
    for (const key of [`${address}\n${name}`, address]) {
      const record = this.failures.get(key) ?? { count: 0, since: this.now() };
      record.count++;
      this.failures.set(key, record);
    }
  }

  private forgetOldFailures(): void {
    const now = this.now();
    for (const [key, record] of this.failures)
      if (now - record.since >= WINDOW_MS) this.failures.delete(key);
  }
}

function parseBasic(header: string): { name: string; password: string } | undefined {
  if (!header.toLowerCase().startsWith("basic ")) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { name: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
