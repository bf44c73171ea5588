/**
 * Request headers that several WebDAV handlers read, parsed in one place so that every method
 * understands the same spellings. Which values a method accepts stays with the method.
 */
import { HttpError } from "./status.js";

export type Depth = 0 | 1 | "infinity";

/**
 * The Depth header (RFC 4918 §10.2): undefined when absent (each method has its own default),
 * 400 for anything but 0, 1 or infinity. Case and surrounding whitespace do not matter.
 */
export function parseDepth(value: string | undefined): Depth | undefined {
  if (value === undefined) return undefined;
  switch (value.trim().toLowerCase()) {
    case "0":
      return 0;
    case "1":
      return 1;
    case "infinity":
      return "infinity";
  }
  throw new HttpError(400, `Depth must be 0, 1 or infinity, not ${JSON.stringify(value)}`);
}

/**
 * The Timeout header of a LOCK (§10.7), e.g. `Infinite, Second-4100000000`: the first value
 * understood wins, capped at `max` (Infinite means `max`: no lock outlives the cap). Absent or
 * unintelligible, `defaultSeconds` applies. At least one second, so a lock never starts dead.
 */
export function parseTimeout(
  value: string | undefined,
  max: number,
  defaultSeconds: number,
): number {
  for (const part of (value ?? "").split(",")) {
    const candidate = part.trim();
    if (/^infinite$/i.test(candidate)) return max;
    const seconds = /^second-(\d+)$/i.exec(candidate)?.[1];
    if (seconds !== undefined) return clamp(Number(seconds), 1, max);
  }
  return clamp(defaultSeconds, 1, max);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(Math.max(value, min), max);
}
