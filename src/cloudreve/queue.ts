/**
 * The per-account request queue every upstream call of the Cloudreve client goes through:
 * bounded concurrency, interactive work ahead of bulk work, and retries with backoff for
 * idempotent calls that failed transiently. Bulk work never holds every slot: a quarter of them
 * (at least one, from a concurrency of 2) stay for interactive calls, so a listing does not wait
 * for an upload's parts, which can take seconds each, to finish.
 */
import PQueue from "p-queue";
import { GatewayError } from "../errors.js";

export type RequestPriority = "interactive" | "bulk";

export interface RequestQueueOptions {
  /** Upstream calls in flight at once. Default 8. */
  concurrency?: number;
  /** Retries after the first attempt, for idempotent calls only. Default 4. */
  maxRetries?: number;
  /** Backoff ceiling of the first retry; doubles with each retry. Default 200. */
  baseDelayMs?: number;
  /** Backoff ceiling never grows past this. Default 10 000. */
  maxDelayMs?: number;
  /** Injectable so tests never wait on the clock. Should reject with `signal.reason` on abort. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Injectable jitter source, in [0, 1). */
  random?: () => number;
  /** Told of each retry, as it is decided (the gateway's metrics count them). */
  onRetry?: () => void;
}

export interface RunOptions {
  /** Only idempotent calls are retried: repeating anything else could apply it twice. */
  idempotent: boolean;
  /**
   * Retry a call that is not idempotent when the failure was an answer (an HTTP status, e.g. a
   * proxy's 502) rather than a connection lost after the request went out.
   */
  retryAnswered?: boolean;
  /** Interactive (a client is waiting) runs ahead of bulk (uploads, prefetch). Default interactive. */
  priority?: RequestPriority;
  signal?: AbortSignal;
}

export interface RequestQueueStats {
  /** Tasks holding a concurrency slot. */
  running: number;
  /** Tasks waiting for a slot or for their next retry. */
  queued: number;
}

/** p-queue runs higher numbers first. */
const PRIORITY: Record<RequestPriority, number> = { interactive: 1, bulk: 0 };

/** A Retry-After is honoured up to this long; a larger one is likely a misconfiguration. */
const RETRY_AFTER_CAP_MS = 60_000;

export class RequestQueue {
  readonly #queue: PQueue;
  /** Admits bulk tasks to #queue: no more at once than the slots interactive work can spare. */
  readonly #bulk: PQueue;
  readonly #maxRetries: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  readonly #onRetry: (() => void) | undefined;
  #sleeping = 0;

  constructor(options: RequestQueueOptions = {}) {
    const maxRetries = options.maxRetries ?? 4;
    if (!Number.isInteger(maxRetries) || maxRetries < 0) {
      throw new RangeError(`maxRetries must be a non-negative integer, got ${maxRetries}`);
    }
    const concurrency = options.concurrency ?? 8;
    this.#queue = new PQueue({ concurrency });
    const reserved = concurrency >= 2 ? Math.max(1, Math.floor(concurrency / 4)) : 0;
    this.#bulk = new PQueue({ concurrency: concurrency - reserved });
    this.#maxRetries = maxRetries;
    this.#baseDelayMs = options.baseDelayMs ?? 200;
    this.#maxDelayMs = options.maxDelayMs ?? 10_000;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#random = options.random ?? Math.random;
    this.#onRetry = options.onRetry;
  }

  get stats(): RequestQueueStats {
    const queued = this.#queue.size + this.#bulk.size + this.#sleeping;
    return { running: this.#queue.pending, queued };
  }

  /** Runs `task` in a slot, retrying it as the options allow; `attempt` counts from 0. */
  async run<T>(task: (attempt: number) => Promise<T>, options: RunOptions): Promise<T> {
    const { signal } = options;
    const priority = PRIORITY[options.priority ?? "interactive"];
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      try {
        return await this.#enqueue(() => task(attempt), priority, signal);
      } catch (error) {
        // Whatever a call failed with after its caller gave up, the caller asked for the abort.
        if (signal?.aborted) throw signal.reason;
        if (!isRetryable(error) || attempt >= this.#maxRetries) throw error;
        const answered = error.httpStatus !== undefined;
        if (!options.idempotent && !(options.retryAnswered && answered)) throw error;
        this.#onRetry?.();
        // Sleep outside the queue so a waiting retry does not hold a slot.
        await this.#wait(this.#delay(attempt, error), signal);
      }
    }
  }

  #enqueue<T>(start: () => Promise<T>, priority: number, signal?: AbortSignal): Promise<T> {
    const admit = (run: () => Promise<T>, queued?: AbortSignal) =>
      priority === PRIORITY.bulk
        ? this.#bulk.add(() => this.#queue.add(run, { priority, signal: queued }), {
            signal: queued,
          })
        : this.#queue.add(run, { priority, signal: queued });
    if (!signal) return admit(start);
    // p-queue drops a queued task when its signal aborts, but for a running task it would settle
    // early and free the slot while the call still runs, breaking the concurrency bound. So it
    // gets a signal that follows the caller's only until the task starts; from then on the task
    // itself answers the caller's signal.
    const whileQueued = new AbortController();
    const follow = () => whileQueued.abort(signal.reason);
    const detach = () => signal.removeEventListener("abort", follow);
    signal.addEventListener("abort", follow, { once: true });
    const started = () => {
      detach();
      return start();
    };
    return admit(started, whileQueued.signal).finally(detach);
  }

  #delay(attempt: number, error: GatewayError): number {
    const jittered = backoffMs(attempt, this.#baseDelayMs, this.#maxDelayMs, this.#random);
    const asked = error.retryAfterMs;
    if (asked === undefined || !Number.isFinite(asked)) return jittered;
    return Math.max(jittered, Math.min(asked, RETRY_AFTER_CAP_MS));
  }

  async #wait(ms: number, signal?: AbortSignal): Promise<void> {
    this.#sleeping++;
    try {
      if (!signal) return await this.#sleep(ms);
      signal.throwIfAborted();
      // Race the abort so the caller is answered promptly even if an injected sleep ignores it.
      let onAbort = (): void => undefined;
      const aborted = new Promise<never>((_resolve, reject) => {
        onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      });
      try {
        await Promise.race([this.#sleep(ms, signal), aborted]);
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    } finally {
      this.#sleeping--;
    }
  }
}

/**
 * How long to wait before retry `attempt` (from 0): a ceiling of `baseMs` doubling per retry up
 * to `maxMs`, and a random point below it ("full jitter"), which spreads the retries of many
 * callers over the whole window instead of sending them in waves.
 */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  return random() * Math.min(maxMs, baseMs * 2 ** attempt);
}

/** Splits `items` into consecutive batches of at most `size` (the site's `max_batch_size`). */
export function splitBatches<T>(items: readonly T[], size: number): T[][] {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`batch size must be a positive integer, got ${size}`);
  }
  const batches: T[][] = [];
  for (let i = 0; i < items.length; i += size) batches.push(items.slice(i, i + size));
  return batches;
}

function isRetryable(error: unknown): error is GatewayError {
  return error instanceof GatewayError && error.retryable;
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
