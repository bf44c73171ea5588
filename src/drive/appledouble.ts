import { createReadStream, createWriteStream } from "node:fs";
import { cp, mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Stats } from "node:fs";
import { BadRequest, Forbidden, MissingParent, NotFound, PreconditionFailed } from "../errors.js";
import { nameOf, parentOf } from "./paths.js";
import { localRead } from "./ranges.js";
import type {
  DeadProp,
  Entry,
  FileSystem,
  ListOptions,
  Member,
  PropPatch,
  Quota,
  ReadOptions,
  ReadResult,
  WriteOptions,
} from "./types.js";

/** macOS writes extended attributes and resource forks as `._name` files next to every file. */
export const isAppleDouble = (path: string): boolean => nameOf(path).startsWith("._");

function entryOf(path: string, s: Stats): Entry {
  return {
    path,
    name: nameOf(path),
    isDir: false,
    size: s.size,
    etag: `ad-${s.ino.toString(36)}-${Math.floor(s.mtimeMs).toString(36)}-${s.size.toString(36)}`,
    mtimeMs: s.mtimeMs,
    ctimeMs: s.birthtimeMs || s.ctimeMs,
    uploading: false,
  };
}

async function statOrUndefined(file: string): Promise<Stats | undefined> {
  try {
    return await stat(file);
  } catch {
    return undefined;
  }
}

/**
 * Keeps Finder's AppleDouble `._*` files in a folder of the gateway instead of the cloud drive
 * (by configuration; uploading them is the default). Everything else goes to the drive
 * underneath; folders moved, copied or removed there take their `._*` files along here.
 */
export class AppleDoubleOverlay implements FileSystem {
  constructor(
    private readonly drive: FileSystem,
    private readonly root: string,
  ) {}

  /** Gateway paths arrive checked (no "." or ".." segments, no separators inside a name). */
  private local(path: string): string {
    return join(this.root, ...path.split("/").filter((s) => s !== ""));
  }

  private async localEntry(path: string): Promise<Entry> {
    const s = await statOrUndefined(this.local(path));
    if (!s?.isFile()) throw new NotFound(`${path} does not exist`);
    return entryOf(path, s);
  }

  /** A `._*` file goes next to an existing folder of the drive, as any file would. */
  private async requireFolder(path: string): Promise<void> {
    try {
      if ((await this.drive.stat(path)).isDir) return;
    } catch (err) {
      if (!(err instanceof NotFound)) throw err;
    }
    throw new MissingParent(`${path} is not an existing folder`);
  }

  stat(path: string): Promise<Entry> {
    return isAppleDouble(path) ? this.localEntry(path) : this.drive.stat(path);
  }

  async list(path: string, options: ListOptions = {}): Promise<Member[]> {
    const members = await this.drive.list(path, options);
    let names: string[] = [];
    try {
      names = (await readdir(this.local(path))).filter((n) => n.startsWith("._"));
    } catch {
      // No `._*` file was ever written here.
    }
    const base = path === "/" ? "" : path;
    for (const name of names) {
      const s = await statOrUndefined(this.local(`${base}/${name}`));
      // Ours hold no properties.
      if (s?.isFile())
        members.push({
          ...entryOf(`${base}/${name}`, s),
          ...(options.withDeadProps && { deadProps: [] }),
        });
    }
    return members;
  }

  async read(path: string, options: ReadOptions = {}): Promise<ReadResult> {
    if (!isAppleDouble(path)) return this.drive.read(path, options);
    const entry = await this.localEntry(path);
    const file = this.local(path);
    return localRead(entry.size, options.range, (part) => ({ body: createReadStream(file, part) }));
  }

  async write(path: string, options: WriteOptions): Promise<{ entry: Entry; created: boolean }> {
    if (!isAppleDouble(path)) return this.drive.write(path, options);
    await this.requireFolder(parentOf(path));
    const file = this.local(path);
    const created = (await statOrUndefined(file)) === undefined;
    await mkdir(dirname(file), { recursive: true });
    const partial = `${file}.${process.pid}.partial`;
    await pipeline(options.source, createWriteStream(partial), { signal: options.signal });
    const written = await stat(partial);
    if (written.size !== options.size) {
      await rm(partial, { force: true });
      throw new BadRequest(`the body has ${written.size} bytes, not the declared ${options.size}`);
    }
    if (options.mtimeMs !== undefined) await utimes(partial, new Date(), new Date(options.mtimeMs));
    await rename(partial, file);
    return { entry: await this.localEntry(path), created };
  }

