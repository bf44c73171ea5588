/**
 * Gateway paths: "/" is the root, "/a/b" a member, never a trailing slash. Every layer above
 * the drive speaks them; these are the relations between them.
 */

/** The parent of a path ("/a/b" → "/a", "/a" → "/"; the root is its own parent). */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}

export function nameOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function childOf(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

/** `path` is strictly inside `ancestor`; "/ab" is not inside "/a". */
export function isBelow(path: string, ancestor: string): boolean {
  if (path === ancestor) return false;
  return ancestor === "/" || path.startsWith(`${ancestor}/`);
}

/** `path` is `ancestor` or inside it. */
export function isSameOrBelow(path: string, ancestor: string): boolean {
  return path === ancestor || isBelow(path, ancestor);
}
