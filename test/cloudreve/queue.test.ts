import { afterEach, describe, expect, it, vi } from "vitest";
import { RequestQueue, splitBatches } from "../../src/cloudreve/queue.js";
import { NotFound, UpstreamError } from "../../src/errors.js";

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets queued microtasks (p-queue's scheduling, awaited rejections) run. */
async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** A sleep that returns at once and records what it was asked for. */
function instantSleep() {
  const calls: number[] = [];
  const sleep = (ms: number) => {
    calls.push(ms);
    return Promise.resolve();
  };
  return { calls, sleep };
}

/** A sleep that only returns when the test says so. */
function controlledSleep() {
  const pending: { ms: number; wake: Deferred<void> }[] = [];
  const sleep = (ms: number) => {
    const wake = deferred();
    pending.push({ ms, wake });
    return wake.promise;
  };
  return { pending, sleep };
}

const transient = (message = "502 Bad Gateway") => new UpstreamError(message, { retryable: true });

describe("RequestQueue concurrency and priority", () => {
  it("never runs more tasks at once than its concurrency", async () => {
    const queue = new RequestQueue({ concurrency: 2 });
    const gates = Array.from({ length: 5 }, () => deferred<number>());
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const results = gates.map((gate, i) =>
      queue.run(
        async () => {
          started.push(i);
          running++;
          peak = Math.max(peak, running);
          try {
            return await gate.promise;
          } finally {
            running--;
          }
        },
        { idempotent: true },
      ),
    );
    await flush();
    expect(started).toEqual([0, 1]);
    expect(queue.stats).toEqual({ running: 2, queued: 3 });

    for (const [i, gate] of gates.entries()) {
      gate.resolve(i * 10);
      await flush();
      expect(running).toBeLessThanOrEqual(2);
    }
    expect(await Promise.all(results)).toEqual([0, 10, 20, 30, 40]);
    expect(peak).toBe(2);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    await flush();
    expect(queue.stats).toEqual({ running: 0, queued: 0 });
  });

  it("starts interactive tasks queued after bulk ones first once a slot frees", async () => {
    const queue = new RequestQueue({ concurrency: 1 });
    const blocker = deferred();
    const order: string[] = [];
    const track = (name: string) => async () => {
      order.push(name);
    };
    const all = [
      queue.run(() => blocker.promise, { idempotent: true, priority: "bulk" }),
      queue.run(track("bulk-1"), { idempotent: true, priority: "bulk" }),
      queue.run(track("bulk-2"), { idempotent: true, priority: "bulk" }),
      queue.run(track("interactive-1"), { idempotent: true, priority: "interactive" }),
      queue.run(track("default-is-interactive"), { idempotent: false }),
    ];
    await flush();
    expect(order).toEqual([]);
    blocker.resolve();
    await Promise.all(all);
    expect(order).toEqual(["interactive-1", "default-is-interactive", "bulk-1", "bulk-2"]);
  });
});

describe("RequestQueue slots kept for interactive work", () => {
  it("bulk work holds at most three quarters of the slots; an interactive call starts at once", async () => {
    const queue = new RequestQueue({ concurrency: 8 });
    const blocker = deferred();
    const bulk = Array.from({ length: 20 }, () =>
      queue.run(() => blocker.promise, { idempotent: true, priority: "bulk" }),
    );
    await flush();
    expect(queue.stats).toEqual({ running: 6, queued: 14 });
    let listed = false;
    const listing = queue.run(
      async () => {
        listed = true;
      },
      { idempotent: true },
    );
    await flush();
    expect(listed).toBe(true);
    await listing;
    blocker.resolve();
    await Promise.all(bulk);
    expect(queue.stats).toEqual({ running: 0, queued: 0 });
  });

  it("a queued bulk task aborted while waiting for admission never starts", async () => {
    const queue = new RequestQueue({ concurrency: 2 });
    const blocker = deferred();
    const first = queue.run(() => blocker.promise, { idempotent: true, priority: "bulk" });
    const controller = new AbortController();
    let started = false;
    const second = queue.run(
      async () => {
        started = true;
      },
      { idempotent: true, priority: "bulk", signal: controller.signal },
    );
    await flush();
    controller.abort(new Error("client went away"));
    await expect(second).rejects.toThrow("client went away");
    blocker.resolve();
    await first;
    expect(started).toBe(false);
    expect(queue.stats).toEqual({ running: 0, queued: 0 });
  });
});

describe("RequestQueue retries", () => {
  it("retries an idempotent task after retryable failures and returns its result", async () => {
    const { calls, sleep } = instantSleep();
    const queue = new RequestQueue({ sleep, random: () => 0.5, baseDelayMs: 100 });
    const attempts: number[] = [];
    const result = await queue.run(
      async (attempt) => {
        attempts.push(attempt);
        if (attempt < 2) throw transient();
        return "ok";
      },
      { idempotent: true },
    );
    expect(result).toBe("ok");
    expect(attempts).toEqual([0, 1, 2]);
    expect(calls).toEqual([50, 100]);
  });

  it("backs off exponentially, capped at maxDelayMs, and rethrows the last error", async () => {
    const { calls, sleep } = instantSleep();
    const queue = new RequestQueue({
      sleep,
      random: () => 0.5,
      baseDelayMs: 100,
      maxDelayMs: 300,
      maxRetries: 4,
    });
    const errors: UpstreamError[] = [];
    const outcome = queue.run(
      async (attempt) => {
        const error = transient(`failure ${attempt}`);
        errors.push(error);
        throw error;
      },
      { idempotent: true },
    );
    const thrown = await outcome.catch((error: unknown) => error);
    expect(errors).toHaveLength(5); // the first attempt plus maxRetries retries
    expect(thrown).toBe(errors[4]);
    expect(calls).toEqual([50, 100, 150, 150]);
  });

  it("treats maxRetries 0 as a single attempt", async () => {
    const { calls, sleep } = instantSleep();
    const queue = new RequestQueue({ sleep, maxRetries: 0 });
    const task = vi.fn(async () => {
      throw transient();
    });
    await expect(queue.run(task, { idempotent: true })).rejects.toBeInstanceOf(UpstreamError);
    expect(task).toHaveBeenCalledTimes(1);
    expect(calls).toEqual([]);
  });

  it("never retries a non-idempotent task", async () => {
    const { calls, sleep } = instantSleep();
    const queue = new RequestQueue({ sleep });
    const error = transient();
    const task = vi.fn(async () => {
      throw error;
    });
    await expect(queue.run(task, { idempotent: false })).rejects.toBe(error);
    expect(task).toHaveBeenCalledTimes(1);
    expect(calls).toEqual([]);
  });

  it("never retries an error that is not retryable", async () => {
    const { calls, sleep } = instantSleep();
    const queue = new RequestQueue({ sleep });
    for (const error of [
      new NotFound("no such file"),
      new UpstreamError("500 Internal Server Error"),
      new TypeError("a bug"),
    ]) {
      const task = vi.fn(async () => {
        throw error;
      });
      await expect(queue.run(task, { idempotent: true })).rejects.toBe(error);
      expect(task).toHaveBeenCalledTimes(1);
    }
    expect(calls).toEqual([]);
  });

  it("waits at least retryAfterMs, within a sane cap", async () => {
    const { calls, sleep } = instantSleep();
    const queue = new RequestQueue({ sleep, random: () => 0.5, baseDelayMs: 1000 });
    const retryAfters = [5000, 10, 3_600_000];
    await queue.run(
      async (attempt) => {
        const retryAfterMs = retryAfters[attempt];
        if (retryAfterMs !== undefined) {
          throw new UpstreamError("503", { retryable: true, retryAfterMs });
        }
        return "done";
      },
      { idempotent: true },
    );
    // Retry-After wins over a shorter jitter, the jitter over a shorter Retry-After,
    // and an absurd Retry-After is cut to 60 s.
    expect(calls).toEqual([5000, 1000, 60_000]);
  });

  it("does not hold a slot while waiting for a retry", async () => {
    const { pending, sleep } = controlledSleep();
    const queue = new RequestQueue({ concurrency: 1, sleep });
    const attempts: number[] = [];
    const first = queue.run(
      async (attempt) => {
        attempts.push(attempt);
        if (attempt === 0) throw transient();
        return "first";
      },
      { idempotent: true },
    );
    await flush();
    expect(pending).toHaveLength(1);
    expect(queue.stats).toEqual({ running: 0, queued: 1 });

    // The only slot is free while the first task sleeps.
    await expect(queue.run(async () => "second", { idempotent: true })).resolves.toBe("second");
    expect(attempts).toEqual([0]);

    pending[0]?.wake.resolve();
    await expect(first).resolves.toBe("first");
    expect(attempts).toEqual([0, 1]);
  });
});

describe("RequestQueue abort", () => {
  it("rejects a queued task with the signal's reason and never starts it", async () => {
    const queue = new RequestQueue({ concurrency: 1 });
    const blocker = deferred();
    const holding = queue.run(() => blocker.promise, { idempotent: true });
    const controller = new AbortController();
    const task = vi.fn(async () => "never");
    const queued = queue.run(task, { idempotent: true, signal: controller.signal });
    await flush();
    expect(queue.stats).toEqual({ running: 1, queued: 1 });

    const reason = new Error("client went away");
    controller.abort(reason);
    await expect(queued).rejects.toBe(reason);
    expect(queue.stats).toEqual({ running: 1, queued: 0 });

    blocker.resolve();
    await holding;
    await flush();
    expect(task).not.toHaveBeenCalled();
  });

  it("rejects a task sleeping before its retry and never starts it again", async () => {
    const { pending, sleep } = controlledSleep(); // ignores the signal: the queue must not rely on it
    const queue = new RequestQueue({ sleep });
    const controller = new AbortController();
    const task = vi.fn(async (_attempt: number) => {
      throw transient();
    });
    const outcome = queue.run(task, { idempotent: true, signal: controller.signal });
    await flush();
    expect(pending).toHaveLength(1);

    const reason = new Error("cancelled");
    controller.abort(reason);
    await expect(outcome).rejects.toBe(reason);
    expect(queue.stats).toEqual({ running: 0, queued: 0 });

    pending[0]?.wake.resolve();
    await flush();
    expect(task).toHaveBeenCalledTimes(1);
  });

  it("does not start a task whose signal is already aborted", async () => {
    const queue = new RequestQueue();
    const reason = new Error("too late");
    const task = vi.fn(async () => "never");
    await expect(
      queue.run(task, { idempotent: true, signal: AbortSignal.abort(reason) }),
    ).rejects.toBe(reason);
    expect(task).not.toHaveBeenCalled();
  });

  it("keeps the slot of a running task until it settles, and does not retry it after abort", async () => {
    const { calls, sleep } = instantSleep();
    const queue = new RequestQueue({ concurrency: 1, sleep });
    const controller = new AbortController();
    const gate = deferred();
    const task = vi.fn(async () => {
      await gate.promise;
      throw transient();
    });
    const outcome = queue.run(task, { idempotent: true, signal: controller.signal });
    await flush();
    const reason = new Error("stop");
    controller.abort(reason);
    await flush();
    // The call is still in flight, so it still counts against the concurrency bound.
    expect(queue.stats).toEqual({ running: 1, queued: 0 });

    gate.resolve();
    await expect(outcome).rejects.toBe(reason);
    expect(task).toHaveBeenCalledTimes(1);
    expect(calls).toEqual([]);
  });
});

describe("RequestQueue default sleep", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("waits on a timer before retrying and stops waiting on abort", async () => {
    vi.useFakeTimers();
    const queue = new RequestQueue({ random: () => 0.5, baseDelayMs: 1000 });
    const attempts: number[] = [];
    const retried = queue.run(
      async (attempt) => {
        attempts.push(attempt);
        if (attempt === 0) throw transient();
        return attempt;
      },
      { idempotent: true },
    );
    await vi.advanceTimersByTimeAsync(499);
    expect(attempts).toEqual([0]);
    await vi.advanceTimersByTimeAsync(1);
    await expect(retried).resolves.toBe(1);

    const controller = new AbortController();
    const aborted = queue.run(
      async () => {
        throw transient();
      },
      { idempotent: true, signal: controller.signal },
    );
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(1);
    const reason = new Error("abort");
    controller.abort(reason);
    await expect(aborted).rejects.toBe(reason);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("RequestQueue options", () => {
  it("refuses a negative maxRetries", () => {
    expect(() => new RequestQueue({ maxRetries: -1 })).toThrow(RangeError);
  });
});

describe("splitBatches", () => {
  it("splits into consecutive batches of at most size", () => {
    expect(splitBatches([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(splitBatches([1, 2, 3, 4], 2)).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(splitBatches([1, 2, 3], 1)).toEqual([[1], [2], [3]]);
    expect(splitBatches([1, 2, 3], 10)).toEqual([[1, 2, 3]]);
    expect(splitBatches([], 3)).toEqual([]);
  });

  it("returns copies, never the input array", () => {
    const items = ["a", "b"];
    const [batch] = splitBatches(items, 5);
    expect(batch).toEqual(items);
    expect(batch).not.toBe(items);
  });

  it("rejects a size that is not a positive integer", () => {
    for (const size of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => splitBatches([1, 2], size)).toThrow(RangeError);
    }
  });
});
