/**
 * `--workers N` (N > 1): this process is node:cluster's primary. It forks N gateway processes
 * that listen on the same port (the cluster shares the listening socket and hands connections
 * out), restarts one that dies unexpectedly (with backoff), passes SIGTERM/SIGINT (each worker
 * drains its requests) and SIGHUP (reload) on, and exits once they have. Without --redis it also
 * holds the workers' shared locks and relays their change notices (src/shared/primary-state.ts).
 */
import cluster, { type Worker } from "node:cluster";
import type { Config } from "./config.js";
import type { Logger } from "./log.js";
import { PrimaryState } from "./shared/primary-state.js";

/** Worker → primary: the gateway listens. Primary → worker: drain and stop. */
export const READY = "cdav:ready";
export const STOP = "cdav:stop";

const isType = (msg: unknown, type: string) =>
  typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === type;
export const isStop = (msg: unknown) => isType(msg, STOP);

/**
 * Which worker this is, 1 to N, in its environment: a worker restarted in a slot takes the same
 * Cloudreve client id as the one before (src/accounts.ts). Not CLOUDREVE_DAV_*: that is settings.
 */
const SLOT_ENV = "CLOUDREVE_WORKER_SLOT";
export const workerSlot = (): number | undefined => {
  const slot = Number(process.env[SLOT_ENV]);
  return Number.isInteger(slot) && slot >= 1 ? slot : undefined;
};

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;
/** A worker that served this long before dying starts the backoff over. */
const STABLE_MS = 60_000;

/** Runs the primary until the workers have stopped; the process's exit code. */
export function runPrimary(config: Config, log: Logger): Promise<number> {
  const live = () => Object.values(cluster.workers ?? {});
  if (!config.redis) {
    const state = new PrimaryState(live, log);
    cluster.on("message", (worker, msg) => state.handle(worker, msg));
    for (const event of ["disconnect", "exit"] as const) {
      cluster.on(event, (worker: Worker) => state.gone(worker));
    }
  }
  if (config.metricsListen !== "off") {
    // Each worker would count only its own requests, and one address cannot be had by all.
    log.warn(
      { workers: config.workers, metricsListen: config.metricsListen },
      "Prometheus metrics are not served with more than one worker (--workers 1 to scrape them)",
    );
  }
  log.info(
    { workers: config.workers, shared: config.redis ? "redis" : "primary" },
    "starting gateway workers",
  );

  return new Promise<number>((resolve) => {
    let stopping = false;
    let code = 0;
    const restarts = new Set<NodeJS.Timeout>();
    const delays = new Map<number, number>();

    const finishIfDone = () => {
      if (stopping && restarts.size === 0 && live().length === 0) resolve(code);
    };

    const stop = (signal: string) => {
      if (stopping) {
        log.warn({ signal }, "stopping the workers at once");
        // A worker already draining stops at once on a second signal, as one process does.
        for (const worker of live()) worker?.process.kill("SIGTERM");
        code = 1;
        return;
      }
      stopping = true;
      for (const timer of restarts) clearTimeout(timer);
      restarts.clear();
      for (const worker of live()) {
        if (worker?.isConnected()) worker.send({ type: STOP });
        else worker?.process.kill("SIGTERM");
      }
      finishIfDone();
    };

    const fork = (slot: number) => {
      const worker: Worker = cluster.fork({ [SLOT_ENV]: String(slot) });
      const startedAt = Date.now();
      let ready = false;
      worker.on("message", (msg: unknown) => {
        if (isType(msg, READY)) ready = true;
      });
      worker.on("exit", (exitCode, signal) => {
        if (stopping) {
          if (exitCode !== 0) code = code || 1;
          finishIfDone();
          return;
        }
        if (!ready) {
          // It failed at start (bad certificate, Redis unreachable, port taken): so would another.
          log.error(
            { worker: slot, workerPid: worker.process.pid, exitCode, signal },
            "a worker failed to start: stopping",
          );
          code = exitCode || 1;
          stop("worker-failed");
          return;
        }
        const delay =
          Date.now() - startedAt >= STABLE_MS
            ? FIRST_DELAY_MS
            : Math.min(MAX_DELAY_MS, delays.get(slot) ?? FIRST_DELAY_MS);
        delays.set(slot, Math.min(MAX_DELAY_MS, delay * 2));
        log.warn(
          { worker: slot, workerPid: worker.process.pid, exitCode, signal, restartInMs: delay },
          "a worker died: restarting it",
        );
        const timer = setTimeout(() => {
          restarts.delete(timer);
          if (!stopping) fork(slot);
        }, delay);
        restarts.add(timer);
      });
    };

    for (const s of ["SIGINT", "SIGTERM"] as const) process.on(s, () => stop(s));
    process.on("SIGHUP", () => {
      for (const worker of live()) worker?.process.kill("SIGHUP");
    });
    for (let slot = 1; slot <= config.workers; slot++) fork(slot);
  });
}
