import type { Readable } from "node:stream";
import { z } from "zod";
import type { GatewayError } from "../errors.js";
import { BatchFailed } from "./errors.js";
import { splitBatches, type RequestPriority } from "./queue.js";
import { Transport, type TransportOptions } from "./transport.js";
import { UploadJournal, type JournalLog } from "./upload-journal.js";
import {
  CapacitySchema,
  FileSchema,
  FileUrlResponseSchema,
  ListResponseSchema,
  PingSchema,
  SiteConfigExplorerSchema,
  UploadSessionSchema,
  UserSchema,
  type File,
  type ListResponse,
  type UploadSession,
} from "./types.js";

const Nothing = z.unknown();
/** The page size asked for before the server has told its `max_page_size` (its default). */
const FIRST_PAGE_SIZE = 2000;
/** `max_batched_file` default, until the site config says otherwise. */
const DEFAULT_MAX_BATCH = 3000;

export interface MetadataPatch {
  key: string;
  value?: string;
  remove?: boolean;
}

export interface UploadSessionRequest {
  uri: string;
  size: number;
  /** Modification time in milliseconds since the epoch. */
  lastModified?: number;
  /** Replace an existing file (a new version) instead of failing with Exists. */
  replace?: boolean;
  mimeType?: string;
  previous?: string;
}

export interface ApiOptions extends TransportOptions {
  /** Where open upload sessions are recorded, so a crash leaves no path locked (none: memory). */
  uploadJournalDir?: string;
  log?: JournalLog;
}

/**
 * The Cloudreve v4 routes the gateway uses, typed. Knows the API, never WebDAV. Batch calls are
 * split at the site's `max_batch_size`, listings use the server's `max_page_size`.
 */
export class CloudreveApi {
  readonly transport: Transport;
  /** The upload sessions this client has open, and those an earlier run left behind. */
  readonly journal: UploadJournal;
  private maxPageSize: number | undefined;
  private maxBatch: Promise<number> | undefined;

