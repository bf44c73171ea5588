import { randomBytes, randomUUID } from "node:crypto";
import { jwtVerify, SignJWT } from "jose";
import { TOTP } from "otpauth";
import { ApiError, Code } from "./errors.js";
import type { User } from "./model.js";
import type { EmulatorState } from "./state.js";

/**
 * Tokens as pkg/auth/jwt.go issues them: HS256 JWTs with token_type, sub (user hashid), nbf
 * and exp; refresh tokens also carry root_token_id, which sign-out revokes. A token that does
 * not verify makes the caller anonymous rather than failing the request.
 */
export class Auth {
  private readonly secret = randomBytes(32);
  /** root_token_id → when the revocation entry expires. */
  private readonly revoked = new Map<string, number>();
  private readonly captchas = new Map<string, string>();
  private readonly twoFactor = new Map<string, { user: User; expiresAt: number }>();

  constructor(private readonly state: EmulatorState) {}

  private get now(): number {
    return this.state.clock.now();
  }

  async issue(user: User, rootTokenId: string = randomUUID()): Promise<Record<string, unknown>> {
    const { accessTtl, refreshTtl } = this.state.settings;
    const nowS = Math.floor(this.now / 1000);
    const sub = this.state.userHashId(user);
    const access = await new SignJWT({ token_type: "access", sub })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setNotBefore(nowS)
      .setExpirationTime(nowS + accessTtl)
      .sign(this.secret);
    const refresh = await new SignJWT({ token_type: "refresh", sub, root_token_id: rootTokenId })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setNotBefore(nowS)
      .setExpirationTime(nowS + refreshTtl)
      .sign(this.secret);
    return {
      access_token: access,
      refresh_token: refresh,
      access_expires: this.state.time((nowS + accessTtl) * 1000),
      refresh_expires: this.state.time((nowS + refreshTtl) * 1000),
    };
  }

  private async claims(token: string): Promise<Record<string, unknown> | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.secret, {
        algorithms: ["HS256"],
        currentDate: new Date(this.now),
      });
      return payload;
    } catch {
      return undefined;
    }
  }

  /** The caller behind an Authorization header: a user, null (anonymous), or 40020 for a refresh token. */
  async caller(header: string | undefined): Promise<User | null> {
    if (!header?.startsWith("Bearer ") || header.startsWith("Bearer Cr ")) return null;
    const claims = await this.claims(header.slice("Bearer ".length));
    if (!claims) return null;
    if (claims.token_type !== "access")
      throw new ApiError(Code.CredentialInvalid, "Invalid token type");
    return this.state.userByHashId(String(claims.sub)) ?? null;
  }

  /** A new pair from a refresh token; 40020 when it is invalid, expired or revoked. */
  async refresh(token: string): Promise<Record<string, unknown>> {
    const claims = await this.claims(token);
    const root = typeof claims?.root_token_id === "string" ? claims.root_token_id : undefined;
    const revokedUntil = root ? this.revoked.get(root) : undefined;
    const user = claims ? this.state.userByHashId(String(claims.sub)) : undefined;
    if (
      !claims ||
      claims.token_type !== "refresh" ||
      !root ||
      !user ||
      (revokedUntil ?? 0) > this.now
    ) {
      throw new ApiError(Code.CredentialInvalid, "Failed to issue token pair");
    }
    return this.issue(user, root);
  }

  /** Sign-out: every refresh token of that login dies; access tokens live on until they expire. */
  async revoke(token: string): Promise<void> {
    const claims = await this.claims(token);
    if (claims?.token_type === "refresh" && typeof claims.root_token_id === "string") {
      this.revoked.set(
        claims.root_token_id,
        this.now + (this.state.settings.refreshTtl + 10) * 1000,
      );
    }
  }

  newCaptcha(): { ticket: string; answer: string } {
    const ticket = randomBytes(15).toString("base64url");
    const answer = randomBytes(3).toString("hex").slice(0, 5);
    this.captchas.set(ticket, answer);
    return { ticket, answer };
  }

  captchaAnswer(ticket: string): string | undefined {
    return this.captchas.get(ticket);
  }

  /** The newest ticket not yet tried: a test's view of the image a spawned client was shown. */
  newestCaptcha(): string | undefined {
    return [...this.captchas.keys()].at(-1);
  }

  /** A captcha is good for one attempt, right or wrong. */
  checkCaptcha(ticket: string | undefined, answer: string | undefined): boolean {
    if (!ticket) return false;
    const expected = this.captchas.get(ticket);
    this.captchas.delete(ticket);
    return expected !== undefined && expected === answer;
  }

  start2fa(user: User): string {
    const id = randomUUID();
    this.twoFactor.set(id, { user, expiresAt: this.now + 600_000 });
    return id;
  }

  /** 404 for an unknown or expired session, 40022 for a wrong code (the session stays). */
  finish2fa(sessionId: string, otp: string): User {
    const session = this.twoFactor.get(sessionId);
    if (!session || session.expiresAt <= this.now)
      throw new ApiError(Code.NotFound, "Session not found");
    const totp = new TOTP({ secret: session.user.otpSecret! });
    if (totp.validate({ token: otp, timestamp: this.now, window: 1 }) === null) {
      throw new ApiError(Code.TwoFACodeErr, "Incorrect 2FA code");
    }
    this.twoFactor.delete(sessionId);
    return session.user;
  }
}
