/**
 * Response schemas of the Cloudreve v4 API, written to docs/cloudreve-api.md (community 4.18, "the
 * spec") and to the seed notes (Pro 4.0.0-alpha.9, "the seed"). Where the two differ, both
 * shapes are accepted.
 *
 * Conventions:
 * - Objects are loose: unknown keys pass and are kept, because the Pro edition and newer
 *   servers add fields (the seed's `permission: null` on files, `storage_policy_inherited`,
 *   `sso_enabled`, `storage_pack_total`), and a gateway must not break on them.
 * - `.optional()` mirrors a Go `omitempty` tag; `.nullish()` marks fields that one edition or
 *   another may send as null.
 * - Timestamps stay strings (RFC 3339, offset, up to nanoseconds); `timestampToEpochMs`
 *   converts one when a number is needed.
 */
import { z } from "zod";

// ---------------------------------------------------------------------------------------------
// Scalars

// Go's RFC3339Nano: fraction up to 9 digits with trailing zeros dropped, `Z` or `±hh:mm`.
const RFC3339_RE =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** An RFC 3339 timestamp string (§0). Validated but not converted. */
export const TimestampSchema = z.string().regex(RFC3339_RE, "expected an RFC 3339 timestamp");

/**
 * Epoch milliseconds of an RFC 3339 timestamp. JS Date keeps milliseconds only, so extra fraction
 * digits are truncated (never rounded, which could carry into the next second); the zone offset
 * is honoured. Years 0001–0099 (Go's zero time is 0001-01-01T00:00:00Z) are handled without
 * Date.UTC's two-digit-year mapping. Throws on text that is not a valid timestamp.
 */
export function timestampToEpochMs(value: string): number {
  const m = RFC3339_RE.exec(value);
  if (!m) throw new RangeError(`not an RFC 3339 timestamp: ${JSON.stringify(value)}`);
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const ms = Number((m[7] ?? "").padEnd(3, "0").slice(0, 3));
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  // Date rolls 31 Feb over into March and 24:00 into the next day; RFC 3339 does not.
  if (
    date.getUTCFullYear() !== year ||
    date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    throw new RangeError(`timestamp out of range: ${JSON.stringify(value)}`);
  }
  let offsetMinutes = 0;
  if (!m[8]) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) throw new RangeError(`bad zone offset: ${JSON.stringify(value)}`);
    offsetMinutes = (m[9] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  // Local time = UTC + offset, so UTC = local - offset.
  return date.getTime() - offsetMinutes * 60_000;
}

/** A base64 bitset (§0, §8): bit n in byte n/8, least significant bit first. */
export const BitsetSchema = z
  .string()
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, "expected a standard base64 bitset");

/** A JSON integer (int64 values stay within 2^53 in practice: sizes, counts). */
const Int = z.int();
const Size = z.int().nonnegative();

// ---------------------------------------------------------------------------------------------
// §1 Envelope

/** An inner envelope of `aggregated_error` (§1.3): the same fields, `data` e.g. lock conflicts. */
export const InnerEnvelopeSchema = z.looseObject({
  code: Int,
  msg: z.string(),
  data: z.unknown().optional(),
  error: z.string().optional(),
  correlation_id: z.string().optional(),
});
export type InnerEnvelope = z.infer<typeof InnerEnvelopeSchema>;

/**
 * Every JSON reply (§1.1). `msg` is always sent (also in every seed example); `error` only in
 * debug mode; `correlation_id` on errors; `aggregated_error` only with code 40081.
 */
export const EnvelopeSchema = z.looseObject({
  code: Int,
  msg: z.string(),
  data: z.unknown().optional(),
  error: z.string().optional(),
  correlation_id: z.string().optional(),
  aggregated_error: z.record(z.string(), InnerEnvelopeSchema).optional(),
});

/** A success envelope (code 0) whose `data` must match `data`. */
export function successOf<T extends z.ZodType>(data: T) {
  return EnvelopeSchema.extend({ code: z.literal(0), data });
}

