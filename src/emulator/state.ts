import { randomUUID } from "node:crypto";
import { rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Clock, formatTime } from "./clock.js";
import { ApiError, Code, errors } from "./errors.js";
import { EventHub } from "./events.js";
import { decodeId, encodeId, IdType } from "./hashid.js";
import { LockTable } from "./locks.js";
import {
  elementsOf,
  Ids,
  newNode,
  release,
  storedBytes,
  type Entity,
  type FileNode,
  type Policy,
  type User,
} from "./model.js";
import type { EmulatorOptions } from "./options.js";
import type { PolicyType } from "./storage/index.js";
import { formatUri, parseUri, type CloudreveUri } from "./uri.js";

export type Settings = Required<
  Omit<
    EmulatorOptions,
    "otpSecret" | "siteUrl" | "dataDir" | "extraUsers" | "s3Backend" | "chunkSize"
  >
> & { otpSecret: string | undefined; chunkSize: number | undefined };

export function resolveSettings(o: EmulatorOptions): Settings {
  return {
    port: o.port ?? 0,
    host: o.host ?? "127.0.0.1",
    email: o.email ?? "admin@example.com",
    password: o.password ?? "cloudreve-dav",
    chunkSize: o.chunkSize,
    maxPageSize: o.maxPageSize ?? 2000,
    pagination: o.pagination ?? "cursor",
    accessTtl: o.accessTtl ?? 3600,
    refreshTtl: o.refreshTtl ?? 1_209_600,
    latencyMs: o.latencyMs ?? 0,
    captcha: o.captcha ?? false,
    otpSecret: o.otpSecret,
    capacity: o.capacity ?? 1024 ** 3,
    maxBatchSize: o.maxBatchSize ?? 3000,
    maxEditSize: o.maxEditSize ?? 50 * 1024 * 1024,
    uploadSessionTtl: o.uploadSessionTtl ?? 86_400,
    entityUrlTtl: o.entityUrlTtl ?? 3600,
    trashRetention: o.trashRetention ?? 7 * 86_400,
    versionRetention: o.versionRetention === 0 ? Infinity : Math.max(1, o.versionRetention ?? 10),
    policyMaxSize: o.policyMaxSize ?? 0,
    policy: o.policy ?? "local",
    relay: o.relay ?? false,
    storageRedirect: o.storageRedirect ?? false,
    chunkConcurrency: o.chunkConcurrency ?? 1,
    utcOffsetMinutes: o.utcOffsetMinutes ?? 480,
    events: o.events ?? "on",
    eventDebounceMs: o.eventDebounceMs ?? 5000,
    eventKeepAliveMs: o.eventKeepAliveMs ?? 30_000,
  };
}

/** Navigator capabilities per filesystem (§8.1), as base64 LSB-first bitsets. */
export const Capability = {
  my: "w8edAQ==",
  trash: "AMIK",
  shared_with_me: "gAKA",
} as const;

/** An in-flight upload session (KV `upload_session_<id>` on the real server). */
export interface UploadSession {
  id: string;
  user: User;
  node: FileNode;
  /** True when the session created the node as a placeholder. */
  placeholder: boolean;
  size: number;
  chunkSize: number;
  chunks: number;
  received: Set<number>;
  lastModified: number | undefined;
  metadata: Map<string, string>;
  expiresAt: number;
  lockToken: string;
  callbackSecret: string;
  /** Where chunks POSTed to Cloudreve are written (local policy and relay). */
  tmpPath: string;
  previous: string | undefined;
  /** The object a storage provider receives the upload as, and the provider's upload id. */
  object?: { key: string; uploadId: string };
}

/** A URI resolved against the caller's view. */
export interface Target {
  uri: CloudreveUri;
  fs: "my" | "trash" | "shared_with_me";
  owner: User;
  /** The node, or undefined when the path does not exist. */
  node: FileNode | undefined;
}

export class EmulatorState {
  readonly ids = new Ids();
  readonly users: User[] = [];
  readonly locks = new LockTable(() => this.clock.now());
  readonly uploads = new Map<string, UploadSession>();
  readonly entities = new Map<number, Entity>();
  /** Signed URLs reused per entity until TTL − 600 s, as the server's URL cache does. */
  readonly urlCache = new Map<string, { url: string; expiresAt: number }>();
  siteUrl = "";
  /** Change event subscriptions, and what each operation emits to them (§5.12). */
  readonly events: EventHub;

