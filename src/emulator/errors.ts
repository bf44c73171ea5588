/** Cloudreve's application error codes (pkg/serializer/error.go) and the messages it pairs them with. */
export const Code = {
  NotSet: -1,
  NotFullySuccess: 203,
  CheckLogin: 401,
  NoPermission: 403,
  NotFound: 404,
  Conflict: 409,
  ParamErr: 40001,
  ObjectExist: 40004,
  SignExpired: 40005,
  PolicyNotAllowed: 40006,
  GroupNotAllowed: 40007,
  UploadSessionExpired: 40011,
  InvalidChunkIndex: 40012,
  InvalidContentLength: 40013,
  ParentNotExist: 40016,
  FeatureNotEnabled: 40019,
  CredentialInvalid: 40020,
  TwoFACodeErr: 40022,
  CaptchaError: 40026,
  FileTooLarge: 40049,
  InsufficientCapacity: 40051,
  IllegalObjectName: 40052,
  MetaMismatch: 40055,
  InvalidSign: 40071,
  LockConflict: 40073,
  TooManyUris: 40074,
  StaleVersion: 40076,
  EntityNotExist: 40077,
  InvalidPassword: 40080,
  BatchNotFullyCompleted: 40081,
  OwnerOnly: 40082,
  DBError: 50001,
  IOFailed: 50004,
} as const;

export interface ErrorOptions {
  data?: unknown;
  /** Per-URI failures of a batch call (code 40081). */
  aggregated?: Map<string, ApiError>;
  /** Parameter-binding failures carry no correlation id. */
  binding?: boolean;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly options: ErrorOptions = {},
  ) {
    super(message);
  }
}

export const paramError = (msg = "Parameter error"): ApiError =>
  new ApiError(Code.ParamErr, msg, { binding: true });

export const errors = {
  loginRequired: () => new ApiError(Code.CheckLogin, "Login required"),
  notSupported: () => new ApiError(Code.NoPermission, "Not supported action"),
  permissionDenied: () => new ApiError(Code.NoPermission, "Permission denied"),
  pathNotExist: () => new ApiError(Code.ParentNotExist, "Path not exist"),
  exists: () => new ApiError(Code.ObjectExist, "Object existed"),
  invalidName: () => new ApiError(Code.IllegalObjectName, "Invalid object name"),
  unknownUri: () => new ApiError(Code.ParamErr, "unknown uri"),
  insufficientCapacity: () => new ApiError(Code.InsufficientCapacity, "Insufficient capacity"),
  tooLarge: () => new ApiError(Code.FileTooLarge, "File is too large"),
  sessionExpired: () =>
    new ApiError(Code.UploadSessionExpired, "Upload session expired or not exist"),
  policyNotAllowed: () => new ApiError(Code.PolicyNotAllowed, "Policy not allowed"),
  entityNotExist: () => new ApiError(Code.EntityNotExist, "Entity not exist"),
} as const;

/** 40081: the message is the single inner error's text when exactly one item failed. */
export function aggregate(failures: Map<string, ApiError>): ApiError {
  const only = failures.size === 1 ? [...failures.values()][0] : undefined;
  return new ApiError(
    Code.BatchNotFullyCompleted,
    only ? only.message : "One or more operation failed",
    { aggregated: failures },
  );
}
