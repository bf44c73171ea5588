import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { explain, requireTool, run, type Run } from "./tools.js";

/**
 * litmus 0.13, the WebDAV compliance suite (docs/clients.md §D.5, docs/clients.md): all five default groups
 * must run and pass.
 */
const GROUPS = ["basic", "copymove", "props", "locks", "http"] as const;
export const LITMUS_TIMEOUT_MS = 5 * 60_000;

interface Summary {
  run: number;
  passed: number;
  failed: number;
}

/**
 * `<- summary for 'basic': of 16 tests run: 16 passed, 0 failed. 100.0%`; litmus 0.13 opens
 * the group name with a backtick, newer versions with a quote.
 */
const SUMMARY = /<- summary for [`']([^`']+)': of (\d+) tests run: (\d+) passed, (\d+) failed/;

function parse(stdout: string): { summaries: Map<string, Summary>; failures: string[] } {
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

/** Runs litmus in a scratch directory, where it writes debug.log; returns that log's tail. */
async function runLitmus(url: string, args: string[]): Promise<{ run: Run; debugTail: string }> {
  const binary = requireTool("litmus", "litmus");
  const cwd = await mkdtemp(join(tmpdir(), "cloudreve-dav-litmus-"));
  try {
    const result = await run(binary, ["-k", url, ...args], {
      cwd,
      timeoutMs: LITMUS_TIMEOUT_MS,
      env: { ...process.env, TESTS: GROUPS.join(" ") },
    });
    const debugTail = await readFile(join(cwd, "debug.log"), "utf8").then(
      (log) => log.split("\n").slice(-80).join("\n"),
      () => "(no debug.log written)",
    );
    return { run: result, debugTail };
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
}

/** Runs litmus against `url` (signed in as `auth`, if given) and expects every test to pass. */
export async function expectLitmusPasses(
  url: string,
  auth?: { user: string; password: string },
): Promise<void> {
  const { run: result, debugTail } = await runLitmus(url, auth ? [auth.user, auth.password] : []);
  const { summaries, failures } = parse(result.stdout);
  const context = [
    `failing tests:\n  ${failures.join("\n  ") || "(none)"}`,
    explain("litmus", result),
    `debug.log tail:\n${debugTail}`,
  ].join("\n\n");

  for (const group of GROUPS) {
    const summary = summaries.get(group);
    expect(summary, `no summary line for group '${group}'\n\n${context}`).toBeDefined();
    expect(summary!.run, `group '${group}' ran no tests\n\n${context}`).toBeGreaterThan(0);
    expect(summary!.failed, `group '${group}' has failures\n\n${context}`).toBe(0);
    expect(summary!.passed, `group '${group}' passed count\n\n${context}`).toBe(summary!.run);
  }
  expect(failures, `FAIL lines in the litmus output\n\n${context}`).toEqual([]);
}
