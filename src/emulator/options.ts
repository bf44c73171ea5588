import type { S3Backend } from "./storage/backend.js";
import type { PolicyType } from "./storage/provider.js";

/** Settings of one emulated Cloudreve v4 server. Every limit mirrors a real server setting. */
export interface EmulatorUser {
  email: string;
  password: string;
  /** Group `max_storage` in bytes. Default: the emulator's `capacity`. */
  capacity?: number;
  /**
   * The storage policy of the account's group. Default: the emulator's `policy`. Each type in
   * use is a policy of its own, with its own storage origin; the other policy settings are
   * shared.
   */
  policy?: PolicyType;
}

export interface EmulatorOptions {
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** Listen address. Default 127.0.0.1. */
  host?: string;
  /** The primary account. Default admin@example.com / cloudreve-dav. */
  email?: string;
  password?: string;
  /** More accounts, e.g. to check that one user cannot touch another's sessions or files. */
  extraUsers?: EmulatorUser[];
  /**
   * The policies' chunk size in bytes (`chunk_size` of upload sessions). Default 25 MiB, 50 MiB
   * for onedrive; relay sessions answer 0 whatever it is.
   */
  chunkSize?: number;
  /** Setting `max_page_size`. Default 2000. */
  maxPageSize?: number;
  /** Setting `use_cursor_pagination`: cursor (default) or offset. */
  pagination?: "cursor" | "offset";
  /** Setting `access_token_ttl` in seconds. Default 3600. */
  accessTtl?: number;
  /** Setting `refresh_token_ttl` in seconds. Default 1 209 600 (14 days). */
  refreshTtl?: number;
  /** Added latency before every /api/v4 request, in milliseconds. Default 0. */
  latencyMs?: number;
  /** Setting `login_captcha` with the `normal` captcha type. Default off. */
  captcha?: boolean;
  /** Base32 TOTP secret; when set, the primary account has 2FA enabled. */
  otpSecret?: string;
  /** Group `max_storage` of the primary account in bytes. Default 1 GiB (the default User group). */
  capacity?: number;
  /** Setting `max_batched_file` (site config `max_batch_size`). Default 3000. */
  maxBatchSize?: number;
  /** Setting `maxEditSize`, the `PUT /file/content` limit. Default 50 MiB. */
  maxEditSize?: number;
  /** Setting `upload_session_timeout` in seconds. Default 86400. */
  uploadSessionTtl?: number;
  /** Setting `entity_url_default_ttl` in seconds. Default 3600. */
  entityUrlTtl?: number;
  /** Group `trash_retention` in seconds. Default 7 days. */
  trashRetention?: number;
  /**
   * Versions kept per file, the current one included: the owner's `VersionRetentionMax` with
   * retention on (accounts are created with it on and 10); 1 = retention off, 0 = unlimited.
   * Default 10.
   */
  versionRetention?: number;
  /** Storage policy `max_size` in bytes; 0 (default) = unlimited. */
  policyMaxSize?: number;
  /**
   * Storage policy type of the primary account (and of `extraUsers` without one): `local`
   * (default), or a provider's (`s3`, …), which also starts that provider's storage origin that
   * clients upload to and download from.
   */
  policy?: PolicyType;
  /**
   * The bucket of the s3, ks3 and cos policies, instead of the storage origin's: the session's
   * multipart upload and presigned URLs, the callback's size check, presigned downloads, the
   * server's own writes and deletions all go to it (e.g. an independent S3 server in a test).
   * One of those policies must be in use.
   */
  s3Backend?: S3Backend;
  /** Storage policy `relay`: uploads go through Cloudreve (the local flow, `chunk_size` 0). */
  relay?: boolean;
  /**
   * Reads of objects at the storage origin answer 307 to a second origin that serves them, as
   * a bucket's regional endpoint or a CDN does. Default off.
   */
  storageRedirect?: boolean;
  /** Storage policy `chunk_concurrency`. Default 1. */
  chunkConcurrency?: number;
  /** Site URL written into signed content URLs. Default: the URL the emulator listens on. */
  siteUrl?: string;
  /** Server time zone offset used when writing timestamps, in minutes. Default 480 (+08:00). */
  utcOffsetMinutes?: number;
  /** Where blobs live. Default: a fresh temporary directory, removed on close. */
  dataDir?: string;
  /**
   * Change events (`GET /file/events`, §5.12): `on` (default), `disabled` (setting
   * `fs_event_push_enabled` off: 40019), `absent` (a server before 4.11: the route is a 404).
   */
  events?: "on" | "disabled" | "absent";
  /** Setting `fs_event_push_debounce` in milliseconds. Default 5000. */
  eventDebounceMs?: number;
  /** How often an event stream sends `keep-alive`, in milliseconds. Default 30 000. */
  eventKeepAliveMs?: number;
}

export interface RunningEmulator {
  /** Base URL without trailing slash, e.g. http://127.0.0.1:5212 */
  url: string;
  /** The primary policy's storage origin, e.g. http://127.0.0.1:41234; undefined for `local`. */
  storageUrl?: string;
  /** The storage origin of every policy in use but `local`, by type. */
  storageUrls: Partial<Record<PolicyType, string>>;
  close(): Promise<void>;
}
