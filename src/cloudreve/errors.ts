import {
  AuthRequired,
  BadName,
  BadRequest,
  Conflict,
  CredentialInvalid,
  Exists,
  Forbidden,
  GatewayError,
  Locked,
  LoginRejected,
  NotFound,
  QuotaExceeded,
  SessionExpired,
  StaleVersion,
  TooLarge,
  UpstreamError,
  type GatewayErrorOptions,
  type LockConflictInfo,
} from "../errors.js";
import { LockConflictDetailSchema, type InnerEnvelope } from "./types.js";

/** Per-URI failures of a batch call (code 40081 with several URIs), keyed by URI. */
export class BatchFailed extends GatewayError {
  constructor(
    message: string,
    readonly items: ReadonlyMap<string, GatewayError>,
    options: GatewayErrorOptions = {},
  ) {
    super(message, options);
  }
}

function lockConflicts(data: unknown): LockConflictInfo[] {
  if (!Array.isArray(data)) return [];
  return data.flatMap((item) => {
    const parsed = LockConflictDetailSchema.safeParse(item);
    if (!parsed.success) return [];
    const d = parsed.data;
    return [{ path: d.path, token: d.token, application: d.owner.application.type }];
  });
}

/** Maps one Cloudreve error envelope (§1.2) to the gateway's error vocabulary. */
export function errorFromEnvelope(env: InnerEnvelope): GatewayError {
  const options: GatewayErrorOptions = { code: env.code, correlationId: env.correlation_id };
  const msg = env.msg || `Cloudreve error ${env.code}`;
  switch (env.code) {
    case 401:
      return new AuthRequired(msg, options);
    case 403:
    case 40082:
      return new Forbidden(msg, options);
    case 404:
    case 40016:
    case 40077:
      return new NotFound(msg, options);
    case 409:
      return new Conflict(msg, { ...options, retryable: true });
    case 40001:
    case 40012:
    case 40013:
    case 40074:
      return new BadRequest(msg, options);
    case 40004:
      return new Exists(msg, options);
    case 40005:
    case 40011:
      return new SessionExpired(msg, options);
    case 40020:
      return new CredentialInvalid(msg, options);
    case 40017:
      return new LoginRejected("the Cloudreve account is banned", options);
    case 40018:
      return new LoginRejected("the Cloudreve account is not activated yet", options);
    case 40022:
      return new LoginRejected("the two-factor code was refused", options);
    case 40026:
      return new LoginRejected(
        "the server requires a captcha for password logins: run `cloudreve-dav login` once " +
          "(or configure a refresh token from a browser) instead of the password, or turn off " +
          "the login captcha",
        options,
      );
    case 40080:
      return new LoginRejected("wrong email or password", options);
    case 40049:
      return new TooLarge(msg, options);
    case 40051:
      return new QuotaExceeded(msg, options);
    case 40052:
      return new BadName(msg, options);
    case 40073:
      return new Locked(msg, lockConflicts(env.data), options);
    case 40076:
      return new StaleVersion(msg, options);
    default:
      // -1, 50001–50007 and codes this client does not know keep their number and message.
      return new UpstreamError(msg, options);
  }
}

/**
 * 40081 wraps per-item failures even for a single URI (§1.3): with one URI the inner error is
 * the answer; with several the caller gets every item's error.
 */
export function errorFromBatch(
  env: InnerEnvelope & { aggregated_error?: Record<string, InnerEnvelope> },
  uris: number,
): GatewayError {
  const inner = Object.entries(env.aggregated_error ?? {});
  if (inner.length === 0) return errorFromEnvelope(env);
  if (uris === 1) return errorFromEnvelope(inner[0]![1]);
  return new BatchFailed(env.msg, new Map(inner.map(([uri, e]) => [uri, errorFromEnvelope(e)])), {
    code: env.code,
    correlationId: env.correlation_id,
  });
}