  constructor(
    readonly settings: Settings,
    readonly dataDir: string,
    readonly clock = new Clock(),
  ) {
    this.events = new EventHub(settings.eventDebounceMs, clock);
  }

  addUser(
    email: string,
    password: string,
    capacity: number,
    policy: Policy,
    otpSecret?: string,
  ): User {
    const now = this.clock.now();
    const user = {
      id: this.users.length + 1,
      email,
      password,
      nickname: email.split("@")[0]!,
      capacity,
      policy,
      createdAt: now,
      otpSecret,
      trash: new Map(),
    } as Omit<User, "root"> as User;
    user.root = newNode(this.ids, user, null, "", 1, now);
    this.users.push(user);
    return user;
  }

  time(ms: number): string {
    return formatTime(ms, this.settings.utcOffsetMinutes);
  }

  userHashId(user: User): string {
    return encodeId(user.id, IdType.user);
  }

  userByHashId(hash: string): User | undefined {
    const id = decodeId(hash, IdType.user);
    return this.users.find((u) => u.id === id);
  }

  /** Storage charged to the user, in-flight upload reservations included (§7.1). */
  used(user: User): number {
    let reserved = 0;
    for (const s of this.uploads.values()) if (s.user === user) reserved += s.size;
    return storedBytes(user) + reserved;
  }

  /**
   * Resolves a URI for `user` the way the navigators do: anonymous → 401, another user's `my`
   * → 403, an undecodable user id → 40016, trash is one level deep.
   */
  resolve(user: User | null, raw: string): Target {
    const uri = parseUri(raw);
    switch (uri.fs) {
      case "my": {
        if (!user) throw errors.loginRequired();
        if (uri.user !== undefined) {
          const owner = this.userByHashId(uri.user);
          if (!owner) throw errors.pathNotExist();
          if (owner !== user) throw errors.permissionDenied();
        }
        let node: FileNode | undefined = user.root;
        for (const name of uri.elements) {
          node = node.children?.get(name);
          if (!node) break;
        }
        return { uri, fs: "my", owner: user, node };
      }
      case "trash": {
        if (!user) throw errors.loginRequired();
        if (uri.elements.length > 1) throw errors.pathNotExist();
        const key = uri.elements[0];
        return { uri, fs: "trash", owner: user, node: key ? user.trash.get(key) : undefined };
      }
      case "shared_with_me":
        if (!user) throw errors.loginRequired();
        if (uri.elements.length > 0) throw errors.pathNotExist();
        return { uri, fs: "shared_with_me", owner: user, node: undefined };
      case "share":
        throw new ApiError(40058, "Share link not found");
      default:
        throw errors.unknownUri();
    }
  }

  /** Like resolve, for operations that need an existing node. */
  existing(user: User | null, raw: string): Target & { node: FileNode } {
    const target = this.resolve(user, raw);
    if (!target.node) throw errors.pathNotExist();
    return target as Target & { node: FileNode };
  }

  uriOf(node: FileNode): string {
    return node.trashKey ? `cloudreve://trash/${node.trashKey}` : formatUri("my", elementsOf(node));
  }

  /** The original name of a trashed item, recovered from its restore URI. */
  displayName(node: FileNode): string {
    const restore = node.metadata.get("sys:restore_uri");
    if (!node.trashKey || !restore) return node.name;
    return parseUri(restore).elements.at(-1) ?? node.name;
  }

  /** FileResponse (service/explorer/response.go). */
  fileJson(node: FileNode, opts: { metadataObject?: boolean } = {}): Record<string, unknown> {
    const metadata =
      node.metadata.size > 0 || opts.metadataObject ? Object.fromEntries(node.metadata) : null;
    return {
      type: node.type,
      // BuildFileResponse encodes folders' ids with the file tag too (§0).
      id: encodeId(node.id, IdType.file),
      name: this.displayName(node),
      created_at: this.time(node.createdAt),
      updated_at: this.time(node.updatedAt),
      size: node.entity?.size ?? 0,
      metadata,
      path: this.uriOf(node),
      capability: node.trashKey ? Capability.trash : Capability.my,
      owned: true,
      primary_entity: encodeId(node.entity?.id ?? 0, IdType.entity),
    };
  }

