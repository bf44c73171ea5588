import type { IncomingMessage, ServerResponse } from "node:http";
import type { Clock } from "../clock.js";
import type { ApiError } from "../errors.js";
import type { Stats } from "../control.js";
import type { UploadSession } from "../state.js";
import type { S3Backend } from "./backend.js";
import type { ObjectStore } from "./objects.js";

/** Storage policy types (`[S] inventory/types/types.go`). */
export const POLICY_TYPES = [
  "local",
  "remote",
  "s3",
  "ks3",
  "cos",
  "oss",
  "obs",
  "qiniu",
  "upyun",
  "onedrive",
] as const;
export type PolicyType = (typeof POLICY_TYPES)[number];

/** What a provider sees of the emulated site. */
export interface StorageContext {
  readonly type: PolicyType;
  readonly objects: ObjectStore;
  /** The bucket the S3-protocol policies use instead of the storage origin's, if any. */
  readonly s3Backend?: S3Backend;
  readonly stats: Stats;
  readonly clock: Clock;
  /**
   * Cloudreve's callback URL of a session, for providers that call the server themselves
   * when an upload completes (`/api/v4/callback/{type}/{session}/{secret}`).
   */
  callbackUrl(session: UploadSession): string;
}

/**
 * The upload side of one storage provider: what an upload session tells the client, the
 * requests the client then sends to the storage origin, and how an upload is aborted. Reads
 * of stored objects are the object store's (or the S3 backend's), whatever the provider.
 */
export interface UploadProvider {
  /**
   * Opens the provider's side of a new session (whose `object.key` is set) and returns the
   * session reply's provider fields: `upload_urls`, `credential`, `completeURL`, … `expires`
   * is the session's expiry in unix seconds.
   */
  open(session: UploadSession, expires: number): Promise<Record<string, unknown>>;
  /** Cancel, or the sentinel after expiry: whatever was uploaded goes. */
  abort(session: UploadSession): Promise<void>;
  /** The stats and fault key of a storage request this provider answers, else undefined. */
  operation(req: IncomingMessage, url: URL): string | undefined;
  handle(req: IncomingMessage, res: ServerResponse, url: URL, operation: string): Promise<void>;
  /**
   * Cloudreve's check that a callback really comes from the storage (a signature the provider
   * made); the refusal is answered HTTP 401. Absent: the callback secret in the URL suffices.
   */
  authorizeCallback?(req: IncomingMessage, url: URL): ApiError | undefined;
}
