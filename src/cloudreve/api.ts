import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { Exists, GatewayError, NotFound } from "../errors.js";
import { BatchFailed } from "./errors.js";
import { backoffMs, splitBatches, type RequestPriority } from "./queue.js";
import { joinUri } from "./uri.js";
import { Transport, type TransportOptions } from "./transport.js";
import type { EventLog } from "../log.js";
import { UploadJournal } from "./upload-journal.js";
import {
  finishTwoFactorLogin,
  passwordLogin,
  startLogin,
  type CaptchaAnswer,
  type UnauthenticatedCall,
} from "./auth.js";
import type { Token } from "./types.js";
import {
  CaptchaSchema,
  CapacitySchema,
  FILE_TYPE_FOLDER,
  FileSchema,
  FileUrlResponseSchema,
  ListResponseSchema,
  SiteConfigBasicSchema,
  SiteConfigExplorerSchema,
  SiteConfigLoginSchema,
  UploadSessionSchema,
  UserSchema,
  type File,
  type ListResponse,
  type UploadSession,
} from "./types.js";

const Nothing = z.unknown();
/** A non-idempotent call is made at most this many times more after transient failures. */
const REPEATS = 3;
const REPEAT_BACKOFF_MS = 200;
const REPEAT_BACKOFF_MAX_MS = 5_000;
const none = undefined;
const done = { value: undefined };

