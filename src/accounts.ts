import { createHash } from "node:crypto";
import { join } from "node:path";
import { CloudreveApi } from "./cloudreve/api.js";
import { ChangeFeed, loadClientId } from "./cloudreve/events.js";
import type { RequestQueueStats } from "./cloudreve/queue.js";
import type { UpstreamObserver } from "./cloudreve/transport.js";
import type { Token } from "./cloudreve/types.js";
import { needsOwnAccount, type AccountCredentials, type GatewayUser } from "./config.js";
import type { LockSystem } from "./dav/locks.js";
import type { Workspace } from "./dav/server.js";
import { AnnouncedDrive } from "./drive/announced.js";
import { AppleDoubleOverlay } from "./drive/appledouble.js";
import type { ChangeBus } from "./shared/changes.js";
import type { SharedState } from "./shared/state.js";
import { Drive, type DriveObserver } from "./drive/drive.js";
import type { FileSystem } from "./drive/types.js";
import { BadRequest, CredentialInvalid, LoginRejected, UpstreamError } from "./errors.js";
import type { Logger } from "./log.js";
import type { GatewayConfig } from "./server.js";

/** Resolves with `promise` or after `ms`, whichever comes first; true when it settled. */
export function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** After the drain, how long cut requests get to clean up upstream (cancel upload sessions). */
const CLEANUP_MS = 10_000;

/** A name for one account on one site, for the files the gateway keeps of it. */
export function accountName(upstream: string, credentials: AccountCredentials): string {
  const site = new URL(upstream).host.replace(/[^A-Za-z0-9.-]/g, "_");
  const who = credentials.email
    ? credentials.email.replace(/[^A-Za-z0-9.@-]/g, "_")
    : // Two accounts given by refresh token alone must not share files; the token never shows.
      `token-${createHash("sha256")
        .update(credentials.refreshToken ?? "")
        .digest("hex")
        .slice(0, 12)}`;
  return `${site}-${who}`;
}

/** Where an account's token pair is kept: `cloudreve-dav login` writes it, the gateway reads it. */
export const stateFileOf = (stateDir: string, name: string) => join(stateDir, `${name}.json`);

/**
 * Keeps the drive's cache in step with Cloudreve's change events on the served folder (§5.12):
 * each event forgets the paths it names, and while events flow what is cached is trusted for
 * the longer lifetime. Whatever may have been missed (a reconnect, a full buffer) forgets
 * everything; without events the shorter lifetime alone applies.
 */
function followChanges(
  api: CloudreveApi,
  drive: Drive,
  config: GatewayConfig,
  log: Logger,
  /** Whether the stream is open now, for the metrics. */
  stream: { up: boolean },
) {
  const ttl = { cacheTtlSeconds: config.cacheTtlSeconds };
  // A cache turned off (TTL 0) stays off: events only lengthen a cache that is on.
  const ttlWithEvents = config.cacheTtlSeconds === 0 ? 0 : config.cacheTtlWithEventsSeconds;
  let openedBefore = false;
  /** A stream that stopped (or never opened) is told once, until one opens again. */
  let told = false;
  return new ChangeFeed(api.transport, config.rootUri, {
    opened() {
      // Opened again, resumed or not: events may have been dropped while it was closed.
      if (openedBefore) drive.forgetAll();
      if (!openedBefore || told) {
        const withEvents = { cacheTtlSeconds: ttlWithEvents };
        log.info(withEvents, "following Cloudreve's change events");
      }
      openedBefore = stream.up = true;
      told = false;
      drive.setCacheTtl(ttlWithEvents * 1000);
    },
    changed(events, complete) {
      if (!complete) return drive.forgetAll();
      try {
        // Paths are relative to the subscribed folder, which is the gateway's "/".
        for (const { from, to } of events)
          for (const path of [from, to]) if (path) drive.forget(path);
      } catch {
        drive.forgetAll(); // a path the drive cannot take: the safe answer
      }
    },
    down(err) {
      if (stream.up) {
        drive.setCacheTtl(ttl.cacheTtlSeconds * 1000);
        drive.forgetAll();
      }
      if (!told) {
        log.warn(
          { ...ttl, problem: err.message },
          "Cloudreve's change events stopped: reconnecting, and trusting the cache for the shorter time meanwhile",
        );
      }
      stream.up = false;
      told = true;
    },
    unavailable(err) {
      log.info(
        { ...ttl, problem: err.message },
        "Cloudreve sends no change events (turned off, or older than 4.11): the cache is trusted for the shorter time",
      );
    },
  });
}

