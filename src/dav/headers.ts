/**
 * HTTP headers that several WebDAV handlers read or write, parsed and formatted in one place so
 * that every method understands and writes the same spellings. Which values a method accepts
 * stays with the method.
 */
import parseRange from "range-parser";
import { remembered } from "./memo.js";
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

/** X-OC-Mtime: integer or fractional Unix seconds (ownCloud/Nextcloud clients, rclone). */
export function parseOcMtime(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string" || !/^\d+(\.\d+)?$/.test(value.trim())) return undefined;
  return Math.round(Number(value) * 1000);
}

/** An entity tag as the ETag header and DAV:getetag carry it: the drive's tag in quotes. */
export function quoteEtag(etag: string): string {
  return `"${etag}"`;
}

/**
 * RFC 9110 §13.1: If-Match / If-None-Match hold a list of tags or `*`; `weak` compares without
 * the `W/` prefix (If-None-Match on GET and HEAD).
 */
export function etagListMatches(value: string, etag: string | undefined, weak: boolean): boolean {
  if (etag === undefined) return false;
  return value.split(",").some((raw) => {
    const tag = raw.trim();
    if (tag === "*") return true;
    const bare = weak ? tag.replace(/^W\//, "") : tag;
    return bare === quoteEtag(etag);
  });
}

/**
 * Formatted dates by time: a listing formats one per entry, the same entries come back with
 * every PROPFIND of the folder, and formatting a Date is the costly part (profiled: 9 % of a
 * warm 10,000-entry PROPFIND, with creationdate's).
 */
const httpDates = new Map<number, string>();

/** RFC 1123 as HTTP uses it: `Thu, 01 Jan 2026 10:00:00 GMT`; undefined for no valid time. */
export function httpDate(ms: number): string | undefined {
  return Number.isFinite(ms)
    ? remembered(httpDates, ms, (time) => new Date(time).toUTCString())
    : undefined;
}

/**
 * The one byte range a GET serves for a Range header on a file of `size` bytes (RFC 9110
 * §14.1–14.2): "unsatisfiable" for a 416; undefined to serve the whole file, which is also the
 * answer to a unit other than bytes and to several ranges (players ask for one). A suffix
 * longer than the file selects all of it.
 */
export function parseByteRange(
  value: string,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  const unit = /^\s*([^=\s]+)\s*=/.exec(value)?.[1];
  if (unit?.toLowerCase() !== "bytes") return undefined;
  const clamped = value.replace(/([=,])\s*-\s*(\d+)/g, (all: string, sep: string, n: string) =>
    Number(n) >= size ? `${sep}0-` : all,
  );
  const ranges = parseRange(size, clamped);
  if (ranges === -1) return "unsatisfiable";
  if (ranges === -2 || ranges.length !== 1) return undefined;
  return { start: ranges[0]!.start, end: ranges[0]!.end };
}
