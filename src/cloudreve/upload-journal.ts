import { randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { NotFound, type Locked } from "../errors.js";
import type { EventLog } from "../log.js";
import type { CloudreveApi } from "./api.js";

interface SessionRecord {
  uri: string;
  /** The process that opened it: a record of another live gateway on the same dir is its own. */
  pid?: number;
  /** Absent until Cloudreve answered the session's creation (or when that answer was lost). */
  sessionId?: string;
  openedAt: number;
}

/** One upload session this process is running. */
export interface JournalTicket {
  /** Cloudreve created the session: it is recorded before the first chunk goes. */
  started(sessionId: string): Promise<void>;
  /** The session completed or was cancelled: nothing is left upstream. */
  closed(): Promise<void>;
  /** The session may still hold its path lock upstream: leave it to be freed later. */
  abandoned(): void;
}

/** Whether a process with this pid runs (one of another user counts: it exists). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** `cloudreve://my/a%20b` and `cloudreve://my/a b` are one path. */
function pathKey(uri: string): string {
  const trimmed = uri.replace(/\/+$/, "");
  try {
    return decodeURIComponent(trimmed);
  } catch {
    return trimmed;
  }
}

/**
 * The upload sessions the gateway opened and has not finished, kept on disk. Cloudreve locks a
 * session's path for its whole lifetime (24 h by default, §5.11), so one a crash or a failed
 * cancel leaves behind would refuse every write and delete of that path. At start the leftovers
 * are cancelled; when an operation later meets an upload lock on a leftover's path, the lock is
 * freed and the operation repeated. Upload locks this process is still running, and locks held
 * by anything else (the web UI, Cloudreve's own WebDAV, another client's upload), stay.
 */
export class UploadJournal {
  /** Paths with an upload session this process is running, counted. */
  private readonly running = new Map<string, number>();
  private readonly started = Date.now();
  /** Sessions not running here that may still hold a lock, by path; file is their record. */
  private readonly leftovers = new Map<string, { record: SessionRecord; file?: string }[]>();

  constructor(
    private readonly dir: string | undefined,
    private readonly log?: EventLog,
  ) {}

  /** Records an upload about to open a session on `uri` (before the session exists). */
  async open(uri: string): Promise<JournalTicket> {
    const key = pathKey(uri);
    const record: SessionRecord = { uri, pid: process.pid, openedAt: Date.now() };
    const file = this.dir ? join(this.dir, `${randomUUID()}.json`) : undefined;
    await this.write(file, record);
    let state: "opening" | "running" | "done" = "opening";
    /** Ends the ticket; true when it was still open. */
    const end = () => {
      if (state === "done") return false;
      if (state === "running") {
        const left = (this.running.get(key) ?? 1) - 1;
        if (left > 0) this.running.set(key, left);
        else this.running.delete(key);
      }
      state = "done";
      return true;
    };
    return {
      started: async (sessionId) => {
        record.sessionId = sessionId;
        // Only from here on does a lock on the path belong to this run.
        state = "running";
        this.running.set(key, (this.running.get(key) ?? 0) + 1);
        await this.write(file, record);
      },
      closed: async () => {
        if (!end()) return;
        if (file) await rm(file, { force: true });
      },
      abandoned: () => {
        if (!end()) return;
        this.remember(record, file);
        this.log?.warn(
          { uri, session: record.sessionId },
          "an upload session may still lock its path upstream: it is cancelled when the path is " +
            "next written or deleted, or at the next start",
        );
      },
    };
  }

  /**
   * A record of a session some process is still running: this one's since it started, or
   * another live gateway's on the same dir. One with this pid from before is of an earlier
   * life (a container restarts as pid 1 again).
   */
  private isLive(record: SessionRecord): boolean {
    if (record.pid === process.pid) return record.openedAt >= this.started;
    return record.pid !== undefined && alive(record.pid);
  }

  /** Cancels what an earlier run left behind; what cannot be cancelled now stays a leftover. */
  async recover(api: CloudreveApi): Promise<void> {
    if (!this.dir) return;
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith(".json"));
    } catch {
      return; // no journal yet
    }
    for (const name of names) {
      const file = join(this.dir, name);
      let record: SessionRecord;
      try {
        record = JSON.parse(await readFile(file, "utf8")) as SessionRecord;
        if (typeof record.uri !== "string") throw new Error("no uri");
      } catch {
        await rm(file, { force: true }); // torn while written: it never reached Cloudreve
        continue;
      }
      if (this.isLive(record)) continue;
      this.remember(record, file);
      await this.cancelLeftovers(api, pathKey(record.uri));
    }
  }

  /**
   * Frees the upload locks of `err` that belong to leftovers; true when something was freed,
   * so the operation that met them is worth repeating once.
   */
  async free(api: CloudreveApi, err: Locked): Promise<boolean> {
    const uploads = err.conflicts.filter((c) => c.application === "upload");
    let freed = false;
    for (const conflict of uploads) {
      const key = pathKey(conflict.path);
      if (this.running.has(key) || !this.leftovers.has(key)) continue;
      if (await this.cancelLeftovers(api, key)) {
        freed = true;
        continue;
      }
      if (!conflict.token) continue;
      try {
        await api.unlock([conflict.token]);
        this.log?.warn({ uri: conflict.path }, "force-unlocked an abandoned upload session's lock");
        await this.forget(key);
        freed = true;
      } catch (unlockErr) {
        this.log?.warn(
          { uri: conflict.path, err: (unlockErr as Error).message },
          "could not free an abandoned upload session's lock; it expires on its own within 24 h",
        );
      }
    }
    return freed;
  }

  /** Cancels each leftover on the path with a known session; true when all of them went. */
  private async cancelLeftovers(api: CloudreveApi, key: string): Promise<boolean> {
    const entries = this.leftovers.get(key) ?? [];
    for (const entry of [...entries]) {
      const { uri } = entry.record;
      const sessionId = entry.record.sessionId ?? (await this.placeholderSession(api, uri));
      if (!sessionId) continue;
      try {
        await api.cancelUpload(sessionId, uri);
        this.log?.info({ uri }, "cancelled an upload session left behind");
      } catch (err) {
        // Gone already (completed, cancelled or the file removed): nothing holds the path.
        if (!(err instanceof NotFound)) {
          this.log?.warn(
            { uri, err: (err as Error).message },
            "could not cancel an upload session left behind; retried when its path is locked",
          );
          continue;
        }
      }
      entries.splice(entries.indexOf(entry), 1);
      if (entry.file) await rm(entry.file, { force: true });
    }
    if (entries.length === 0) this.leftovers.delete(key);
    return entries.length === 0;
  }

  /** A new file's placeholder names its session (§6.1); an overwrite's pending version does not. */
  private async placeholderSession(api: CloudreveApi, uri: string): Promise<string | undefined> {
    try {
      return (await api.info(uri)).metadata?.["sys:upload_session_id"];
    } catch {
      return undefined;
    }
  }

  private remember(record: SessionRecord, file: string | undefined): void {
    const key = pathKey(record.uri);
    const entries = this.leftovers.get(key) ?? [];
    entries.push({ record, file });
    this.leftovers.set(key, entries);
  }

  private async forget(key: string): Promise<void> {
    for (const entry of this.leftovers.get(key) ?? []) {
      if (entry.file) await rm(entry.file, { force: true });
    }
    this.leftovers.delete(key);
  }

  private async write(file: string | undefined, record: SessionRecord): Promise<void> {
    if (!file || !this.dir) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // Whole or not at all: a torn record would name no session.
    const tmp = `${file}.tmp`;
    await writeFile(tmp, JSON.stringify(record), { mode: 0o600 });
    await rename(tmp, file);
  }
}
