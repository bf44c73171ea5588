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

/** Arms a one-shot timer and returns what cancels it. */
export type SetTimer = (fire: () => Promise<void>, delayMs: number) => () => void;

export interface AuthOptions {
  /** Refresh this long before access_expires. Default 5 minutes (the frontend uses 10). */
  refreshMarginMs?: number;
  /** After a refused login, fail fast for this long instead of asking the upstream again. */
  failureCooldownMs?: number;
  now?: () => number;
  /**
   * Told when the upstream starts refusing the credentials (once, until they work again), so
   * that the operator hears of it once rather than once per request.
   */
  onCredentialsRefused?: (error: GatewayError) => void;
  /** The background renewal's timer; tests fire it by hand instead of waiting for it. */
  setTimer?: SetTimer;
}

/** Never wake more often than this, whatever the token lifetimes or the clocks say. */
const MIN_TIMER_MS = 10_000;
/**
 * Never sleep longer than this before looking at the clock again: setTimeout counts time the
 * machine is awake, so after a suspend or a clock step a long timer would fire too late.
 */
const MAX_TIMER_MS = 60 * 60_000;
/** A failed background renewal is retried after this, doubling up to the maximum. */
const RETRY_FIRST_MS = 30_000;
const RETRY_MAX_MS = 15 * 60_000;

const unrefTimer: SetTimer = (fire, delayMs) => {
  const timer = setTimeout(() => void fire(), delayMs);
  // A pending renewal must not keep a finished process alive.
  timer.unref();
  return () => clearTimeout(timer);
};

const REFRESH_REFUSED =
  "the Cloudreve refresh token was refused (revoked or expired): run `cloudreve-dav login` " +
  "again, or sign in to Cloudreve again and configure the new refresh token, or configure the password";

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
 * When the background renewal is due: half-way through the refresh token's life, which leaves
 * the other half for retries and for a clock that is behind the server's.
 */
const renewalDue = (pair: Pair): number =>
  pair.refreshExpiresAt - (pair.refreshExpiresAt - pair.obtainedAt) / 2;

/**
 * Keeps one account's token pair fresh. Renewal is single-flight (concurrent callers share one
 * refresh), proactive (before access_expires, and before refresh_expires even when no call
 * needs a token), falls back from a dead refresh token to the password, and fails closed: a
 * refused login is remembered for a cooldown so that a burst of requests cannot become a burst
 * of logins; a refused refresh token with no password to fall back to is remembered until the
 * process restarts, as only the operator can fix it.
 */
export class Authenticator {
  private pair: Pair | undefined;
  private token: Token | undefined;
  private renewing: Promise<Pair> | undefined;
  private failure: { error: GatewayError; until: number } | undefined;
  /** The state file's read: shared, so no caller renews before the saved pair is in. */
  private loading: Promise<void> | undefined;
  /** The configured refresh token was refused, or a pair of our own superseded it. */
  private configuredTokenSpent = false;
  private cancelTimer: (() => void) | undefined;
  private failedRenewals = 0;
  private closed = false;
  private readonly margin: number;
  private readonly cooldown: number;
  private readonly now: () => number;
  private readonly onCredentialsRefused: ((error: GatewayError) => void) | undefined;
  private readonly setTimer: SetTimer;

  constructor(
    private readonly credentials: Credentials,
    private readonly call: UnauthenticatedCall,
    options: AuthOptions = {},
  ) {
    this.margin = options.refreshMarginMs ?? 5 * 60_000;
    this.cooldown = options.failureCooldownMs ?? 30_000;
    this.now = options.now ?? Date.now;
    this.onCredentialsRefused = options.onCredentialsRefused;
    this.setTimer = options.setTimer ?? unrefTimer;
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

  /** Takes a pair obtained elsewhere (a sign-in checked with this account's password). */
  async adopt(token: Token): Promise<void> {
    // Not after the state file's read: a call waiting for that read takes this pair instead.
    this.token = token;
    this.pair = toPair(token, this.now());
    this.failure = undefined;
    this.configuredTokenSpent = true;
    this.scheduleRenewal(this.pair);
    await this.save(token);
  }

  /** The current pair, e.g. for sign-out. */
  get current(): Token | undefined {
    return this.token;
  }

  /** Stops the background renewal; calls still in flight keep their token. */
  close(): void {
    this.closed = true;
    this.disarm();
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
      const pair = toPair(token, this.now());
      this.pair = pair;
      this.failure = undefined;
      this.configuredTokenSpent = true;
      this.scheduleRenewal(pair);
      await this.save(token);
      return pair;
    } catch (err) {
      if (err instanceof LoginRejected || err instanceof CredentialInvalid)
        this.credentialsRefused(err);
      throw err;
    }
  }

  /** Fail fast from now on, tell the operator once per outage, and stop renewing. */
  private credentialsRefused(error: GatewayError): void {
    // Without a password nothing changes until the operator configures a new refresh token,
    // which takes a restart: asking the upstream again would only be refused again.
    const until = this.canLogIn() ? this.now() + this.cooldown : Infinity;
    if (!this.failure) this.onCredentialsRefused?.(error);
    this.failure = { error, until };
    this.disarm();
  }

  private canLogIn(): boolean {
    return Boolean(this.credentials.email && this.credentials.password);
  }

