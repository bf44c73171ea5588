import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";
import type { GatewayError } from "../errors.js";
import { CredentialInvalid, LoginRejected } from "../errors.js";
import { LoginResponseSchema, TokenSchema, timestampToEpochMs, type Token } from "./types.js";

/** How one call without a bearer token is made (the client's raw envelope call). */
export type UnauthenticatedCall = <T>(
  path: string,
  body: unknown,
  schema: z.ZodType<T>,
) => Promise<T>;

export interface Credentials {
  email?: string;
  password?: string;
  /** A refresh token from a logged-in session: the way in for accounts with captcha or 2FA. */
  refreshToken?: string;
  /** Where the token pair is kept between runs (written with mode 0600). */
  stateFile?: string;
}

export interface AuthOptions {
  /** Refresh this long before access_expires. Default 5 minutes (the frontend uses 10). */
  refreshMarginMs?: number;
  /** After a refused login, fail fast for this long instead of asking the upstream again. */
  failureCooldownMs?: number;
  now?: () => number;
}

const StateFileSchema = z.object({ email: z.string().optional(), token: TokenSchema });

interface Pair {
  access: string;
  refresh: string;
  accessExpiresAt: number;
  refreshExpiresAt: number;
  /** When this client got the pair (or read it from the state file). */
  obtainedAt: number;
}

const toPair = (t: Token, obtainedAt: number): Pair => ({
  access: t.access_token,
  refresh: t.refresh_token,
  accessExpiresAt: timestampToEpochMs(t.access_expires),
  refreshExpiresAt: timestampToEpochMs(t.refresh_expires),
  obtainedAt,
});

/**
 * Keeps one account's token pair fresh. Renewal is single-flight (concurrent callers share one
 * refresh), proactive (before access_expires), falls back from a dead refresh token to the
 * password, and fails closed: a refused login is remembered for a cooldown so that a burst of
 * requests cannot become a burst of logins.
 */
export class Authenticator {
  private pair: Pair | undefined;
  private token: Token | undefined;
  private renewing: Promise<Pair> | undefined;
  private failure: { error: GatewayError; until: number } | undefined;
  private loaded = false;
  private readonly margin: number;
  private readonly cooldown: number;
  private readonly now: () => number;

  constructor(
    private readonly credentials: Credentials,
    private readonly call: UnauthenticatedCall,
    options: AuthOptions = {},
  ) {
    this.margin = options.refreshMarginMs ?? 5 * 60_000;
    this.cooldown = options.failureCooldownMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  /** A usable access token, renewing it first when it is missing or about to expire. */
  async accessToken(): Promise<string> {
    await this.load();
    const pair = this.pair;
    if (pair) {
      // A server whose access TTL is shorter than the margin (access_token_ttl is a setting)
      // would otherwise cost a refresh per call: renew at half the lifetime at the latest.
      const lifetime = pair.accessExpiresAt - pair.obtainedAt;
      const margin = Math.max(0, Math.min(this.margin, lifetime / 2));
      if (pair.accessExpiresAt - margin > this.now()) return pair.access;
    }
    return (await this.renew()).access;
  }

  /**
   * The upstream ran a call with `used` as anonymous (401): the token died early (revoked,
   * server secret rotated, clock skew). Renew once unless another caller already did.
   */
  async rejected(used: string): Promise<string> {
    if (this.pair && this.pair.access !== used) return this.pair.access;
    this.pair = this.pair && { ...this.pair, accessExpiresAt: 0 };
    return (await this.renew()).access;
  }

  /** The current pair, e.g. for sign-out. */
  get current(): Token | undefined {
    return this.token;
  }

  private renew(): Promise<Pair> {
    this.renewing ??= this.renewOnce().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  private async renewOnce(): Promise<Pair> {
    if (this.failure && this.failure.until > this.now()) throw this.failure.error;
    try {
      const token = await this.obtain();
      this.token = token;
      this.pair = toPair(token, this.now());
      this.failure = undefined;
      await this.save(token);
      return this.pair;
    } catch (err) {
      if (err instanceof LoginRejected || err instanceof CredentialInvalid) {
        this.failure = { error: err, until: this.now() + this.cooldown };
      }
      throw err;
    }
  }

  /** Refresh token first (no password needed, no login notification), password second. */
  private async obtain(): Promise<Token> {
    const refresh = this.pair?.refresh ?? this.credentials.refreshToken;
    const refreshAlive = !this.pair || this.pair.refreshExpiresAt > this.now();
    let refreshError: GatewayError | undefined;
    if (refresh && refreshAlive) {
      try {
        return await this.call("/session/token/refresh", { refresh_token: refresh }, TokenSchema);
      } catch (err) {
        if (!(err instanceof CredentialInvalid)) throw err;
        refreshError = err;
      }
    }
    const { email, password } = this.credentials;
    if (!email || !password) {
      throw (
        refreshError ??
        new CredentialInvalid(
          "no usable credentials: configure an email and password or a refresh token",
        )
      );
    }
    const reply = await this.call("/session/token", { email, password }, LoginReplySchemaData);
    if (typeof reply === "string") {
      throw new LoginRejected(
        "the account has two-factor authentication on: log in once in a browser and configure " +
          "the refresh token instead of the password",
      );
    }
    return reply.token;
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    const file = this.credentials.stateFile;
    if (!file) return;
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      return; // first run
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return; // a torn or hand-edited file: log in afresh, the next save replaces it
    }
    const parsed = StateFileSchema.safeParse(json);
    // A state file of another account (the email changed in the config) is not ours to use.
    if (!parsed.success || (parsed.data.email ?? "") !== (this.credentials.email ?? "")) return;
    this.token = parsed.data.token;
    this.pair = toPair(parsed.data.token, this.now());
  }

  private async save(token: Token): Promise<void> {
    const file = this.credentials.stateFile;
    if (!file) return;
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ email: this.credentials.email, token }), { mode: 0o600 });
    await rename(tmp, file);
  }
}

/**
 * The data of a password login: the login response (code 0), or the 2FA session id string
 * that comes with code 203, which is not an error (§2.2).
 */
const LoginReplySchemaData = z.union([LoginResponseSchema, z.string()]);