/** Code 40081 (§1.3): per-URI failures keyed by the URI the server re-serialised. */
export const BatchErrorEnvelopeSchema = EnvelopeSchema.extend({
  code: z.literal(40081),
  aggregated_error: z.record(z.string(), InnerEnvelopeSchema),
});

// ---------------------------------------------------------------------------------------------
// §2 Auth

/** `GET /session/prepare` (§2.1). The seed also sends `sso_enabled`/`qq_enabled`. */
export const PrepareLoginSchema = z.looseObject({
  webauthn_enabled: z.boolean(),
  password_enabled: z.boolean(),
  sso_enabled: z.boolean().optional(),
  qq_enabled: z.boolean().optional(),
});

/** Token pair (§2.2, and the whole `data` of a refresh, §2.5). */
export const TokenSchema = z.looseObject({
  access_token: z.string().min(1),
  refresh_token: z.string().min(1),
  access_expires: TimestampSchema,
  refresh_expires: TimestampSchema,
});
export type Token = z.infer<typeof TokenSchema>;

// ---------------------------------------------------------------------------------------------
// §7.2 User

/** `user.group` (§7.2). `permission` is absent in redacted users (seed's /user/info). */
export const GroupSchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  permission: BitsetSchema.optional(),
  direct_link_batch_size: Int.optional(),
  trash_retention: Int.optional(),
});

/** User (§7.2); the same shape in login replies, `/user/me` and site config `user`. */
export const UserSchema = z.looseObject({
  id: z.string(),
  email: z.string().optional(),
  nickname: z.string(),
  status: z.string().optional(),
  avatar: z.string().optional(),
  created_at: TimestampSchema,
  preferred_theme: z.string().optional(),
  anonymous: z.boolean().optional(),
  group: GroupSchema.optional(),
  pined: z.array(z.looseObject({ uri: z.string(), name: z.string().optional() })).nullish(),
  language: z.string().optional(),
  disable_view_sync: z.boolean().optional(),
  share_links_in_profile: z.string().optional(),
});

/** Login success `data` (§2.2, §2.3): same in both editions. */
export const LoginResponseSchema = z.looseObject({
  user: UserSchema,
  token: TokenSchema,
});

/** Login that needs a second factor (§2.2): code 203, `data` = the 2FA session id. */
export const TwoFactorRequiredSchema = EnvelopeSchema.extend({
  code: z.literal(203),
  data: z.string().min(1),
});

/** A successful `POST /session/token` reply: either signed in, or 2FA pending. */
export const LoginReplySchema = z.discriminatedUnion("code", [
  successOf(LoginResponseSchema),
  TwoFactorRequiredSchema,
]);

// ---------------------------------------------------------------------------------------------
// §7.1 Capacity, §7.3 site

/** `GET /user/capacity` (§7.1). The seed (Pro) adds `storage_pack_total`. No `free` field. */
export const CapacitySchema = z.looseObject({
  total: Size,
  used: Size,
  storage_pack_total: Size.optional(),
});

/** `GET /site/config/basic` (§7.3). Every field is omitempty; the seed adds Pro-only keys. */
export const SiteConfigBasicSchema = z.looseObject({
  instance_id: z.string().optional(),
  title: z.string().optional(),
  themes: z.string().optional(),
  default_theme: z.string().optional(),
  user: UserSchema.optional(),
  logo: z.string().optional(),
  logo_light: z.string().optional(),
  captcha_type: z.string().optional(),
});

/** `GET /site/config/login` (§7.3). */
export const SiteConfigLoginSchema = z.looseObject({
  login_captcha: z.boolean().optional(),
  reg_captcha: z.boolean().optional(),
  forget_captcha: z.boolean().optional(),
  authn: z.boolean().optional(),
  register_enabled: z.boolean().optional(),
  tos_url: z.string().optional(),
  privacy_policy_url: z.string().optional(),
});

/** `GET /site/captcha` (§2.2): the image (a data URL) and the ticket its answer goes with. */
export const CaptchaSchema = z.looseObject({ image: z.string(), ticket: z.string() });

