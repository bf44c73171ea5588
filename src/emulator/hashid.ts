import Hashids from "hashids";

/** Type tags of Cloudreve's hashids (pkg/hashid/hash.go): every id encodes [numericId, tag]. */
export const IdType = {
  user: 1,
  file: 2,
  folder: 3,
  policy: 5,
  group: 7,
  entity: 8,
} as const;

const codec = new Hashids("cloudreve-dav-emulator", 4);

export function encodeId(id: number, type: number): string {
  return codec.encode([id, type]);
}

/** The numeric id, or undefined when the string is not an id of that type. */
export function decodeId(hash: string, type: number): number | undefined {
  let parts: ReturnType<typeof codec.decode>;
  try {
    parts = codec.decode(hash);
  } catch {
    return undefined;
  }
  if (parts.length !== 2 || Number(parts[1]) !== type) return undefined;
  return Number(parts[0]);
}
