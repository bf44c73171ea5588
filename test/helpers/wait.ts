/**
 * Waiting for something another party does (a gateway, an emulator, a mount): poll a condition
 * until it holds, with a deadline that only bounds a hang and is never asserted as a duration.
 */
import { setTimeout as sleep } from "node:timers/promises";

const POLL_MS = 20;
/** Polls in a row that must see the same value before it counts as settled. */
const STEADY_POLLS = 5;

/**
 * Polls `check` until it holds; past `deadlineMs` it fails naming `what` (or what `what()`
 * says then, e.g. a log or the state it last saw).
 */
export async function until(
  what: string | (() => string),
  check: () => boolean | Promise<boolean>,
  deadlineMs: number,
): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      const described = typeof what === "string" ? what : what();
      throw new Error(`timed out after ${deadlineMs} ms waiting for ${described}`);
    }
    await sleep(POLL_MS);
  }
}

/**
 * Polls `read` until it returns the same value several polls in a row (a counter that grows
 * while a transfer is in flight has stopped), and returns that value.
 */
export async function settled<T>(
  what: string,
  read: () => Promise<T>,
  deadlineMs: number,
): Promise<T> {
  let last: T | undefined;
  let steady = 0;
  await until(
    what,
    async () => {
      const now = await read();
      steady = now === last ? steady + 1 : 0;
      last = now;
      return steady >= STEADY_POLLS;
    },
    deadlineMs,
  );
  return last as T;
}

/**
 * Asks `probe` until it gives `wanted`, for at most `deadlineMs`, and returns what it gave last:
 * the caller asserts on that, so a miss shows the value seen (a change notice that never came).
 */
export async function eventually<T>(
  probe: () => Promise<T>,
  wanted: T,
  deadlineMs = 2000,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  let got = await probe();
  while (got !== wanted && Date.now() < deadline) {
    await sleep(POLL_MS);
    got = await probe();
  }
  return got;
}
