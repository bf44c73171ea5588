import type { ChangeBus } from "../shared/changes.js";
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

/**
 * A drive that tells the other gateway instances serving its account what it changed, so their
 * caches look those paths up again at once rather than when their entries expire. Told however
 * the change ended: a failed write may still have changed something upstream.
 */
export class AnnouncedDrive implements FileSystem {
  constructor(
    private readonly drive: FileSystem,
    private readonly bus: ChangeBus,
  ) {}

  private async announcing<T>(paths: string[], work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } finally {
      this.bus.publish(paths);
    }
  }

  stat(path: string): Promise<Entry> {
    return this.drive.stat(path);
  }

  list(path: string, options?: ListOptions): Promise<Member[]> {
    return this.drive.list(path, options);
  }

  read(path: string, options?: ReadOptions): Promise<ReadResult> {
    return this.drive.read(path, options);
  }

  write(path: string, options: WriteOptions): Promise<{ entry: Entry; created: boolean }> {
    return this.announcing([path], () => this.drive.write(path, options));
  }

  mkdir(path: string): Promise<Entry> {
    return this.announcing([path], () => this.drive.mkdir(path));
  }

  move(from: string, to: string, options: { overwrite: boolean }): Promise<{ created: boolean }> {
    return this.announcing([from, to], () => this.drive.move(from, to, options));
  }

  copy(
    from: string,
    to: string,
    options: { overwrite: boolean; depth: 0 | "infinity" },
  ): Promise<{ created: boolean }> {
    return this.announcing([to], () => this.drive.copy(from, to, options));
  }

  remove(path: string): Promise<void> {
    return this.announcing([path], () => this.drive.remove(path));
  }

  getDeadProps(paths: readonly string[]): Promise<DeadProp[][]> {
    return this.drive.getDeadProps(paths);
  }

  setDeadProps(path: string, patch: PropPatch): Promise<void> {
    return this.announcing([path], () => this.drive.setDeadProps(path, patch));
  }

  setModTime(path: string, mtimeMs: number): Promise<Entry> {
    return this.announcing([path], () => this.drive.setModTime(path, mtimeMs));
  }

  quota(): Promise<Quota> {
    return this.drive.quota();
  }

  downloadUrl(path: string): Promise<string | undefined> {
    return this.drive.downloadUrl?.(path) ?? Promise.resolve(undefined);
  }
}
