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
  MissingParent,
  NotFound,
  PreconditionFailed,
  QuotaExceeded,
  SessionExpired,
  SharedStateUnavailable,
  StaleVersion,
  TooLarge,
  UpstreamError,
  UpstreamTimeout,
  WrongType,
} from "../errors.js";
import { IfHeaderSyntaxError } from "./if-header.js";
import { XmlRejected } from "./xml.js";

/** An error the protocol layer raises itself, already carrying its status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** A precondition element for a `<D:error>` body (RFC 4918 §16), e.g. "propfind-finite-depth". */
    readonly condition?: string,
  ) {
    super(message);
  }
}

/**
 * The one place where the gateway's errors become HTTP statuses. `exists` tells what an
 * Exists means for the method at hand (405 for MKCOL, 412 for a refused overwrite).
 */
export function statusOf(err: unknown, exists = 405): number {
  if (err instanceof HttpError) return err.status;
  // Requests the protocol layer could not read.
  if (err instanceof XmlRejected || err instanceof IfHeaderSyntaxError) return 400;
  if (!(err instanceof GatewayError)) return 500;
  if (err instanceof NotFound) return 404;
  if (err instanceof MissingParent) return 409;
  if (err instanceof Exists) return exists;
  if (err instanceof PreconditionFailed || err instanceof StaleVersion) return 412;
  if (err instanceof Locked) return 423;
  if (err instanceof Forbidden) return 403;
  if (err instanceof WrongType) return 405;
  if (err instanceof QuotaExceeded) return 507;
  if (err instanceof TooLarge) return 413;
  if (err instanceof BadName || err instanceof BadRequest) return 400;
  if (err instanceof Conflict) return 409;
  // The gateway's own upstream session failed: the client cannot fix it, the operator can.
  if (
    err instanceof AuthRequired ||
    err instanceof CredentialInvalid ||
    err instanceof LoginRejected
  )
    return 503;
  if (err instanceof SessionExpired || err instanceof SharedStateUnavailable) return 503;
  if (err instanceof UpstreamTimeout) return 504;
  if (err instanceof UpstreamError) return err.retryable ? 503 : 502;
  return 500;
}
