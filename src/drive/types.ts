import type { Readable, Writable } from "node:stream";

/**
 * What the WebDAV layer sees of the drive: paths, entries and streams. No Cloudreve URI, code
 * or field crosses this line; errors come as the types of src/errors.ts.
 *
 * Paths are gateway paths: "/" is the root, segments are decoded names separated by "/",
 * with no trailing slash. A segment that is "", "." or ".." is refused with BadName.
 */
export interface Entry {
  path: string;
  name: string;
  isDir: boolean;
  /** Bytes of the current version; 0 for folders and for files still uploading. */
  size: number;
  /** Opaque version tag without quotes: the content version for files, id and mtime for folders. */
  etag: string;
  /** Modification time, ms since the epoch. */
  mtimeMs: number;
  /** Creation time, ms since the epoch. */
  ctimeMs: number;
  /** A placeholder of an upload that has not completed. */
  uploading: boolean;
  /** The current version's content hashes, when known: the gateway wrote it, or it is empty. */
  checksums?: Checksums;
}

/** Lowercase hex digests of a file's content. */
export interface Checksums {
  sha1: string;
  md5: string;
}

/** A dead property: its namespace and local name, xml:lang, and the property element's inner XML. */
export interface DeadProp {
  ns: string;
  name: string;
  lang?: string;
  innerXml: string;
}

export interface PropPatch {
  set: readonly DeadProp[];
  remove: readonly Pick<DeadProp, "ns" | "name">[];
}

/** Bytes `start` to `end` of a file, both included. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface ReadOptions {
  /** One range within the file's size; absent: the whole file. */
  range?: ByteRange;
  signal?: AbortSignal;
}

/** The content a read serves: what it is and how long, never how the upstream framed it. */
export interface ReadResult {
  /** The part of the file served, as asked; absent: the whole file. */
  range?: ByteRange;
  /** Bytes the content holds. */
  length: number;
  /**
   * Writes the content into `dest` and ends it; rejects if the content breaks off. Chunks may
   * be lent: `dest` must be done with each when its write callback runs (sockets and files are).
   */
  pipeTo(dest: Writable): Promise<void>;
  /** Gives the content up unread. */
  discard(): void;
  /** The same bytes when they are already in memory, so they can be sent in one write. */
  bytes?: Buffer;
}

export interface WriteOptions {
  source: Readable;
  /** Exact byte count of `source`. */
  size: number;
  /** Modification time to record, ms since the epoch. */
  mtimeMs?: number;
  signal?: AbortSignal;
}

export interface Quota {
  used: number;
  available: number;
}

export interface ListOptions {
  withDeadProps?: boolean;
}

/** A folder member as listed: its dead properties are there when they were asked for. */
export interface Member extends Entry {
  deadProps?: DeadProp[];
}

export interface FileSystem {
  /** NotFound when the path does not exist. */
  stat(path: string): Promise<Entry>;
  /**
   * The children of a folder; NotFound when it does not exist, WrongType for a file. With
   * `withDeadProps`, each member carries its dead properties, from the listing itself.
   */
  list(path: string, options?: ListOptions): Promise<Member[]>;
  read(path: string, options?: ReadOptions): Promise<ReadResult>;
  /**
   * Creates or replaces a file. MissingParent when the parent folder does not exist,
   * WrongType when the path is a folder. The result is already visible to stat and list.
   */
  write(path: string, options: WriteOptions): Promise<{ entry: Entry; created: boolean }>;
  /** MissingParent when the parent does not exist, Exists when the path does. */
  mkdir(path: string): Promise<Entry>;
  /**
   * WebDAV MOVE: PreconditionFailed when the destination exists and `overwrite` is false;
   * otherwise the destination is replaced. `created` is false when something was replaced.
   */
  move(from: string, to: string, options: { overwrite: boolean }): Promise<{ created: boolean }>;
  /** WebDAV COPY; depth 0 copies a folder without its members. */
  copy(
    from: string,
    to: string,
    options: { overwrite: boolean; depth: 0 | "infinity" },
  ): Promise<{ created: boolean }>;
  /** Removes a file or a folder with everything in it. */
  remove(path: string): Promise<void>;
  /** The dead properties of each path, in order: one call for all members of a listing. */
  getDeadProps(paths: readonly string[]): Promise<DeadProp[][]>;
  /** Applies the whole patch or nothing. */
  setDeadProps(path: string, patch: PropPatch): Promise<void>;
  /** Records a file's modification time (clients set it after uploading); WrongType for a folder. */
  setModTime(path: string, mtimeMs: number): Promise<Entry>;
  quota(): Promise<Quota>;
  /** A URL the client can fetch the content from directly (signed, short-lived), if there is one. */
  downloadUrl?(path: string): Promise<string | undefined>;
}
