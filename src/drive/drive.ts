import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { LRUCache } from "lru-cache";
import type { CloudreveApi, MetadataPatch } from "../cloudreve/api.js";
import { Downloader, servedSpan } from "../cloudreve/download.js";
import {
  FILE_TYPE_FOLDER,
  timestampToEpochMs,
  type ListResponse,
  type Parent,
} from "../cloudreve/types.js";
import { uploadFile } from "../cloudreve/upload.js";
import { joinUri } from "../cloudreve/uri.js";
import {
  BadName,
  Exists,
  Forbidden,
  MissingParent,
  NotFound,
  PreconditionFailed,
  StaleVersion,
  WrongType,
} from "../errors.js";
import { defaults } from "../config.js";
import type { EventLog } from "../log.js";
import { MetadataCache, type Node } from "./cache.js";
import { childOf, isSameOrBelow, nameOf, parentOf } from "./paths.js";
import { localRead } from "./ranges.js";
import { Composer, type Place } from "./compose.js";
import {
  applyPatches,
  checksumsPatch,
  davMetadata,
  decodeDeadProps,
  metadataPatches,
  mtimeOverride,
  mtimePatch,
  storedChecksums,
} from "./deadprops.js";
import type {
  Checksums,
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

export interface DriveOptions {
  /** The Cloudreve folder that is the gateway's "/". Default: the gateway's. */
  rootUri?: string;
  /** How long entries and listings are trusted. Default: the gateway's (config.ts). */
  cacheTtlMs?: number;
  /** How long "does not exist" is trusted. Default 5 s. */
  negativeTtlMs?: number;
  /** Bound on cached items (a listing counts its children). Default: the gateway's. */
  maxEntries?: number;
  /** Delete for good instead of into Cloudreve's trash. Default: the gateway's. */
  permanentDelete?: boolean;
  /** Files up to this size go up in one `PUT /file/content`. Default: the gateway's. */
  directUploadMaxBytes?: number;
  /** Cache key prefix, so that accounts never see each other's entries. */
  account?: string;
  /** The clock of the cache TTLs (injectable for tests). */
  now?: () => number;
  /** Where clean-up failures are told (items a MOVE or COPY could not remove). */
  log?: EventLog;
  observer?: DriveObserver;
}

/** Whoever watches the drive (the gateway's metrics). */
export interface DriveObserver {
  /**
   * A lookup was answered from memory (hit) or has to ask the upstream: an item's metadata
   * (entry), a folder's listing, or a small file's content.
   */
  cacheLookup(kind: "entry" | "listing" | "content", hit: boolean): void;
  /** An upload to the upstream began (+1) or ended, however it ended (-1). */
  uploading(change: 1 | -1): void;
}

/** Files up to this size are read whole and kept in memory per version. */
const SMALL_CONTENT_BYTES = 64 * 1024;
const SMALL_CONTENT_CACHE_BYTES = 32 * 1024 * 1024;

/** Any empty file's checksums, whoever wrote it. */
const NO_BYTES_CHECKSUMS: Checksums = {
  sha1: createHash("sha1").digest("hex"),
  md5: createHash("md5").digest("hex"),
};

/** `/user/capacity` changes with every upload; it is trusted only this long. */
const QUOTA_TTL_MS = 5_000;

/** A segment other than "", "." and "..". */
const SEGMENT = String.raw`(?!\.\.?(?:/|$))[^/]+`;
/** A gateway path, the leading "/" optional: "", "." and ".." are refused as segments. */
const VALID_PATH = new RegExp(String.raw`^/?(?:${SEGMENT}(?:/${SEGMENT})*)?$`);

/**
 * A gateway path resolved: canonical path, segments and upstream URI. Checked before anything
 * reaches the upstream; split only when a call needs the segments (cached answers do not).
 */
class Target {
  readonly path: string;
  private parts: string[] | undefined;

  constructor(
    path: string,
    private readonly rootUri: string,
  ) {
    if (!VALID_PATH.test(path)) throw new BadName(`invalid path ${JSON.stringify(path)}`);
    this.path = path.startsWith("/") ? path : `/${path}`;
  }

  get segments(): string[] {
    return (this.parts ??= this.path === "/" ? [] : this.path.slice(1).split("/"));
  }

  get uri(): string {
    return joinUri(this.rootUri, this.segments);
  }
}

/** Cloudreve's name rules (§3.4): at most 255 bytes, none of \ / : * ? " < > |. */
function nameAllowed(name: string): boolean {
  return Buffer.byteLength(name) <= 255 && !/[\\/:*?"<>|]/.test(name);
}

/** A first listing page is the whole folder when there is no next page in either mode (§4.2). */
function isComplete(page: ListResponse): boolean {
  const p = page.pagination;
  return !p.next_token && (p.is_cursor === true || (p.total_items ?? 0) <= page.files.length);
}

/**
 * The virtual drive: gateway paths under a root URI, served from the metadata cache where
 * possible, with every mutation patched into the cache before it returns.
 */
export class Drive implements FileSystem {
  private readonly rootUri: string;
  private readonly cache: MetadataCache;
  private readonly composer: Composer;
  private readonly downloader: Downloader;
  /** Contents of small files by version (entity), bounded in bytes. */
  private readonly contents = new LRUCache<string, Buffer>({
    maxSize: SMALL_CONTENT_CACHE_BYTES,
    sizeCalculation: (b) => Math.max(1, b.length),
  });
  /** The write in progress per path, which the next write to that path waits for. */
  private readonly writes = new Map<string, Promise<unknown>>();
  private readonly permanentDelete: boolean;
  private readonly directUploadMaxBytes: number;
  private readonly now: () => number;
  private quotaCache: { value: Quota; expiresAt: number } | undefined;
  private quotaGeneration = 0;
  private readonly observer: DriveObserver | undefined;

  constructor(
    private readonly api: CloudreveApi,
    options: DriveOptions = {},
  ) {
    // The gateway's defaults live in config.ts alone; a drive made without settings takes them.
    const gateway = defaults();
    this.rootUri = options.rootUri ?? gateway.rootUri;
    this.now = options.now ?? Date.now;
    this.permanentDelete = options.permanentDelete ?? gateway.permanentDelete;
    this.directUploadMaxBytes = options.directUploadMaxBytes ?? gateway.directUploadMaxBytes;
    this.cache = new MetadataCache({
      ttlMs: options.cacheTtlMs ?? gateway.cacheTtlSeconds * 1000,
      negativeTtlMs: options.negativeTtlMs ?? 5_000,
      maxEntries: options.maxEntries ?? gateway.cacheMaxEntries,
      account: options.account ?? "",
      now: this.now,
    });
    this.composer = new Composer(api, this.permanentDelete, options.log);
    this.downloader = new Downloader(api);
    this.observer = options.observer;
  }

  async stat(path: string): Promise<Entry> {
    return (await this.nodeAt(this.target(path))).entry;
  }

  async list(path: string, options: ListOptions = {}): Promise<Member[]> {
    const nodes = await this.listNodes(this.target(path));
    // The listing's own metadata serves the properties: no call per member, whatever is cached.
    if (options.withDeadProps)
      return nodes.map((n) => ({ ...n.entry, deadProps: decodeDeadProps(n.dav) }));
    return nodes.map((n) => n.entry);
  }

  private async listNodes(target: Target): Promise<Node[]> {
    const known = this.cache.lookup(target.path);
    if (known === null) throw new NotFound(`${target.path} does not exist`);
    if (known && !known.entry.isDir) throw new WrongType(`${target.path} is not a folder`);
    const cached = this.cache.listing(target.path);
    this.observer?.cacheLookup("listing", cached !== undefined);
    if (cached) return [...cached.values()];
    try {
      return await this.cache.singleFlight(
        `listing:${target.path}`,
        () => this.loadListing(target),
        { kind: "listing", path: target.path },
      );
    } catch (err) {
      // Listing a file is "not found" upstream (§4.3); WebDAV wants the two told apart.
      if (err instanceof NotFound && !(await this.nodeAt(target)).entry.isDir) {
        throw new WrongType(`${target.path} is not a folder`);
      }
      throw err;
    }
  }

  async read(path: string, options: ReadOptions = {}): Promise<ReadResult> {
    const target = this.target(path);
    const node = await this.nodeAt(target);
    if (node.entry.isDir) throw new WrongType(`${target.path} is a folder`);
    if (node.entry.size <= SMALL_CONTENT_BYTES && !node.entry.uploading) {
      const all = await this.smallContent(target, node);
      return localRead(all.length, options.range, (part) => {
        const bytes = part ? all.subarray(part.start, part.end + 1) : all;
        return { body: Readable.from([bytes]), bytes };
      });
    }
    const { range } = options;
    try {
      const download = await this.downloader.open({
        uri: target.uri,
        entity: node.entity,
        size: node.entry.size,
        range: range && `bytes=${range.start}-${range.end}`,
        signal: options.signal,
      });
      const served = servedSpan(download);
      const wanted = range ?? { start: 0, end: node.entry.size - 1 };
      if (served?.start !== wanted.start || served.end !== wanted.end) {
        download.discard();
        // Changed outside the gateway since it was listed: what was asked is not what came.
        throw this.changed(target);
      }
      return {
        range,
        length: wanted.end - wanted.start + 1,
        pipeTo: (dest) => download.pipeTo(dest),
        discard: download.discard,
      };
    } catch (err) {
      // The version the cache knows is no longer kept: changed or removed outside the gateway.
      if (err instanceof NotFound) throw this.changed(target);
      throw err;
    }
  }

  /** What was listed is not what is there any more: forgotten, for the caller to look again. */
  private changed(target: Target): StaleVersion {
    this.cache.invalidate(target.path);
    return new StaleVersion(`${target.path} changed while it was read`);
  }

  /**
   * The bytes of a small file, kept per version: a version's content never changes, so
   * repeated reads of small files (icons, sidecars, the 6-byte file of a benchmark) cost no
   * upstream call after the first.
   */
  private smallContent(target: Target, node: Node): Promise<Buffer> {
    const cached = this.contents.get(node.entity);
    this.observer?.cacheLookup("content", cached !== undefined);
    if (cached) return Promise.resolve(cached);
    return this.cache.singleFlight(`content:${node.entity}`, async () => {
      const d = await this.downloader.open({ uri: target.uri, entity: node.entity });
      const bytes = await d.readAll();
      if (d.statusCode !== 200 || bytes.length !== node.entry.size) {
        // Changed outside the gateway since it was listed: nothing to keep.
        throw this.changed(target);
      }
      this.contents.set(node.entity, bytes);
      return bytes;
    });
  }

  /** The signed URL of the current version, for clients redirected to fetch it themselves. */
  async downloadUrl(path: string): Promise<string> {
    const target = this.target(path);
    const node = await this.nodeAt(target);
    if (node.entry.isDir) throw new WrongType(`${target.path} is a folder`);
    return this.downloader.url({ uri: target.uri, entity: node.entity });
  }

  /**
   * Writes to one path run one after another: a client retrying a PUT it gave up on must not
   * meet the upload lock of the attempt still being cancelled upstream (40073).
   */
  async write(path: string, options: WriteOptions): Promise<{ entry: Entry; created: boolean }> {
    const target = this.target(path);
    const before = this.writes.get(target.path);
    const run = (async () => {
      await before?.catch(() => undefined);
      return this.writeNow(target, options);
    })();
    this.writes.set(target.path, run);
    try {
      return await run;
    } finally {
      if (this.writes.get(target.path) === run) this.writes.delete(target.path);
    }
  }

  /**
   * Resolves when every write in progress has ended, its clean-up included: a write that was
   * cut still cancels its upload session upstream, which shutdown waits for.
   */
  async writesSettled(): Promise<void> {
    await Promise.allSettled([...this.writes.values()]);
  }

  private async writeNow(
    target: Target,
    options: WriteOptions,
  ): Promise<{ entry: Entry; created: boolean }> {
    if (target.segments.length === 0) throw new WrongType("the root is a folder");
    await this.parentFolder(target);
    const existing = await this.nodeIfAny(target);
    if (existing?.entry.isDir) throw new WrongType(`${target.path} is a folder`);
    this.dropQuota();
    let node: Node;
    // Hashed in the one pass that reads the bytes to send them.
    const sha1 = createHash("sha1");
    const md5 = createHash("md5");
    this.observer?.uploading(1);
    try {
      const file = await uploadFile(this.api, {
        uri: target.uri,
        source: options.source,
        size: options.size,
        mtimeMs: options.mtimeMs,
        replace: true,
        previousEntity: existing?.entity || undefined,
        directMaxBytes: this.directUploadMaxBytes,
        onBytes: (piece) => {
          sha1.update(piece);
          md5.update(piece);
        },
        signal: options.signal,
      });
      const checksums = { sha1: sha1.digest("hex"), md5: md5.digest("hex") };
      node = await this.recordVersion(
        target,
        this.toNode(target.path, file),
        checksums,
        options.mtimeMs,
      );
    } catch (err) {
      // A failed upload may still have changed the path (a placeholder, a partial rename).
      this.cache.invalidate(target.path);
      throw err;
    } finally {
      this.observer?.uploading(-1);
    }
    this.cache.upsert(target.path, node);
    return { entry: node.entry, created: existing === undefined };
  }

  async mkdir(path: string): Promise<Entry> {
    const target = this.target(path);
    if (target.segments.length === 0) throw new Exists("the root exists");
    await this.parentFolder(target);
    if (this.cache.lookup(target.path)) throw new Exists(`${target.path} exists`);
    try {
      const node = this.toNode(target.path, await this.api.create(target.uri, "folder", true));
      this.cache.upsertEmptyFolder(target.path, node);
      return node.entry;
    } catch (err) {
      if (err instanceof Exists) this.cache.invalidate(target.path);
      throw err;
    }
  }

  async remove(path: string): Promise<void> {
    const target = this.target(path);
    if (target.segments.length === 0) throw new Forbidden("the root cannot be removed");
    // Known to exist first: a delete repeated after a lost answer takes "not found" as its own
    // work, which must not turn a DELETE of nothing into a 204.
    const known = this.cache.lookup(target.path);
    if (known === null) throw new NotFound(`${target.path} does not exist`);
    if (known === undefined) await this.loadNode(target);
    this.dropQuota();
    try {
      await this.api.remove([target.uri], this.permanentDelete);
    } catch (err) {
      if (err instanceof NotFound) this.cache.remove(target.path);
      throw err;
    }
    this.cache.remove(target.path);
  }

  async move(from: string, to: string, options: { overwrite: boolean }) {
    const { src, dst, srcNode, replaced } = await this.prepareTransfer(from, to, options.overwrite);
    await this.pinMtime(src, srcNode);
    let node: Node;
    try {
      const file = await this.composer.replacing(this.placeOf(dst), replaced, () =>
        this.composer.move(this.placeOf(src), this.placeOf(dst), this.clashes(src, dst)),
      );
      node = this.toNode(dst.path, file);
    } catch (err) {
      this.cache.invalidate(src.path);
      this.cache.invalidate(dst.path);
      throw err;
    }
    if (replaced) this.dropQuota();
    this.cache.remove(src.path);
    this.cache.upsert(dst.path, node);
    return { created: !replaced };
  }

  async copy(from: string, to: string, options: { overwrite: boolean; depth: 0 | "infinity" }) {
    const { src, dst, srcNode, replaced } = await this.prepareTransfer(from, to, options.overwrite);
    const shallow = options.depth === 0 && srcNode.entry.isDir;
    await this.pinMtime(src, srcNode);
    this.dropQuota();
    let node: Node;
    try {
      const file = await this.composer.replacing(this.placeOf(dst), replaced, () =>
        shallow
          ? this.composer.copyFolderOnly(this.placeOf(dst), srcNode.dav)
          : this.composer.copy(this.placeOf(src), this.placeOf(dst), this.clashes(src, dst)),
      );
      node = this.toNode(dst.path, file);
    } catch (err) {
      this.cache.invalidate(dst.path);
      throw err;
    }
    if (shallow) this.cache.upsertEmptyFolder(dst.path, node);
    else this.cache.upsert(dst.path, node);
    return { created: !replaced };
  }

  /**
   * Cloudreve stamps a moved item, and every file of a copy, with the time of the move (§5.4);
   * a file's own time goes along as the gateway's mtime property, written before it moves.
   * (Files inside a copied folder still take the time of the copy.)
   */
  private async pinMtime(target: Target, node: Node): Promise<void> {
    const { entry } = node;
    if (entry.isDir || entry.uploading || mtimeOverride(node.dav, node.entity) !== undefined)
      return;
    await this.setModTime(target.path, entry.mtimeMs);
  }

  async getDeadProps(paths: readonly string[]): Promise<DeadProp[][]> {
    const props: DeadProp[][] = [];
    for (const path of paths) {
      const target = this.target(path);
      // A listing's members are all cached: no promise per member for those.
      const node = this.cache.lookup(target.path) ?? (await this.nodeAt(target));
      props.push(decodeDeadProps(node.dav));
    }
    return props;
  }

  async setDeadProps(path: string, patch: PropPatch): Promise<void> {
    const target = this.target(path);
    const patches = metadataPatches(patch);
    const node = await this.nodeAt(target);
    if (patches.length === 0) return;
    // Cloudreve refuses metadata on the root (§5.7).
    if (target.segments.length === 0) throw new Forbidden("the root cannot hold properties");
    try {
      await this.api.patchMetadata([target.uri], patches);
    } catch (err) {
      if (err instanceof NotFound) this.cache.invalidate(target.path);
      throw err;
    }
    // `dav:` patches leave updated_at alone (§4.4), so only the properties change.
    this.cache.replace(target.path, { ...node, dav: applyPatches(node.dav, patches) });
  }

  /**
   * What an upload leaves beside the content, in one metadata call: the checksums of the bytes
   * sent, for the version they became (an empty file's go without saying), and the client's
   * time when the upload could not carry it (only an upload session sets `updated_at`).
   */
  private async recordVersion(
    target: Target,
    node: Node,
    checksums: Checksums,
    mtimeMs?: number,
  ): Promise<Node> {
    const patches: MetadataPatch[] = [];
    if (node.entry.size > 0) patches.push(checksumsPatch(node.entity, checksums));
    if (mtimeMs !== undefined && node.entry.mtimeMs !== mtimeMs)
      patches.push(mtimePatch(node.entity, mtimeMs));
    if (patches.length === 0) return node;
    await this.api.patchMetadata([target.uri], patches);
    const entry = { ...node.entry, mtimeMs: mtimeMs ?? node.entry.mtimeMs, checksums };
    return { ...node, entry, dav: applyPatches(node.dav, patches) };
  }

  /** Something changed upstream at `path`: it, its subtree and its parent's listing are looked up again. */
  forget(path: string): void {
    this.cache.invalidate(this.target(path).path);
  }

  /** The upstream may have changed anywhere: everything is looked up again. */
  forgetAll(): void {
    this.cache.clear();
  }

  /** How long what is looked up from now on is trusted (shorter without change events). */
  setCacheTtl(ms: number): void {
    this.cache.setTtl(ms);
  }

  /** Records a file's modification time without touching its content. */
  async setModTime(path: string, mtimeMs: number): Promise<Entry> {
    const target = this.target(path);
    const node = await this.nodeAt(target);
    if (node.entry.isDir) throw new WrongType(`${target.path} is a folder`);
    const patches = [mtimePatch(node.entity, mtimeMs)];
    try {
      await this.api.patchMetadata([target.uri], patches);
    } catch (err) {
      if (err instanceof NotFound) this.cache.invalidate(target.path);
      throw err;
    }
    const entry = { ...node.entry, mtimeMs };
    this.cache.replace(target.path, { ...node, entry, dav: applyPatches(node.dav, patches) });
    return entry;
  }

  async quota(): Promise<Quota> {
    const cached = this.quotaCache;
    if (cached && cached.expiresAt > this.now()) return cached.value;
    return this.cache.singleFlight("quota", async () => {
      const generation = this.quotaGeneration;
      const { total, used } = await this.api.capacity();
      const value = { used, available: Math.max(0, total - used) };
      // A reading taken across a write or remove may already be out of date.
      if (generation === this.quotaGeneration) {
        this.quotaCache = { value, expiresAt: this.now() + QUOTA_TTL_MS };
      }
      return value;
    });
  }

  private dropQuota(): void {
    this.quotaCache = undefined;
    this.quotaGeneration++;
  }

  private target(path: string): Target {
    return new Target(path, this.rootUri);
  }

  private placeOf(target: Target): Place {
    return {
      parentUri: joinUri(this.rootUri, target.segments.slice(0, -1)),
      name: nameOf(target.path),
    };
  }

  /** The node at a path, from the cache or loaded once for all concurrent askers. */
  private async nodeAt(target: Target): Promise<Node> {
    const known = this.cache.lookup(target.path);
    this.observer?.cacheLookup("entry", known !== undefined);
    if (known === null) throw new NotFound(`${target.path} does not exist`);
    if (known) return known;
    // Cloudreve cannot hold such a name, so nothing is there to ask about.
    if (!target.segments.every(nameAllowed)) throw new NotFound(`${target.path} does not exist`);
    return this.cache.singleFlight(
      `entry:${target.path}`,
      () => (target.segments.length === 0 ? this.loadRoot(target) : this.loadNode(target)),
      { kind: "entry", path: target.path },
    );
  }

  private async nodeIfAny(target: Target): Promise<Node | undefined> {
    try {
      return await this.nodeAt(target);
    } catch (err) {
      if (err instanceof NotFound) return undefined;
      throw err;
    }
  }

  private async loadNode(target: Target): Promise<Node> {
    const ticket = this.cache.ticket();
    try {
      const node = this.toNode(target.path, await this.api.info(target.uri));
      this.cache.storeNode(target.path, node, ticket);
      return node;
    } catch (err) {
      if (err instanceof NotFound) this.cache.storeNode(target.path, null, ticket);
      throw err;
    }
  }

  /**
   * `GET /file/info` refuses the root (§5.1): the first page of its listing names it as
   * `parent`, and when that page is the whole listing it is kept too.
   */
  private async loadRoot(target: Target): Promise<Node> {
    const ticket = this.cache.ticket();
    const pages = this.api.list(target.uri);
    const first = await pages.next();
    await pages.return(undefined);
    if (first.done) throw new NotFound("the root folder did not answer");
    const page = first.value;
    const node = this.toNode(target.path, page.parent);
    this.cache.storeNode(target.path, node, ticket);
    if (isComplete(page))
      this.cache.storeListing(target.path, this.childNodes(target, page), ticket);
    return node;
  }

  private async loadListing(target: Target): Promise<Node[]> {
    const ticket = this.cache.ticket();
    const children: Node[] = [];
    let parent: Parent | undefined;
    for await (const page of this.api.list(target.uri)) {
      parent ??= page.parent;
      children.push(...this.childNodes(target, page));
    }
    this.cache.storeListing(target.path, children, ticket);
    if (parent) this.cache.storeNode(target.path, this.toNode(target.path, parent), ticket);
    return children;
  }

  private childNodes(target: Target, page: ListResponse): Node[] {
    return page.files.map((f) => this.toNode(childOf(target.path, f.name), f));
  }

  /** The folder a new item at `t` goes into: MissingParent when it is absent or a file. */
  private async parentFolder(target: Target): Promise<void> {
    // Refused here, before any upstream call, rather than by Cloudreve half-way through a composition.
    if (!nameAllowed(nameOf(target.path)))
      throw new BadName(`Cloudreve does not allow the name ${JSON.stringify(nameOf(target.path))}`);
    const parent = this.target(parentOf(target.path));
    const node = await this.nodeIfAny(parent);
    if (!node?.entry.isDir) throw new MissingParent(`${parent.path} is not an existing folder`);
  }

  /** The checks MOVE and COPY share, in WebDAV's order; returns what the composition needs. */
  private async prepareTransfer(from: string, to: string, overwrite: boolean) {
    const src = this.target(from);
    const dst = this.target(to);
    if (src.segments.length === 0 || dst.segments.length === 0) {
      throw new Forbidden("the root cannot be moved, copied or replaced");
    }
    const srcNode = await this.nodeAt(src);
    if (isSameOrBelow(dst.path, src.path) || isSameOrBelow(src.path, dst.path)) {
      throw new Forbidden(`${src.path} and ${dst.path} contain each other`);
    }
    await this.parentFolder(dst);
    const existing = await this.nodeIfAny(dst);
    if (existing && !overwrite) throw new PreconditionFailed(`${dst.path} exists`);
    return { src, dst, srcNode, replaced: existing !== undefined };
  }

  /**
   * Whether the destination folder is known to hold another item with the source's name (the
   * destination itself does not count: a replaced destination is moved aside first).
   */
  private clashes(src: Target, dst: Target): boolean {
    const there = childOf(parentOf(dst.path), nameOf(src.path));
    return there !== src.path && there !== dst.path && Boolean(this.cache.lookup(there));
  }

  private toNode(path: string, file: Parent): Node {
    const isDir = file.type === FILE_TYPE_FOLDER;
    const entity = file.primary_entity ?? "";
    const dav = davMetadata(file.metadata);
    const mtimeMs =
      (isDir ? undefined : mtimeOverride(dav, entity)) ?? timestampToEpochMs(file.updated_at);
    const uploading = file.metadata?.["sys:upload_session_id"] !== undefined;
    return {
      entry: {
        path,
        name: path === "/" ? "" : nameOf(path),
        isDir,
        size: file.size,
        etag: isDir ? `${file.id}-${mtimeMs}` : entity,
        mtimeMs,
        ctimeMs: timestampToEpochMs(file.created_at),
        uploading,
        checksums:
          isDir || uploading
            ? undefined
            : file.size === 0
              ? NO_BYTES_CHECKSUMS
              : storedChecksums(dav, entity),
      },
      entity,
      dav,
    };
  }
}
