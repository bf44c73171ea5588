/**
 * The gateway's error vocabulary. Errors cross layers as these types: src/cloudreve raises them
 * from Cloudreve's codes, src/drive raises and passes them on, and src/dav alone turns them into
 * HTTP statuses. None of them names a WebDAV status or needs a Cloudreve code to be understood.
 */
export interface GatewayErrorOptions {
  /** Cloudreve's error code, when the error came from the upstream. */
  code?: number;
  correlationId?: string;
  cause?: unknown;
  /** Worth retrying as is (transient): only idempotent calls are retried. */
  retryable?: boolean;
  /** The upstream asked to wait this long before retrying (Retry-After). */
  retryAfterMs?: number;
  /** The HTTP status the upstream (or a proxy in front of it) answered with, when not 200. */
  httpStatus?: number;
}

export class GatewayError extends Error {
  readonly code: number | undefined;
  readonly correlationId: string | undefined;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly httpStatus: number | undefined;

  constructor(message: string, options: GatewayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.correlationId = options.correlationId;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
    this.httpStatus = options.httpStatus;
  }
}

/** The path does not exist. */
export class NotFound extends GatewayError {}
/** Something already holds the name. */
export class Exists extends GatewayError {}
/** The upstream reported a concurrent change (retry is reasonable). */
export class Conflict extends GatewayError {}
/** The path is locked, by an upload session, a WebDAV lock or another operation. */
export class Locked extends GatewayError {
  constructor(
    message: string,
    readonly conflicts: readonly LockConflictInfo[] = [],
    options: GatewayErrorOptions = {},
  ) {
    super(message, options);
  }
}
export interface LockConflictInfo {
  path: string;
  token?: string;
  /** What holds the lock: upload, dav, rename, … */
  application?: string;
}
/** The account's storage quota would be exceeded. */
export class QuotaExceeded extends GatewayError {}
/** The file is larger than the storage policy or the endpoint allows. */
export class TooLarge extends GatewayError {}
/** The name is not allowed (characters, length, extension). */
export class BadName extends GatewayError {}
/** The operation is not permitted on this item (root, ownership, capability). */
export class Forbidden extends GatewayError {}
/** The upstream treated the call as anonymous: the access token is missing, expired or invalid. */
export class AuthRequired extends GatewayError {}
/** A refresh token or credential was refused. */
export class CredentialInvalid extends GatewayError {}
/** Login cannot proceed without the user's help; the message says what to do. */
export class LoginRejected extends GatewayError {}
/** The content changed since the version the caller named. */
export class StaleVersion extends GatewayError {}
/** The upload session is unknown, expired or finished. */
export class SessionExpired extends GatewayError {}
/** The request was malformed (a parameter the upstream refused). */
export class BadRequest extends GatewayError {}
/** The upstream failed or could not be reached. */
export class UpstreamError extends GatewayError {}
/** The upstream did not answer, or stopped sending, within the configured time. */
export class UpstreamTimeout extends UpstreamError {}
/** A precondition of the caller did not hold (e.g. the destination exists and must not be replaced). */
export class PreconditionFailed extends GatewayError {}
/** The parent folder of the target does not exist (WebDAV wants this told apart from NotFound). */
export class MissingParent extends GatewayError {}
/** The operation needs a file and the path is a folder, or the other way round. */
export class WrongType extends GatewayError {}

/** The state gateway instances share (locks, in Redis) cannot be reached: try again later. */
export class SharedStateUnavailable extends GatewayError {}
