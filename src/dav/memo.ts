/** Most values a memo keeps; it starts over when full, so memory stays bounded. */
const MAX_REMEMBERED = 100_000;

/**
 * The value for `key` from `memo`, formatted once: for the strings a large listing writes again
 * and again (dates, content types), where formatting showed in the profile.
 */
export function remembered<K>(memo: Map<K, string>, key: K, format: (key: K) => string): string {
  let value = memo.get(key);
  if (value === undefined) {
    if (memo.size >= MAX_REMEMBERED) memo.clear();
    value = format(key);
    memo.set(key, value);
  }
  return value;
}
