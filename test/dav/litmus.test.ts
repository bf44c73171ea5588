import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { describe, expect, it } from "vitest";
import { useGateway } from "../helpers/gateway.js";

/**
 * litmus 0.13, the WebDAV compliance suite (clients.md §D.5, tools.md), against the gateway in
 * front of the emulator: all five default groups must run and pass.
 */
const GROUPS = ["basic", "copymove", "props", "locks", "http"] as const;
const TIMEOUT_MS = 5 * 60_000;

/** The litmus binary on PATH (or /usr/bin), or undefined when it is not installed. */
function findLitmus(): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/usr/local/bin"];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, "litmus");
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

interface Summary {
  run: number;
  passed: number;
  failed: number;
}

interface LitmusRun {
  stdout: string;
  stderr: string;
  exitCode: number | string | null;
  summaries: Map<string, Summary>;
  failures: string[];
  debugTail: string;
}

/**
 * `<- summary for 'basic': of 16 tests run: 16 passed, 0 failed. 100.0%`; litmus 0.13 opens
 * the group name with a backtick, newer versions with a quote.
 */
const SUMMARY = /<- summary for [`']([^`']+)': of (\d+) tests run: (\d+) passed, (\d+) failed/;

function parse(stdout: string): Pick<LitmusRun, "summaries" | "failures"> {
  const summaries = new Map<string, Summary>();
  const failures: string[] = [];
  for (const line of stdout.split(/\r?\n/)) {
    const m = SUMMARY.exec(line);
    if (m) {
      summaries.set(m[1]!, { run: Number(m[2]), passed: Number(m[3]), failed: Number(m[4]) });
    }
    // A test line looks like ` 5. put_get............... FAIL (reason)`.
    if (/\bFAIL\b/.test(line)) failures.push(line.trim());
  }
  return { summaries, failures };
}

async function runLitmus(binary: string, url: string): Promise<LitmusRun> {
  const cwd = await mkdtemp(join(tmpdir(), "cloudreve-dav-litmus-"));
  try {
    const { stdout, stderr, exitCode } = await new Promise<{
      stdout: string;
      stderr: string;
      exitCode: number | string | null;
    }>((resolve) => {
      execFile(
        binary,
        ["-k", url],
        {
          cwd,
          timeout: TIMEOUT_MS,
          killSignal: "SIGKILL",
          maxBuffer: 16 * 1024 * 1024,
          env: { ...process.env, TESTS: GROUPS.join(" ") },
        },
        (err, stdout, stderr) => {
          const code = err ? ((err as NodeJS.ErrnoException).code ?? err.message) : 0;
          resolve({ stdout: String(stdout), stderr: String(stderr), exitCode: code ?? null });
        },
      );
    });
    let debugTail = "";
    try {
      const debug = await readFile(join(cwd, "debug.log"), "utf8");
      debugTail = debug.split("\n").slice(-80).join("\n");
    } catch {
      debugTail = "(no debug.log written)";
    }
    return { stdout, stderr, exitCode, debugTail, ...parse(stdout) };
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
}

describe("litmus 0.13 against the gateway", () => {
  const fx = useGateway();

  it(
    "passes every test of basic, copymove, props, locks and http",
    async () => {
      const binary = findLitmus();
      if (!binary) {
        expect.fail(
          "litmus is not installed: run `apt-get install litmus` (the CI image installs it)",
        );
      }
      const result = await runLitmus(binary, `${fx.url}/`);
      const context = [
        `exit: ${String(result.exitCode)}`,
        `failing tests:\n  ${result.failures.join("\n  ") || "(none)"}`,
        `stdout:\n${result.stdout}`,
        `stderr:\n${result.stderr}`,
        `debug.log tail:\n${result.debugTail}`,
      ].join("\n\n");

      for (const group of GROUPS) {
        const summary = result.summaries.get(group);
        expect(summary, `no summary line for group '${group}'\n\n${context}`).toBeDefined();
        expect(summary!.run, `group '${group}' ran no tests\n\n${context}`).toBeGreaterThan(0);
        expect(summary!.failed, `group '${group}' has failures\n\n${context}`).toBe(0);
        expect(summary!.passed, `group '${group}' passed count\n\n${context}`).toBe(summary!.run);
      }
      expect(result.failures, `FAIL lines in the litmus output\n\n${context}`).toEqual([]);
    },
    TIMEOUT_MS + 30_000,
  );
});
