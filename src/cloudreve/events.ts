import { randomUUID } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { createParser } from "eventsource-parser";
import { z } from "zod";
import { GatewayError, UpstreamError } from "../errors.js";
import { backoffMs } from "./queue.js";
import type { Transport } from "./transport.js";

/**
 * Cloudreve's change events (§5.12, since 4.11): a server-sent event stream per folder. They are
 * a hint, not a log: Cloudreve drops what does not fit its 16-slot buffer, and forgets what it
 * kept for an offline client when it restarts.
 */

/** A change under the subscribed folder; paths are relative to it, `to` is set for renames and moves. */
export interface ChangeEvent {
  type: string;
  from: string;
  to: string;
}

const ChangeEventSchema = z.object({
  type: z.string(),
  from: z.string(),
  to: z.string().optional().default(""),
});

export interface ChangeListener {
  /** The stream is open; `resumed`: Cloudreve kept what changed while this client was away. */
  opened(resumed: boolean): void;
  /**
   * Events Cloudreve sent together (one debounce window, merged per file). `complete` is false
   * when they filled Cloudreve's buffer, which drops the rest without a word.
   */
  changed(events: ChangeEvent[], complete: boolean): void;
  /** The stream could not be opened, or broke off: it is opened again after a backoff. */
  down(err: Error): void;
  /** Cloudreve sends no change events (turned off, or older than 4.11): no more tries. */
  unavailable(err: GatewayError): void;
}

/** The subscriber's channel on the server (eventhub bufSize). */
const SERVER_BUFFER = 16;
/** Cloudreve sends a keep-alive every 30 s: a stream silent for two and a half is dead. */
const IDLE_MS = 75_000;
/**
 * Events of one flush are written back to back, and flushes are a debounce (5 s by default)
 * apart: events this close together are one delivery.
 */
const DELIVERY_GAP_MS = 50;
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 60_000;
/** A stream that lived this long broke by chance: the backoff starts over. */
const STABLE_MS = 60_000;

const isUnavailable = (err: unknown): err is GatewayError =>
  err instanceof GatewayError && (err.code === 40019 || err.httpStatus === 404);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The client id (a UUID) the gateway goes by for one account, kept in `file`: a restart resumes
 * the same subscription rather than leaving another one behind on the server, which keeps an
 * offline subscriber and its events for 14 days.
 */
export async function loadClientId(file: string): Promise<string> {
  try {
    const kept = (await readFile(file, "utf8")).trim();
    if (UUID.test(kept)) return kept;
  } catch {
    // none yet
  }
  const id = randomUUID();
  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(file, `${id}\n`);
  } catch {
    // An unwritable state folder costs only the resumption at the next start.
  }
  return id;
}

/** The frames of a server-sent event stream, as they arrive. */
async function* framesOf(body: Readable): AsyncGenerator<{ event: string; data: string }> {
  const ready: { event: string; data: string }[] = [];
  const parser = createParser({
    onEvent: ({ event, data }) => ready.push({ event: event ?? "message", data }),
  });
  // A character split between two chunks is decoded whole.
  const text = new TextDecoder();
  for await (const chunk of body as AsyncIterable<Buffer>) {
    parser.feed(text.decode(chunk, { stream: true }));
    yield* ready.splice(0);
  }
}

/** Events that arrive within DELIVERY_GAP_MS of each other, handed on together. */
class Deliveries {
  private events: ChangeEvent[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly listener: ChangeListener) {}

  add(event: ChangeEvent): void {
    this.events.push(event);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), DELIVERY_GAP_MS);
  }

  flush(): void {
    clearTimeout(this.timer);
    const events = this.events;
    this.events = [];
    if (events.length > 0) this.listener.changed(events, events.length < SERVER_BUFFER);
  }
}

/**
 * One subscription to the change events of a folder, kept open until close(): reopened with a
 * jittered backoff whenever it breaks, given up only when the server has no events to send.
 */
export class ChangeFeed {
  private readonly abort = new AbortController();
  private readonly running: Promise<void>;

  constructor(
    private readonly transport: Transport,
    private readonly uri: string,
    private readonly listener: ChangeListener,
  ) {
    this.running = this.run();
  }

  /** Ends the subscription; resolves once the stream is closed. */
  async close(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    const { signal } = this.abort;
    let failures = 0;
    while (!signal.aborted) {
      let openedAt: number | undefined;
      try {
        const body = await this.transport.stream({
          path: "/file/events",
          query: { uri: this.uri },
          signal,
          idleMs: IDLE_MS,
        });
        await this.read(body, () => (openedAt = Date.now()));
        throw new UpstreamError("Cloudreve ended the change event stream");
      } catch (err) {
        if (signal.aborted) return;
        if (isUnavailable(err)) return this.listener.unavailable(err);
        this.listener.down(err as Error);
      }
      if (openedAt !== undefined && Date.now() - openedAt >= STABLE_MS) failures = 0;
      const delay = backoffMs(failures++, RETRY_BASE_MS, RETRY_MAX_MS);
      // close() ends the wait early (an AbortError): the loop then sees the signal and returns.
      await sleep(delay, undefined, { signal }).catch(() => undefined);
    }
  }

  private async read(body: Readable, opened: () => void): Promise<void> {
    const deliveries = new Deliveries(this.listener);
    try {
      for await (const { event, data } of framesOf(body)) {
        if (event === "subscribed" || event === "resumed") {
          opened();
          this.listener.opened(event === "resumed");
        } else if (event === "event") {
          deliveries.add(parseEvent(data));
        }
        // keep-alive, and events of later versions: having read them is the sign of life.
      }
    } finally {
      deliveries.flush();
      body.destroy();
    }
  }
}

function parseEvent(data: string): ChangeEvent {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    json = undefined;
  }
  const parsed = ChangeEventSchema.safeParse(json);
  // What changed cannot be told: the stream starts over, which forgets everything.
  if (!parsed.success) throw new UpstreamError("Cloudreve sent a change event without paths");
  return parsed.data;
}
