import { randomUUID } from "node:crypto";
import { errors } from "./errors.js";
import type { PolicyType, Storage } from "./storage/index.js";

/**
 * A storage policy of the site. Each account uses its group's policy, as on a real server: the
 * primary account's is the default policy (id 1) of the default User group, any other type in
 * use is a policy of its own with a group of its own.
 */
export interface Policy {
  readonly type: PolicyType;
  readonly id: number;
  /** The provider's objects, upload protocol and origin; undefined for `local`. */
  readonly storage?: Storage;
}

/** A stored blob version (Cloudreve's entity). Copies share entities; the blob goes with the last. */
export interface Entity {
  id: number;
  size: number;
  /** Blob path on disk, for a version the server keeps itself (the local policy). */
  blob?: string;
  /** The object key when the blob is an object of the storage provider's. */
  storageKey?: string;
  /** The policy the version was stored with. */
  policy: Policy;
  /** Removes the blob, wherever it is; called when the last reference goes. */
  remove(): Promise<void>;
  createdAt: number;
  refs: number;
}

export interface FileNode {
  id: number;
  type: 0 | 1;
  name: string;
  parent: FileNode | null;
  owner: User;
  createdAt: number;
  updatedAt: number;
  /** Current version; null for folders and for files never written (entity 0). */
  entity: Entity | null;
  /** Older versions kept by version retention, newest first (§6.5). */
  versions: Entity[];
  metadata: Map<string, string>;
  /** Children by name (names are case-sensitive, as on SQLite and Postgres). Folders only. */
  children: Map<string, FileNode> | null;
  /** Set while the node sits in the trash: its key there. */
  trashKey?: string;
}

export interface User {
  id: number;
  email: string;
  password: string;
  nickname: string;
  capacity: number;
  policy: Policy;
  createdAt: number;
  otpSecret: string | undefined;
  root: FileNode;
  /** Top-level trashed items by their UUID name. */
  trash: Map<string, FileNode>;
}

/** Name rules of pkg/filemanager/fs/dbfs/validator.go. */
export function validateName(name: string): void {
  if (
    name === "" ||
    Buffer.byteLength(name, "utf8") > 255 ||
    name === "." ||
    name === ".." ||
    /[\\/:*?"<>|]/.test(name)
  ) {
    throw errors.invalidName();
  }
}

export function elementsOf(node: FileNode): string[] {
  const out: string[] = [];
  for (let n: FileNode | null = node; n?.parent; n = n.parent) out.unshift(n.name);
  return out;
}

export function* walk(node: FileNode): Generator<FileNode> {
  yield node;
  if (node.children) for (const child of node.children.values()) yield* walk(child);
}

export function isAncestorOrSelf(ancestor: FileNode, node: FileNode): boolean {
  for (let n: FileNode | null = node; n; n = n.parent) if (n === ancestor) return true;
  return false;
}

/** Ids and entity bookkeeping shared by every account. */
export class Ids {
  private nextFile = 1;
  private nextEntity = 1;
  file(): number {
    return this.nextFile++;
  }
  entity(): number {
    return this.nextEntity++;
  }
}

export function newNode(
  ids: Ids,
  owner: User,
  parent: FileNode | null,
  name: string,
  type: 0 | 1,
  now: number,
): FileNode {
  const node: FileNode = {
    id: ids.file(),
    type,
    name,
    parent,
    owner,
    createdAt: now,
    updatedAt: now,
    entity: null,
    versions: [],
    metadata: new Map(),
    children: type === 1 ? new Map() : null,
  };
  parent?.children!.set(name, node);
  return node;
}

export function retain(entity: Entity | null): Entity | null {
  if (entity) entity.refs++;
  return entity;
}

/** Drops one reference; the blob is removed with the last one. */
export function release(entity: Entity | null): void {
  if (!entity || --entity.refs > 0) return;
  // Nobody can reach the blob any more: a failure to remove it only wastes the emulator's disk.
  entity
    .remove()
    .catch((err: unknown) =>
      process.stderr.write(`emulator: a released blob was not removed: ${String(err)}\n`),
    );
}

/**
 * Storage charged to a user: every version, old ones included, in the tree and the trash
 * (in-flight uploads are added by the caller).
 */
export function storedBytes(user: User): number {
  let used = 0;
  const roots = [user.root, ...user.trash.values()];
  for (const root of roots) for (const n of walk(root)) used += versionsSize(n);
  return used;
}

function versionsSize(node: FileNode): number {
  return node.versions.reduce((sum, e) => sum + e.size, node.entity?.size ?? 0);
}

export const newTrashKey = (): string => randomUUID();

export function detach(node: FileNode): void {
  node.parent?.children!.delete(node.name);
  node.parent = null;
}

export function attach(node: FileNode, parent: FileNode, name: string): void {
  node.name = name;
  node.parent = parent;
  parent.children!.set(name, node);
}

/** Hard delete: the subtree's versions are released (blobs go with their last reference). */
export function purge(node: FileNode): void {
  for (const n of walk(node)) for (const e of [n.entity, ...n.versions]) release(e);
}

/** A copy shares the source's entities and gets fresh ids and times. */
export function copyTree(ids: Ids, src: FileNode, parent: FileNode, now: number): FileNode {
  const copy = newNode(ids, src.owner, parent, src.name, src.type, now);
  copy.entity = retain(src.entity);
  for (const [k, v] of src.metadata) if (k !== "sys:fulltext_index") copy.metadata.set(k, v);
  if (src.children) for (const child of src.children.values()) copyTree(ids, child, copy, now);
  return copy;
}

export function treeSize(node: FileNode): number {
  let size = 0;
  for (const n of walk(node)) size += n.entity?.size ?? 0;
  return size;
}