/**
 * `GET /site/config/explorer` (§7.3). Only `max_batch_size` matters to the gateway (batch
 * splitting); optional so that a server omitting it falls back to the default 3000.
 */
export const SiteConfigExplorerSchema = z.looseObject({
  max_batch_size: z.int().positive().optional(),
});

// ---------------------------------------------------------------------------------------------
// §6.1 Storage policy, §4.4 Entity, §5.1 folder summary

/** StoragePolicy (§6.1). The seed sends only id/name/type/max_size. `type` stays open-ended. */
export const StoragePolicySchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  type: z.string(),
  max_size: Size,
  allowed_suffix: z.array(z.string()).nullish(),
  denied_suffix: z.array(z.string()).nullish(),
  allowed_name_regexp: z.string().optional(),
  denied_name_regexp: z.string().optional(),
  relay: z.boolean().optional(),
  chunk_concurrency: Int.optional(),
  encryption: z.boolean().optional(),
});

/** A file version or other blob (§4.4): type 0 version, 1 thumbnail, 2 live photo. */
export const EntitySchema = z.looseObject({
  id: z.string(),
  size: Size,
  type: z.int().nonnegative(),
  created_at: TimestampSchema,
  storage_policy: StoragePolicySchema.optional(),
  // A redacted user; only the id is relied on.
  created_by: z.looseObject({ id: z.string() }).optional(),
  encrypted_with: z.string().optional(),
});

/** `folder_summary` from `GET /file/info?folder_summary=true` (§4.4, §5.1). */
export const FolderSummarySchema = z.looseObject({
  size: Size,
  files: Size,
  folders: Size,
  completed: z.boolean(),
  calculated_at: TimestampSchema,
});

/** `extended_info` (§4.4). The seed adds `storage_policy_inherited`. */
export const ExtendedInfoSchema = z.looseObject({
  storage_policy: StoragePolicySchema.optional(),
  storage_used: Size,
  shares: z.array(z.unknown()).nullish(),
  entities: z.array(EntitySchema).nullish(),
  view: z.unknown().optional(),
  direct_links: z.array(z.unknown()).nullish(),
});

// ---------------------------------------------------------------------------------------------
// §4.4 File

/** 0 = file, 1 = folder (§4.4). */
export const FileTypeSchema = z.union([z.literal(0), z.literal(1)]);
export const FILE_TYPE_FOLDER = 1;

/**
 * FileResponse (§4.4). `metadata` is always sent, null when empty (both editions); `path`,
 * `shared`, `owned`, `folder_summary`, `extended_info` are omitempty. The seed's
 * `permission: null` passes through as an unknown key (the community edition has none).
 */
export const FileSchema = z.looseObject({
  type: FileTypeSchema,
  id: z.string(),
  name: z.string(),
  created_at: TimestampSchema,
  updated_at: TimestampSchema,
  size: Size,
  metadata: z.record(z.string(), z.string()).nullable(),
  path: z.string().optional(),
  shared: z.boolean().optional(),
  capability: BitsetSchema,
  owned: z.boolean().optional(),
  primary_entity: z.string(),
  folder_summary: FolderSummarySchema.optional(),
  extended_info: ExtendedInfoSchema.optional(),
});
export type File = z.infer<typeof FileSchema>;

/**
 * `parent` of a listing (§4.3). Normally a full File, but for the trash and shared_with_me
 * roots the server sends a zero FileResponse that is never built (§12.4), so `capability` and
 * `primary_entity` (omitempty in Go) may be missing and `metadata` may be null.
 */
export const ParentSchema = FileSchema.extend({
  capability: BitsetSchema.optional(),
  primary_entity: z.string().optional(),
});
export type Parent = z.infer<typeof ParentSchema>;

// ---------------------------------------------------------------------------------------------
// §4.3 Listing

/**
 * Cursor mode: `is_cursor: true` and `next_token` until the last page. Offset mode:
 * `total_items` (the spec marks it optional, so a client treats absent as 0).
 */