  constructor(options: ApiOptions | Transport) {
    this.transport = options instanceof Transport ? options : new Transport(options);
    const own: ApiOptions | undefined = options instanceof Transport ? undefined : options;
    this.journal = new UploadJournal(own?.uploadJournalDir, own?.log);
    this.transport.freeLocks = (err) => this.journal.free(this, err);
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  ping(): Promise<string> {
    return this.transport.call({
      method: "GET",
      path: "/site/ping",
      schema: PingSchema,
      idempotent: true,
      anonymous: true,
    });
  }

  me() {
    return this.transport.call({
      method: "GET",
      path: "/user/me",
      schema: UserSchema,
      idempotent: true,
    });
  }

  capacity() {
    return this.transport.call({
      method: "GET",
      path: "/user/capacity",
      schema: CapacitySchema,
      idempotent: true,
    });
  }

  /** The site's batch limit, asked once. */
  private batchSize(): Promise<number> {
    this.maxBatch ??= this.transport
      .call({
        method: "GET",
        path: "/site/config/explorer",
        schema: SiteConfigExplorerSchema,
        idempotent: true,
        anonymous: true,
      })
      .then((c) => c.max_batch_size ?? DEFAULT_MAX_BATCH)
      .catch((err: unknown) => {
        this.maxBatch = undefined;
        throw err;
      });
    return this.maxBatch;
  }

  /**
   * Runs a batch route once per `max_batch_size` slice of `uris`, as if it were one call: every
   * slice runs even when an earlier one had per-item failures (the server commits the items that
   * pass, §1.3), and those failures come back together as one BatchFailed. `run` gets the
   * slice and the caller's URI count, so a one-URI slice of a larger call is not unwrapped.
   */
  private async batched(
    uris: readonly string[],
    run: (slice: string[], total: number) => Promise<unknown>,
  ): Promise<void> {
    const failed = new Map<string, GatewayError>();
    let first: BatchFailed | undefined;
    for (const slice of splitBatches(uris, await this.batchSize())) {
      try {
        await run(slice, uris.length);
      } catch (err) {
        if (!(err instanceof BatchFailed)) throw err;
        first ??= err;
        for (const [uri, e] of err.items) failed.set(uri, e);
      }
    }
    if (first) {
      throw new BatchFailed(first.message, failed, {
        code: first.code,
        correlationId: first.correlationId,
      });
    }
  }

  /**
   * One page of a folder; `cursor` is the previous page's `next_token`, or a page number in
   * offset mode together with the `pageSize` the page numbers count in.
   */
  listPage(
    uri: string,
    cursor?: { token?: string; page?: number; pageSize?: number },
    priority?: RequestPriority,
  ): Promise<ListResponse> {
    return this.transport.call({
      method: "GET",
      path: "/file",
      query: {
        uri,
        page_size: cursor?.pageSize ?? this.maxPageSize ?? FIRST_PAGE_SIZE,
        next_page_token: cursor?.token,
        page: cursor?.page,
      },
      schema: ListResponseSchema,
      idempotent: true,
      priority,
    });
  }

  /**
   * Every page of a folder, in both pagination modes (§4.2): cursor pages until `next_token`
   * is absent; offset pages until `total_items` is covered. The page size follows the
   * server's `props.max_page_size` from the first reply on, except within one offset-mode
   * walk: the server skips `page * page_size` items, so every page of a walk must be asked in
   * the size the first one was served in, or items are skipped or repeated.
   */
  async *list(uri: string, priority?: RequestPriority): AsyncGenerator<ListResponse> {
    let page = await this.listPage(uri, undefined, priority);
    // The size the first page was served in (the server clamps to max_page_size).
    const offsetPageSize = Math.min(
      page.pagination.page_size || page.props.max_page_size,
      page.props.max_page_size,
    );
    for (let index = 0; ;) {
      this.maxPageSize = page.props.max_page_size;
      yield page;
      const p = page.pagination;
      if (p.next_token) {
        page = await this.listPage(uri, { token: p.next_token }, priority);
      } else if (
        !p.is_cursor &&
        p.total_items !== undefined &&
        (index + 1) * offsetPageSize < p.total_items &&
        page.files.length > 0
      ) {
        index++;
        page = await this.listPage(uri, { page: index, pageSize: offsetPageSize }, priority);
      } else {
        return;
      }
    }
  }

  info(
    uri: string,
    options: { extended?: boolean; priority?: RequestPriority } = {},
  ): Promise<File> {
    return this.transport.call({
      method: "GET",
      path: "/file/info",
      query: { uri, extended: options.extended || undefined },
      schema: FileSchema,
      idempotent: true,
      priority: options.priority,
    });
  }

  create(uri: string, type: "file" | "folder", errOnConflict: boolean): Promise<File> {
    return this.transport.call({
      method: "POST",
      path: "/file/create",
      json: { uri, type, err_on_conflict: errOnConflict },
      schema: FileSchema,
      idempotent: !errOnConflict,
    });
  }

  rename(uri: string, newName: string): Promise<File> {
    return this.transport.call({
      method: "POST",
      path: "/file/rename",
      json: { uri, new_name: newName },
      schema: FileSchema,
      idempotent: false,
    });
  }

  /** Moves (or copies) items into the folder `dst`, keeping their names (§5.4). */
  move(uris: readonly string[], dst: string, copy = false): Promise<void> {
    return this.batched(uris, (slice, total) =>
      this.transport.call({
        method: "POST",
        path: "/file/move",
        json: { uris: slice, dst, copy },
        schema: Nothing,
        idempotent: false,
        uris: total,
      }),
    );
  }

  /** Into the trash, or gone for good with `permanent` (§5.5). */
  remove(uris: readonly string[], permanent: boolean): Promise<void> {
    return this.batched(uris, (slice, total) =>
      this.transport.call({
        method: "DELETE",
        path: "/file",
        json: { uris: slice, skip_soft_delete: permanent },
        schema: Nothing,
        idempotent: false,
        uris: total,
      }),
    );
  }

  patchMetadata(uris: readonly string[], patches: readonly MetadataPatch[]): Promise<void> {
    return this.batched(uris, (slice, total) =>
      this.transport.call({
        method: "PATCH",
        path: "/file/metadata",
        json: { uris: slice, patches },
        schema: Nothing,
        // Setting the same values twice leaves the same state.
        idempotent: true,
        uris: total,
      }),
    );
  }

  /** Whole-file write (upsert, up to the server's edit limit, §5.8). */
  putContent(
    uri: string,
    body: Buffer | Readable,
    length: number,
    previous?: string,
  ): Promise<File> {
    return this.transport.call({
      method: "PUT",
      path: "/file/content",
      query: { uri, previous },
      raw: { body, length },
      schema: FileSchema,
      // An upsert: the same bytes twice leave the same content (at worst one more old version).
      idempotent: Buffer.isBuffer(body),
      priority: "bulk",
    });
  }

  /** A signed download URL for one file's current version and its expiry (§5.9). */
  async fileUrl(
    uri: string,
    options: { priority?: RequestPriority; fresh?: boolean } = {},
  ): Promise<{ url: string; expires: string | null }> {
    const data = await this.transport.call({
      method: "POST",
      path: "/file/url",
      // `no_cache`: the server's cached URL is the one the storage just refused.
      json: { uris: [uri], no_cache: options.fresh || undefined },
      schema: FileUrlResponseSchema,
      idempotent: true,
      uris: 1,
      priority: options.priority,
    });
    return { url: data.urls[0]?.url ?? "", expires: data.expires };
  }

  /** Force-unlocks (§5.11). */
  unlock(tokens: readonly string[]): Promise<unknown> {
    return this.transport.call({
      method: "DELETE",
      path: "/file/lock",
      json: { tokens },
      schema: Nothing,
      idempotent: true,
    });
  }

  createUploadSession(r: UploadSessionRequest): Promise<UploadSession> {
    return this.transport.call({
      method: "PUT",
      path: "/file/upload",
      json: {
        uri: r.uri,
        size: r.size,
        last_modified: r.lastModified,
        entity_type: r.replace ? "version" : undefined,
        mime_type: r.mimeType,
        previous: r.previous,
      },
      schema: UploadSessionSchema,
      // Twice would open two sessions; a refusal (a proxy's 502) opened none. A lost answer is
      // the upload journal's to clean up.
      idempotent: false,
      retryAnswered: true,
      priority: "bulk",
    });
  }

  /**
   * One chunk of a local/relay upload; re-sending a chunk is harmless before completion (§6.2).
   * `body` gives the bytes per try, so the first may stream what is still arriving.
   */
  uploadChunk(
    sessionId: string,
    index: number,
    length: number,
    body: (attempt: number) => Promise<Buffer | Readable>,
    signal?: AbortSignal,
  ): Promise<unknown> {
    return this.transport.call({
      method: "POST",
      path: `/file/upload/${encodeURIComponent(sessionId)}/${index}`,
      raw: { body, length },
      schema: Nothing,
      idempotent: true,
      priority: "bulk",
      signal,
    });
  }

  cancelUpload(sessionId: string, uri: string): Promise<unknown> {
    return this.transport.call({
      method: "DELETE",
      path: "/file/upload",
      json: { id: sessionId, uri },
      schema: Nothing,
      idempotent: true,
    });
  }
}
