/**
 * The CLI as a real process, its output collected: for the tests that spawn cloudreve-dav.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** Generous bounds for a process to do something; never asserted as durations. */
export const WAIT_MS = 20_000;

/** The environment of a fresh machine: no CLOUDREVE_DAV_* settings, state kept under `home`. */
export function cleanEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("CLOUDREVE_DAV_")) env[k] = v;
  }
  return { ...env, XDG_STATE_HOME: home, HOME: home, ...extra };
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running CLI whose output is collected. */
export class Cli {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<Finished>;
  private readonly watchers = new Set<() => void>();

  /** `args` go to node: the script first, then its own arguments. */
  constructor(args: string[], env: NodeJS.ProcessEnv, input?: string) {
    this.child = spawn(process.execPath, args, {
      cwd: ROOT,
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stdout!.setEncoding("utf8").on("data", (d: string) => this.add("stdout", d));
    this.child.stderr!.setEncoding("utf8").on("data", (d: string) => this.add("stderr", d));
    this.exited = new Promise((resolve) => {
      this.child.once("close", (code, signal) => {
        this.notify();
        resolve({ code, signal });
      });
    });
    if (input !== undefined) this.child.stdin!.end(input);
  }

  private add(stream: "stdout" | "stderr", data: string) {
    this[stream] += data;
    this.notify();
  }

  private notify() {
    for (const w of this.watchers) w();
  }

  get output(): string {
    return this.stdout + this.stderr;
  }

  /** The JSON log lines written so far. */
  get logs(): Record<string, unknown>[] {
    return this.output
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  /** Waits (bounded) until the output matches. */
  waitFor(pattern: RegExp): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.output.match(pattern);
        if (m) done(() => resolve(m));
        else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          done(() => reject(new Error(`exited before ${pattern}:\n${this.output}`)));
        }
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`no ${pattern} in:\n${this.output}`))),
        WAIT_MS,
      );
      const done = (then: () => void) => {
        clearTimeout(timer);
        this.watchers.delete(check);
        then();
      };
      this.watchers.add(check);
      check();
    });
  }

  /** Waits (bounded) for the exit. */
  async finished(): Promise<Finished> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`did not exit:\n${this.output}`)), WAIT_MS);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}
