import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadResult } from "./types.js";

/**
 * A read answered by the gateway itself (bytes in memory, a file on disk). The protocol layer
 * asks for one exact range at most ("bytes=start-end"); anything else reads the whole.
 */
export function localRead(
  size: number,
  range: string | undefined,
  open: (part?: { start: number; end: number }) => { body: Readable; bytes?: Buffer },
): ReadResult {
  const content = (part?: { start: number; end: number }) => {
    const { body, bytes } = open(part);
    return {
      pipeTo: (dest: Writable) => pipeline(body, dest),
      discard: () => body.destroy(),
      bytes,
    };
  };
  const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? "");
  const start = Number(m?.[1]);
  // An end before the start is no range at all (RFC 9110 §14.1.1).
  if (!m || start >= size || Number(m[2]) < start) {
    return { status: 200, headers: { "content-length": String(size) }, ...content() };
  }
  const end = Math.min(Number(m[2]), size - 1);
  return {
    status: 206,
    headers: {
      "content-length": String(end - start + 1),
      "content-range": `bytes ${start}-${end}/${size}`,
    },
    ...content({ start, end }),
  };
}