  /** Refresh token first (no password needed, no login notification), password second. */
  private async obtain(): Promise<Token> {
    let refused: GatewayError | undefined;
    for (const refresh of this.refreshTokens()) {
      try {
        return await this.call("/session/token/refresh", { refresh_token: refresh }, TokenSchema);
      } catch (err) {
        // Only a refusal settles a token: after a network failure it is worth another try.
        if (!(err instanceof CredentialInvalid)) throw err;
        refused = err;
        if (refresh === this.credentials.refreshToken) this.configuredTokenSpent = true;
      }
    }
    const { email, password } = this.credentials;
    if (!email || !password) {
      if (!refused && !this.pair && !this.credentials.refreshToken) {
        throw new CredentialInvalid(
          email
            ? `no saved Cloudreve session for ${email} and no password: run \`cloudreve-dav login\` ` +
                "with the same upstream, email and state directory, then restart; or configure the password"
            : "no usable credentials: configure an email and password or a refresh token",
        );
      }
      throw new CredentialInvalid(REFRESH_REFUSED, { code: refused?.code, cause: refused });
    }
    return passwordLogin(this.call, email, password);
  }

  /**
   * The refresh tokens worth a try, best first: the pair's while it lives (without a password
   * to fall back to, the server's clock decides that, not ours), then the configured one until
   * it is spent. A state file outlives a refused token; the new token the operator configures
   * after that must not be shadowed by the dead one in the file.
   */
  private refreshTokens(): string[] {
    const tokens: string[] = [];
    const pair = this.pair;
    if (pair && (pair.refreshExpiresAt > this.now() || !this.canLogIn())) tokens.push(pair.refresh);
    const configured = this.credentials.refreshToken;
    if (configured && !this.configuredTokenSpent && configured !== pair?.refresh) {
      tokens.push(configured);
    }
    return tokens;
  }

  /** Arms the background renewal for a new pair, so an idle gateway keeps its refresh token. */
  private scheduleRenewal(pair: Pair): void {
    this.failedRenewals = 0;
    this.arm(renewalDue(pair) - this.now());
  }

  private arm(delayMs: number): void {
    this.disarm();
    if (this.closed) return;
    const delay = Math.min(Math.max(delayMs, MIN_TIMER_MS), MAX_TIMER_MS);
    this.cancelTimer = this.setTimer(() => this.renewInBackground(), delay);
  }

  private disarm(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }

  /** The timer's work; it never rejects, as no one awaits it. */
  private async renewInBackground(): Promise<void> {
    this.cancelTimer = undefined;
    const pair = this.pair;
    if (!pair || this.closed) return;
    const due = renewalDue(pair);
    // Woke before time: the sleep was capped, or the clock was set back.
    if (due > this.now()) return this.arm(due - this.now());
    try {
      await this.renew(); // a success arms the next renewal
    } catch (err) {
      // A refusal has stopped the renewal (credentialsRefused()); anything else is worth
      // another try while the refresh token lives, sooner as its end comes nearer.
      if (err instanceof LoginRejected || err instanceof CredentialInvalid) return;
      const backoff = Math.min(RETRY_FIRST_MS * 2 ** this.failedRenewals++, RETRY_MAX_MS);
      this.arm(Math.min(backoff, (pair.refreshExpiresAt - this.now()) / 3));
    }
  }

  private load(): Promise<void> {
    this.loading ??= this.readStateFile();
    return this.loading;
  }

  private async readStateFile(): Promise<void> {
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
    if (this.pair) return; // adopted while the file was read: newer than the file
    this.token = parsed.data.token;
    this.pair = toPair(parsed.data.token, this.now());
    this.scheduleRenewal(this.pair);
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

/** The answer to a captcha image and the ticket that came with it (§2.2). */
export interface CaptchaAnswer {
  ticket: string;
  answer: string;
}

/** Where a password login stands (§2.2): signed in, or waiting for a 2FA code for the session. */
export type LoginStep = { token: Token } | { twoFactorSession: string };

/** The first step of a login (§2.2); LoginRejected when the password or captcha is refused. */
export async function startLogin(
  call: UnauthenticatedCall,
  email: string,
  password: string,
  captcha?: CaptchaAnswer,
): Promise<LoginStep> {
  const body = captcha
    ? { email, password, ticket: captcha.ticket, captcha: captcha.answer }
    : { email, password };
  const reply = await call("/session/token", body, LoginReplySchemaData);
  return typeof reply === "string" ? { twoFactorSession: reply } : { token: reply.token };
}

/**
 * The 2FA step (§2.3): LoginRejected for a wrong code (the session stays), NotFound once the
 * session has expired (10 minutes).
 */
export async function finishTwoFactorLogin(
  call: UnauthenticatedCall,
  sessionId: string,
  otp: string,
): Promise<Token> {
  const reply = await call(
    "/session/token/2fa",
    { otp, session_id: sessionId },
    LoginResponseSchema,
  );
  return reply.token;
}

/** Logs in with a password alone; LoginRejected when refused, or when the account needs 2FA. */
export async function passwordLogin(
  call: UnauthenticatedCall,
  email: string,
  password: string,
): Promise<Token> {
  const step = await startLogin(call, email, password);
  if ("token" in step) return step.token;
  throw new LoginRejected(
    "the account has two-factor authentication on: run `cloudreve-dav login` once (the gateway " +
      "then keeps that session), or configure a refresh token instead of the password",
  );
}

/**
 * The data of a password login: the login response (code 0), or the 2FA session id string
 * that comes with code 203, which is not an error (§2.2).
 */
const LoginReplySchemaData = z.union([LoginResponseSchema, z.string()]);