/**
 * One Cloudreve account the gateway works in, with everything that is its own: the token pair
 * (kept in the state folder), the client and its request queue, the drive and its cache, the
 * change subscription and the WebDAV locks. Accounts do not share a queue, so one user's
 * upload cannot hold the calls another user's listing waits for.
 */
class Account {
  readonly fs: FileSystem;
  /** Requests working in the account now. */
  inUse = 0;
  lastUsed = Date.now();
  /** Cloudreve's change events are followed now (kept by followChanges). */
  readonly stream = { up: false };
  private readonly changes: ChangeFeed;
  private readonly recovered: Promise<unknown>;

  private readonly unsubscribe: () => void;

  private constructor(
    readonly api: CloudreveApi,
    readonly drive: Drive,
    readonly locks: LockSystem,
    private readonly notices: ChangeBus,
    config: GatewayConfig,
    name: string,
    /** The account in the metrics: its email, or (a token alone) its file name, never the token. */
    readonly label: string,
    log: Logger,
  ) {
    const announced = new AnnouncedDrive(drive, notices);
    this.fs =
      config.appleDouble === "local"
        ? new AppleDoubleOverlay(announced, join(config.stateDir, "appledouble", name))
        : announced;
    // What other gateway instances changed is looked up again at once.
    this.unsubscribe = notices.subscribe({
      changed(paths) {
        try {
          for (const path of paths) drive.forget(path);
        } catch {
          drive.forgetAll(); // a path the drive cannot take: the safe answer
        }
      },
      reset: () => drive.forgetAll(),
    });
    // Upload sessions a crash left behind hold their paths locked upstream for a day: cancel
    // them. In the background, so an unreachable upstream does not delay the start.
    this.recovered = api.journal
      .recover(api)
      .catch((err: unknown) =>
        log.warn({ err }, "could not cancel the upload sessions of an earlier run"),
      );
    this.changes = followChanges(api, drive, config, log, this.stream);
  }

  static async open(
    config: GatewayConfig,
    credentials: AccountCredentials,
    log: Logger,
    onRefused: (err: Error) => void,
    observer: (UpstreamObserver & DriveObserver) | undefined,
    shared: SharedState,
  ): Promise<Account> {
    const name = accountName(config.upstream, credentials);
    const notices = await shared.changesOf(name);
    const api = new CloudreveApi({
      baseUrl: config.upstream,
      // One client id per account and worker of `--workers`, not one for all: Cloudreve keeps
      // one subscriber per client id, and two streams open with the same id would share its
      // queue, each getting only some of the events. Worker 1 (or the only process) keeps the
      // plain file; a restarted worker takes its slot's id and resumes that subscription.
      // Cloudreve does not send a client its own changes; those of another worker do come back
      // (a few seconds later, after the change bus, `notices`, told at once): harmless.
      clientId: await loadClientId(
        join(
          config.stateDir,
          "client-id",
          (config.workerSlot ?? 1) > 1 ? `${name}.worker-${config.workerSlot}` : name,
        ),
      ),
      ...credentials,
      stateFile: stateFileOf(config.stateDir, name),
      // Shared by the processes of `--workers`: each record names the pid whose session it is,
      // and recovery at start cancels only those of processes no longer alive (a worker the
      // primary restarts cancels what its dead predecessor left, never a live sibling's).
      uploadJournalDir: join(config.stateDir, "uploads", name),
      log,
      timeouts: {
        connectMs: config.upstreamConnectTimeoutSeconds * 1000,
        headersMs: config.upstreamResponseTimeoutSeconds * 1000,
        bodyIdleMs: config.upstreamIdleTimeoutSeconds * 1000,
      },
      queue: { concurrency: config.concurrency },
      auth: { onCredentialsRefused: onRefused },
      observer,
    });
    const drive = new Drive(api, {
      rootUri: config.rootUri,
      cacheTtlMs: config.cacheTtlSeconds * 1000,
      maxEntries: config.cacheMaxEntries,
      permanentDelete: config.permanentDelete,
      directUploadMaxBytes: config.directUploadMaxBytes,
      account: credentials.email ?? "token",
      log,
      observer,
    });
    const locks = shared.locksOf(name);
    return new Account(api, drive, locks, notices, config, name, credentials.email ?? name, log);
  }