/** The error is `type`, or a batch failure whose every item is. */
function isEach(err: unknown, type: new (...args: never[]) => GatewayError): boolean {
  if (err instanceof type) return true;
  return err instanceof BatchFailed && [...err.items.values()].every((e) => e instanceof type);
}
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
  log?: EventLog;
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

  /** A login call: made without a token, and never repeated (a captcha is good for one try). */
  private readonly post: UnauthenticatedCall = (path, body, schema) =>
    this.transport.call({
      method: "POST",
      path,
      json: body,
      schema,
      anonymous: true,
      idempotent: false,
    });

  private siteGet<T>(path: string, schema: z.ZodType<T>): Promise<T> {
    return this.transport.call({ method: "GET", path, schema, idempotent: true, anonymous: true });
  }

  /** Checks a password by logging in with it: the new token pair, or LoginRejected. */
  logIn(email: string, password: string): Promise<Token> {
    return passwordLogin(this.post, email, password);
  }

  /** A login step by step, for a person who can answer a captcha and a 2FA code (§2.2). */
  startLogIn(email: string, password: string, captcha?: CaptchaAnswer) {
    return startLogin(this.post, email, password, captcha);
  }

  finishLogIn(twoFactorSession: string, otp: string): Promise<Token> {
    return finishTwoFactorLogin(this.post, twoFactorSession, otp);
  }

  /** The captcha type a password login needs (§2.2, §7.3), or undefined when it needs none. */
  async loginCaptcha(): Promise<string | undefined> {
    const login = await this.siteGet("/site/config/login", SiteConfigLoginSchema);
    if (!login.login_captcha) return undefined;
    const basic = await this.siteGet("/site/config/basic", SiteConfigBasicSchema);
    return basic.captcha_type || "normal"; // absent: Cloudreve's default type
  }

  /** A new image captcha (§2.2). */
  captcha() {
    return this.siteGet("/site/captcha", CaptchaSchema);
  }

  /** The server's version (§7.3): a call that needs no account. */
  ping() {
    return this.siteGet("/site/ping", z.string());
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
    const createOnce = () =>
      this.transport.call({
        method: "POST",
        path: "/file/create",
        json: { uri, type, err_on_conflict: errOnConflict },
        schema: FileSchema,
        idempotent: !errOnConflict,
      });
    // It is there with the type asked for: made by an earlier try.
    const made = async () => {
      const file = await this.infoIfAny(uri);
      return file && (file.value.type === FILE_TYPE_FOLDER) === (type === "folder") ? file : none;
    };
    return this.repeatable(createOnce, made, (err) => err instanceof Exists);
  }

  rename(uri: string, newName: string): Promise<File> {
    const renamed = joinUri(uri.slice(0, uri.lastIndexOf("/") + 1), [newName]);
    const renameOnce = () =>
      this.transport.call({
        method: "POST",
        path: "/file/rename",
        json: { uri, new_name: newName },
        schema: FileSchema,
        idempotent: false,
      });
    // The source is gone and the new name is there: an earlier try renamed it.
    const renamedAlready = async () =>
      (await this.infoIfAny(uri)) ? none : await this.infoIfAny(renamed);
    return this.repeatable(
      renameOnce,
      renamedAlready,
      (err) => err instanceof NotFound || err instanceof Exists,
    );
  }

  /** Moves (or copies) items into the folder `dst`, keeping their names (§5.4). */
  move(uris: readonly string[], dst: string, copy = false): Promise<void> {
    const moveOnce = () =>
      this.batched(uris, (slice, total) =>
        this.transport.call({
          method: "POST",
          path: "/file/move",
          json: { uris: slice, dst, copy },
          schema: Nothing,
          idempotent: false,
          uris: total,
        }),
      );
    // Every item is at dst (and, for a move, no longer at its source). The composer copies and
    // moves only where the name is free, so an item there by that name is the earlier try's.
    const landed = async () => {
      const names = uris.map((u) => decodeURIComponent(u.slice(u.lastIndexOf("/") + 1)));
      const there = await Promise.all(names.map((n) => this.infoIfAny(joinUri(dst, [n]))));
      if (!there.every(Boolean)) return none;
      if (copy) return done;
      const left = await Promise.all(uris.map((u) => this.infoIfAny(u)));
      return left.some(Boolean) ? none : done;
    };
    return this.repeatable(moveOnce, landed, (err) =>
      copy ? isEach(err, Exists) : isEach(err, NotFound),
    );
  }

  /** Into the trash, or gone for good with `permanent` (§5.5). */
  remove(uris: readonly string[], permanent: boolean): Promise<void> {
    const removeOnce = () =>
      this.batched(uris, (slice, total) =>
        this.transport.call({
          method: "DELETE",
          path: "/file",
          json: { uris: slice, skip_soft_delete: permanent },
          schema: Nothing,
          idempotent: false,
          uris: total,
        }),
      );
    const gone = async () => {
      const left = await Promise.all(uris.map((u) => this.infoIfAny(u)));
      return left.some(Boolean) ? none : done;
    };
    return this.repeatable(removeOnce, gone, (err) => isEach(err, NotFound));
  }

  /**
   * A call that is not idempotent made safe to repeat after a transient failure (a reset, a
   * proxy's 502, a timeout), which may or may not have taken effect upstream. It is made again;
   * when a repeat is refused in a way an earlier success would explain (`refusal`), or the
   * transient failures go on, the upstream state (`landed`) decides whether it happened.
   */
  private async repeatable<T>(
    once: () => Promise<T>,
    landed: () => Promise<{ value: T } | undefined>,
    refusal: (err: unknown) => boolean,
  ): Promise<T> {
    let mayHaveActed = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return await once();
      } catch (err) {
        const transient = err instanceof GatewayError && err.retryable;
        const last = attempt >= REPEATS;
        if ((mayHaveActed && refusal(err)) || (transient && last)) {
          // A state check that fails itself settles nothing: the call's own error stands.
          const result = await landed().catch(() => none);
          if (result) return result.value;
        }
        if (!transient || last) throw err;
        // Lost on the way, or a proxy's word that the upstream failed while on it; a 503 is
        // a refusal to start.
        const status = (err as GatewayError).httpStatus;
        mayHaveActed ||= status === undefined || status === 502 || status === 504;
        await sleep(backoffMs(attempt, REPEAT_BACKOFF_MS, REPEAT_BACKOFF_MAX_MS));
      }
    }
  }

  /** The file at `uri`, wrapped; undefined when there is none. */
  private async infoIfAny(uri: string): Promise<{ value: File } | undefined> {
    try {
      return { value: await this.info(uri) };
    } catch (err) {
      if (err instanceof NotFound) return undefined;
      throw err;
    }
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

  /**
   * A signed download URL for one file and its expiry (§5.9): of the version `entity` when
   * given (NotFound once it is no longer kept), else of the current one.
   */
  async fileUrl(
    uri: string,
    options: { entity?: string; priority?: RequestPriority; fresh?: boolean } = {},
  ): Promise<{ url: string; expires: string | null }> {
    const data = await this.transport.call({
      method: "POST",
      path: "/file/url",
      // `no_cache`: the server's cached URL is the one the storage just refused.
      json: { uris: [uri], entity: options.entity, no_cache: options.fresh || undefined },
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

  createUploadSession(session: UploadSessionRequest): Promise<UploadSession> {
    return this.transport.call({
      method: "PUT",
      path: "/file/upload",
      json: {
        uri: session.uri,
        size: session.size,
        last_modified: session.lastModified,
        entity_type: session.replace ? "version" : undefined,
        mime_type: session.mimeType,
        previous: session.previous,
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
      route: "/file/upload/:sessionId/:index",
      raw: { body, length },
      schema: Nothing,
      idempotent: true,
      priority: "bulk",
      signal,
    });
  }

  /**
   * The client callback of the policies whose storage does not call Cloudreve itself (§6.2,
   * §6.6): Cloudreve checks the stored object's size and completes the upload.
   */
  uploadCallback(policyType: string, sessionId: string, secret: string): Promise<unknown> {
    const segments = [policyType, sessionId, secret].map(encodeURIComponent).join("/");
    return this.transport.call({
      method: policyType === "onedrive" ? "POST" : "GET",
      path: `/callback/${segments}`,
      route: `/callback/${policyType}/:sessionId/:key`,
      schema: Nothing,
      // Repeating it after a lost answer finds the session gone; the caller checks the file.
      idempotent: true,
      anonymous: true,
      priority: "bulk",
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