export const PaginationSchema = z.looseObject({
  page: z.int().nonnegative(),
  page_size: z.int().nonnegative(),
  total_items: Size.optional(),
  next_token: z.string().optional(),
  is_cursor: z.boolean().optional(),
});

/** Navigator properties (§4.3). The option lists are Go slices and may be null. */
export const NavigatorPropsSchema = z.looseObject({
  capability: BitsetSchema,
  max_page_size: z.int().positive(),
  order_by_options: z.array(z.string()).nullish(),
  order_direction_options: z.array(z.string()).nullish(),
});

/** `GET /file` data (§4.3). */
export const ListResponseSchema = z.looseObject({
  files: z.array(FileSchema),
  parent: ParentSchema,
  pagination: PaginationSchema,
  props: NavigatorPropsSchema,
  context_hint: z.string().nullish(),
  recursion_limit_reached: z.boolean().optional(),
  mixed_type: z.boolean().optional(),
  single_file_view: z.boolean().optional(),
  storage_policy: StoragePolicySchema.optional(),
  view: z.unknown().optional(),
});
export type ListResponse = z.infer<typeof ListResponseSchema>;

// ---------------------------------------------------------------------------------------------
// §6.1 Upload session

/** `encrypt_metadata` of an upload session (§6.1, §6.7). */
export const EncryptMetadataSchema = z.looseObject({
  algorithm: z.string(),
  key_plain_text: z.string(),
  iv: z.string(),
});

/**
 * `PUT /file/upload` data (§6.1). `expires` is Unix **seconds** (the one non-RFC-3339 time);
 * the bound rejects a millisecond value, which would otherwise look like a far-future expiry.
 */
export const UploadSessionSchema = z.looseObject({
  session_id: z.string().min(1),
  upload_id: z.string().optional(),
  chunk_size: Size,
  expires: z.int().nonnegative().lt(1e11, "expires must be Unix seconds"),
  upload_urls: z.array(z.string()).nullish(),
  credential: z.string().optional(),
  ak: z.string().optional(),
  keyTime: z.string().optional(),
  completeURL: z.string().optional(),
  storage_policy: StoragePolicySchema.optional(),
  uri: z.string(),
  callback_secret: z.string(),
  mime_type: z.string().optional(),
  upload_policy: z.string().optional(),
  encrypt_metadata: EncryptMetadataSchema.optional(),
});
export type UploadSession = z.infer<typeof UploadSessionSchema>;

// ---------------------------------------------------------------------------------------------
// §5.9 Download URLs

/**
 * `POST /file/url` data (§5.9). `urls` is positional with the request's `uris`; with
 * `skip_error` a failed item is `{url: ""}`. `expires` is null when nothing expires.
 */
export const FileUrlResponseSchema = z.looseObject({
  urls: z.array(
    z.looseObject({
      url: z.string(),
      stream_saver_display_name: z.string().optional(),
    }),
  ),
  expires: TimestampSchema.nullable(),
});

// ---------------------------------------------------------------------------------------------
// §5.11 Lock conflicts

/**
 * One holder of a conflicting lock (§5.11), the `data` array of a 40073 envelope (also inside
 * `aggregated_error`). `token` is only shown to the lock's owner.
 */
export const LockConflictDetailSchema = z.looseObject({
  path: z.string(),
  token: z.string().optional(),
  owner: z.looseObject({
    application: z.looseObject({
      type: z.string(),
      inner_xml: z.string().optional(),
      viewer_id: z.string().optional(),
    }),
  }),
  type: Int,
});

/** Code 40073 (§1.2, §5.11) with its conflict list. */
export const LockConflictEnvelopeSchema = EnvelopeSchema.extend({
  code: z.literal(40073),
  data: z.array(LockConflictDetailSchema),
});

// ---------------------------------------------------------------------------------------------
// §7.3 ping

/** `GET /site/ping` data: the version string, `-pro` suffixed on Pro (§7.3). */
export const PingSchema = z.string().min(1);