  /** Lets go: the event stream, then what is still being cleaned up, then the connections. */
  async close(log: Logger): Promise<void> {
    // The stream never ends by itself: it would hold the upstream connections open.
    await this.changes.close();
    this.unsubscribe();
    await this.notices.close();
    if (!(await within(Promise.all([this.drive.writesSettled(), this.recovered]), CLEANUP_MS))) {
      log.warn("upstream clean-up did not finish in time");
    }
    if (!(await within(this.api.close(), CLEANUP_MS))) {
      log.warn("upstream connections did not close in time");
    }
  }
}

/** One open account, as the metrics show it. */
export interface AccountStatus {
  account: string;
  /** Cloudreve's change events are followed now. */
  following: boolean;
}

/** The key of the gateway's own account (`--email`, `--refresh-token`). */
const OWN = "";

/**
 * Who works in which account. With `auth: "users"`, users work in the gateway's own account
 * unless their entry names another; with `auth: "cloudreve"`, each user works in their own,
 * opened when they first sign in. An account nobody has used for `accountIdleSeconds`, with no
 * lock held, is closed (the gateway's own stays).
 */
export class Accounts {
  private readonly open = new Map<string, Account>();
  private readonly opening = new Map<string, Promise<Account>>();
  /** With Cloudreve sign-in: each user's checked password and the pair that check obtained. */
  private readonly signedIn = new Map<string, { password: string; token: Token }>();
  private readonly users = new Map<string, GatewayUser>();
  /** Anonymous: checks Cloudreve passwords and whether the site answers. */
  private readonly site: CloudreveApi;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly config: GatewayConfig,
    private readonly log: Logger,
    /** Where each account's locks and change notices live (this process, or Redis). */
    private readonly shared: SharedState,
    /**
     * A user's checked sign-in no longer holds (Cloudreve refused their credentials, or their
     * account was closed while idle): they must be checked again on their next request.
     */
    private readonly forgetSignIn: (user: string) => void = () => {},
    /** Told of every upstream call and of the drives' caches and uploads (the metrics). */
    private readonly observer?: UpstreamObserver & DriveObserver,
  ) {
    // With Cloudreve sign-in, entries are named by email, which Cloudreve compares regardless of case.
    const nameOf = (name: string) => (config.auth === "cloudreve" ? name.toLowerCase() : name);
    for (const user of config.users) this.users.set(nameOf(user.name), user);
    this.site = new CloudreveApi({
      baseUrl: config.upstream,
      queue: { concurrency: 4 },
      observer,
    });
    const idleMs = config.accountIdleSeconds * 1000;
    this.sweeper = setInterval(() => void this.sweep(idleMs), Math.min(60_000, idleMs / 2));
    this.sweeper.unref();
  }

  /** Opens the gateway's own account, so its event stream is followed from the start. */
  async start(): Promise<void> {
    if (needsOwnAccount(this.config)) await this.account(OWN);
  }

  /**
   * Whether Cloudreve takes this email and password (`auth: "cloudreve"`): the user's canonical
   * name, the email in lower case (Cloudreve compares emails regardless of case), or undefined.
   */
  async checkCloudreveLogin(email: string, password: string): Promise<string | undefined> {
    const user = email.toLowerCase();
    try {
      const token = await this.site.logIn(email, password);
      this.signedIn.set(user, { password, token });
      await this.open.get(user)?.api.transport.auth.adopt(token);
      return user;
    } catch (err) {
      // BadRequest: Cloudreve refused the shape (not an email, a password under 4 characters).
      if (
        err instanceof LoginRejected ||
        err instanceof CredentialInvalid ||
        err instanceof BadRequest
      ) {
        this.log.info({ user, problem: err.message }, "Cloudreve refused a sign-in");
        return undefined;
      }
      throw err;
    }
  }

  /** The gateway's own account signs in, or (when nobody works in it) the site answers. */
  async checkUpstream(): Promise<{ user?: string; version?: string }> {
    if (!needsOwnAccount(this.config)) return { version: await this.site.ping() };
    const me = await (await this.account(OWN)).api.me();
    return { user: me.email ?? me.nickname };
  }

  /** A promise only while the account is being opened: most requests find it open. */
  workspace(user: string | undefined): Workspace | Promise<Workspace> {
    const settings = user === undefined ? undefined : this.users.get(user);
    const key = this.keyOf(user, settings);
    const open = this.open.get(key);
    if (open) return this.enter(open, settings);
    return this.account(key, settings).then((account) => this.enter(account, settings));
  }

  private enter(account: Account, settings: GatewayUser | undefined): Workspace {
    account.inUse++;
    let released = false;
    return {
      fs: account.fs,
      locks: account.locks,
      root: settings?.root ?? "/",
      readOnly: this.config.readOnly || settings?.readOnly === true,
      release() {
        if (released) return;
        released = true;
        account.inUse--;
        account.lastUsed = Date.now();
      },
    };
  }

  /** What the open accounts are doing, and every request queue's load (the site's too). */
  status(): { accounts: AccountStatus[]; queues: RequestQueueStats[] } {
    const open = [...this.open.values()];
    return {
      accounts: open.map((a) => ({ account: a.label, following: a.stream.up })),
      queues: [this.site, ...open.map((a) => a.api)].map((api) => api.transport.queue.stats),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all([...all.map((a) => a.close(this.log)), this.site.close()]);
  }

  /** One key per Cloudreve account, however its email is written: one lock table per drive. */
  private keyOf(user: string | undefined, settings: GatewayUser | undefined): string {
    if (this.config.auth === "cloudreve") return user ?? OWN;
    const named = settings?.account;
    if (!named) return OWN;
    if (!named.email) return `token:${named.refreshToken}`;
    const email = named.email.toLowerCase();
    return email === this.config.email?.toLowerCase() ? OWN : email;
  }

  private account(key: string, settings?: GatewayUser): Promise<Account> {
    const open = this.open.get(key);
    if (open) return Promise.resolve(open);
    let pending = this.opening.get(key);
    if (!pending) {
      pending = this.openAccount(key, settings).finally(() => this.opening.delete(key));
      this.opening.set(key, pending);
    }
    return pending;
  }

  private async openAccount(key: string, settings: GatewayUser | undefined): Promise<Account> {
    if (this.closed) throw new UpstreamError("the gateway is stopping", { retryable: true });
    const checked = this.config.auth === "cloudreve" ? this.signedIn.get(key) : undefined;
    if (this.config.auth === "cloudreve" && !checked) {
      // Cannot happen: a signed-in user's password was checked first. Fail closed anyway.
      throw new UpstreamError("no checked Cloudreve sign-in for this user", { retryable: true });
    }
    const credentials: AccountCredentials = checked
      ? { email: key, password: checked.password }
      : (settings?.account ?? {
          email: this.config.email,
          password: this.config.password,
          refreshToken: this.config.refreshToken,
        });
    const log = key === OWN ? this.log : this.log.child({ account: credentials.email ?? "token" });
    const user = this.config.auth === "cloudreve" ? key : undefined;
    const account = await Account.open(
      this.config,
      credentials,
      log,
      (err) => {
        // Once per outage: every request fails with this until the operator (or user) acts.
        log.error(
          { upstream: this.config.upstream, problem: err.message },
          user === undefined
            ? "Cloudreve refused the gateway's credentials: WebDAV requests answer 503 until this is fixed"
            : "Cloudreve refused this user's credentials: they must sign in again",
        );
        if (user !== undefined) this.forgetSignIn(user);
      },
      this.observer,
      this.shared,
    );
    if (checked) await account.api.transport.auth.adopt(checked.token);
    this.open.set(key, account);
    return account;
  }

  /** Closes accounts nobody has used for `idleMs`, unless they hold a lock. */
  private async sweep(idleMs: number): Promise<void> {
    const now = Date.now();
    const idle = (account: Account) => account.inUse === 0 && now - account.lastUsed >= idleMs;
    for (const [key, account] of this.open) {
      if (key === OWN || !idle(account)) continue;
      const locked = await account.locks.holdsAny();
      // While the locks were asked, a request may have taken the account, or close() closed it.
      if (locked || !idle(account) || this.open.get(key) !== account) continue;
      this.open.delete(key);
      if (this.signedIn.delete(key)) this.forgetSignIn(key);
      await account.close(this.log);
      this.log.info({ account: key.startsWith("token:") ? "token" : key }, "account idle: closed");
    }
  }
}