  /** StoragePolicy (BuildStoragePolicy); every policy shares the emulator's limits. */
  policyJson({ id, type }: Policy): Record<string, unknown> {
    const s = this.settings;
    const policy: Record<string, unknown> = {
      id: encodeId(id, IdType.policy),
      name: id === 1 ? "Default storage policy" : `${type} storage policy`,
      type,
      max_size: s.policyMaxSize,
    };
    if (type !== "local") {
      policy.relay = s.relay;
      policy.chunk_concurrency = s.chunkConcurrency;
    }
    return policy;
  }

  /** The policy's `chunk_size`: the option, else the default of policies of that type (§6.1). */
  chunkSize(type: PolicyType): number {
    return this.settings.chunkSize ?? (type === "onedrive" ? 50 : 25) * 1024 * 1024;
  }

  /** A temporary path under the data directory, for an upload or a body being received. */
  tmpPath(): string {
    return join(this.dataDir, "tmp", randomUUID());
  }

  /**
   * Turns a fully written temporary file into a new entity (a new version blob). With a storage
   * provider the server writes it into the storage as an object, as it does for its own writes.
   */
  async createEntity(tmp: string, size: number, owner: User): Promise<Entity> {
    const { policy } = owner;
    if (policy.storage) {
      const key = policy.storage.objects.newKey(owner.id);
      await policy.storage.backend.putObject(key, tmp);
      return this.objectEntity(key, size, policy);
    }
    const id = this.ids.entity();
    const blob = join(this.dataDir, "blobs", String(id));
    await rename(tmp, blob);
    const remove = () => unlink(blob);
    return this.addEntity({ id, size, blob, policy, remove, createdAt: this.clock.now(), refs: 1 });
  }

  /** An entity for an object already in a provider's storage (a completed upload). */
  objectEntity(key: string, size: number, policy: Policy): Entity {
    const { backend } = policy.storage!;
    const entity = { id: this.ids.entity(), size, storageKey: key, policy };
    const remove = () => backend.deleteObject(key);
    return this.addEntity({ ...entity, remove, createdAt: this.clock.now(), refs: 1 });
  }

  private addEntity(entity: Entity): Entity {
    this.entities.set(entity.id, entity);
    return entity;
  }

  /**
   * Makes `entity` the node's current version. The replaced one is kept as an old version, up
   * to the owner's retention limit with the current one counted (CompleteUpload's
   * maxVersions); the oldest beyond it go.
   */
  setVersion(node: FileNode, entity: Entity, updatedAt: number): void {
    if (node.entity) node.versions.unshift(node.entity);
    node.entity = entity;
    node.updatedAt = updatedAt;
    for (const gone of node.versions.splice(this.settings.versionRetention - 1)) release(gone);
  }

  /** 40074 for batches above `max_batched_file` (middleware/file.go). */
  checkBatch(uris: string[]): void {
    if (uris.length > this.settings.maxBatchSize) {
      throw new ApiError(Code.TooManyUris, "Too many uris");
    }
  }
}

/** Cloudreve's boolset: bit n in byte n/8 under mask 1<<(n%8), standard base64 (§0). */
export function encodeBitset(bits: readonly number[]): string {
  const bytes = Buffer.alloc(Math.max(0, ...bits.map((b) => Math.floor(b / 8) + 1)));
  for (const b of bits) bytes[Math.floor(b / 8)]! |= 1 << (b % 8);
  return bytes.toString("base64");
}

/** The default User group (inventory/migration.go): share, share_download, redirected_source. */
const USER_GROUP_PERMISSIONS = encodeBitset([2, 7, 11]);

/** User (service/user/response.go BuildUser) as the caller sees themselves. */
export function userJson(state: EmulatorState, user: User): Record<string, unknown> {
  return {
    id: state.userHashId(user),
    email: user.email,
    nickname: user.nickname,
    status: "active",
    created_at: state.time(user.createdAt),
    // Policy 1's is the default User group; another policy's group comes after Anonymous (3).
    group: {
      id: encodeId(user.policy.id === 1 ? 2 : user.policy.id + 2, IdType.group),
      name: user.policy.id === 1 ? "User" : `User (${user.policy.type})`,
      permission: USER_GROUP_PERMISSIONS,
      direct_link_batch_size: 10,
      trash_retention: state.settings.trashRetention,
    },
    language: "en-US",
  };
}

export function anonymousUserJson(): Record<string, unknown> {
  return {
    id: encodeId(0, IdType.user),
    nickname: "",
    created_at: "0001-01-01T00:00:00Z",
    anonymous: true,
    group: { id: encodeId(3, IdType.group), name: "Anonymous", permission: encodeBitset([1]) },
  };
}
