/**
 * `cloudreve://` URIs from gateway paths. Every segment is encoded like encodeURIComponent
 * (§3.2), so no name can inject `?` (a search), `#` (a fragment), `%` or `..` into the URI:
 * `..` as a name encodes to itself but is refused by the caller before it gets here.
 */
export function joinUri(root: string, segments: readonly string[]): string {
  const base = root.endsWith("/") ? root : `${root}/`;
  return base + segments.map(encodeURIComponent).join("/");
}
