/**
 * Cloudreve bitsets (§0, §8): a Go `[]byte` sent as standard base64. Bit n lives in byte n/8
 * under mask 1 << (n % 8), least significant bit first.
 */

// Standard alphabet only (Go uses base64.StdEncoding); padding is tolerated but not required.
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

export class Bitset {
  constructor(readonly bytes: Uint8Array) {}

  /** True when bit n is set; bits past the end are unset (the server trims trailing zero bytes). */
  has(bit: number): boolean {
    if (!Number.isInteger(bit) || bit < 0) return false;
    const byte = this.bytes[bit >> 3];
    return byte !== undefined && (byte & (1 << (bit & 7))) !== 0;
  }

  /** Every set bit, ascending. */
  bits(): number[] {
    const out: number[] = [];
    this.bytes.forEach((byte, i) => {
      for (let b = 0; b < 8; b++) if (byte & (1 << b)) out.push(i * 8 + b);
    });
    return out;
  }
}

/** Decodes a base64 bitset; throws on text that is not standard base64 (Buffer would skip it silently). */
export function decodeBitset(base64: string): Bitset {
  if (!BASE64_RE.test(base64))
    throw new TypeError(`not a base64 bitset: ${JSON.stringify(base64)}`);
  return new Bitset(new Uint8Array(Buffer.from(base64, "base64")));
}

/** Navigator capability bits (§8.1): `capability` on files and `props.capability` on listings. */
export const NavCapability = {
  CREATE_FILE: 0,
  RENAME_FILE: 1,
  UPLOAD_FILE: 6,
  DOWNLOAD_FILE: 7,
  UPDATE_METADATA: 8,
  LIST_CHILDREN: 9,
  GENERATE_THUMB: 10,
  DELETE_FILE: 14,
  LOCK_FILE: 15,
  SOFT_DELETE: 16,
  RESTORE: 17,
  SHARE: 18,
  INFO: 19,
  VERSION_CONTROL: 20,
  ENTER_FOLDER: 23,
  MODIFY_PROPS: 24,
} as const;

/** Group permission bits (§8.2): `user.group.permission`. */
export const GroupPermission = {
  IS_ADMIN: 0,
  IS_ANONYMOUS: 1,
  SHARE: 2,
  WEBDAV: 3,
  ARCHIVE_DOWNLOAD: 4,
  ARCHIVE_TASK: 5,
  WEBDAV_PROXY: 6,
  SHARE_DOWNLOAD: 7,
  REMOTE_DOWNLOAD: 9,
  REDIRECTED_SOURCE: 11,
  ADVANCE_DELETE: 12,
  IGNORE_FILE_OWNERSHIP: 16,
  UNIQUE_REDIRECT_DIRECT_LINK: 17,
} as const;

/** The navigator capability strings a 4.18 server sends per filesystem (§8.1). */
export const FilesystemCapability = {
  my: "w8edAQ==",
  share: "gIaYAQ==",
  trash: "AMIK",
  shared_with_me: "gAKA",
} as const;