  mkdir(path: string): Promise<Entry> {
    return this.drive.mkdir(path);
  }

  async move(
    from: string,
    to: string,
    options: { overwrite: boolean },
  ): Promise<{ created: boolean }> {
    if (isAppleDouble(from) !== isAppleDouble(to))
      throw new Forbidden("AppleDouble files stay AppleDouble files");
    if (!isAppleDouble(from)) {
      const result = await this.drive.move(from, to, options);
      await this.carry(from, to, true);
      return result;
    }
    const created = await this.prepareLocalTarget(from, to, options.overwrite);
    await rename(this.local(from), this.local(to));
    return { created };
  }

  async copy(
    from: string,
    to: string,
    options: { overwrite: boolean; depth: 0 | "infinity" },
  ): Promise<{ created: boolean }> {
    if (isAppleDouble(from) !== isAppleDouble(to))
      throw new Forbidden("AppleDouble files stay AppleDouble files");
    if (!isAppleDouble(from)) {
      const result = await this.drive.copy(from, to, options);
      if (options.depth === "infinity") await this.carry(from, to, false);
      return result;
    }
    const created = await this.prepareLocalTarget(from, to, options.overwrite);
    await cp(this.local(from), this.local(to));
    return { created };
  }

  /** WebDAV's answers for a `._*` MOVE/COPY destination; true when it is new. */
  private async prepareLocalTarget(from: string, to: string, overwrite: boolean): Promise<boolean> {
    await this.localEntry(from);
    await this.requireFolder(parentOf(to));
    const exists = (await statOrUndefined(this.local(to))) !== undefined;
    if (exists && !overwrite) throw new PreconditionFailed(`${to} exists`);
    await mkdir(dirname(this.local(to)), { recursive: true });
    return !exists;
  }

  /** The `._*` files inside a folder that moved or was copied on the drive go along. */
  private async carry(from: string, to: string, move: boolean): Promise<void> {
    const source = this.local(from);
    if (!(await statOrUndefined(source))?.isDirectory()) return;
    const target = this.local(to);
    await rm(target, { recursive: true, force: true });
    await mkdir(dirname(target), { recursive: true });
    if (move) await rename(source, target);
    else await cp(source, target, { recursive: true });
  }

  async remove(path: string): Promise<void> {
    if (isAppleDouble(path)) {
      await this.localEntry(path);
      await rm(this.local(path));
      return;
    }
    await this.drive.remove(path);
    await rm(this.local(path), { recursive: true, force: true });
  }

  async getDeadProps(paths: readonly string[]): Promise<DeadProp[][]> {
    const theirs = await this.drive.getDeadProps(paths.filter((p) => !isAppleDouble(p)));
    const props: DeadProp[][] = [];
    let next = 0;
    for (const path of paths) {
      if (!isAppleDouble(path)) {
        props.push(theirs[next++]!);
        continue;
      }
      // Ours hold no properties, but they must exist.
      await this.localEntry(path);
      props.push([]);
    }
    return props;
  }

  async setDeadProps(path: string, patch: PropPatch): Promise<void> {
    if (!isAppleDouble(path)) return this.drive.setDeadProps(path, patch);
    throw new Forbidden("AppleDouble files kept by the gateway hold no properties");
  }

  async setModTime(path: string, mtimeMs: number): Promise<Entry> {
    if (!isAppleDouble(path)) return this.drive.setModTime(path, mtimeMs);
    await this.localEntry(path);
    await utimes(this.local(path), new Date(), new Date(mtimeMs));
    return this.localEntry(path);
  }

  quota(): Promise<Quota> {
    return this.drive.quota();
  }

  async downloadUrl(path: string): Promise<string | undefined> {
    if (isAppleDouble(path) || !this.drive.downloadUrl) return undefined;
    return this.drive.downloadUrl(path);
  }
}
