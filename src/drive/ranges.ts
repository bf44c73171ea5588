import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ByteRange, ReadResult } from "./types.js";

/**
 * A read answered by the gateway itself (bytes in memory, a file on disk): `range` as asked,
 * cut to the size; a range that starts past the end or ends before its start reads the whole.
 */
export function localRead(
  size: number,
  range: ByteRange | undefined,
  open: (part?: ByteRange) => { body: Readable; bytes?: Buffer },
): ReadResult {
  const content = (part?: ByteRange) => {
    const { body, bytes } = open(part);
    return {
      pipeTo: (dest: Writable) => pipeline(body, dest),
      discard: () => body.destroy(),
      bytes,
    };
  };
  // An end before the start is no range at all (RFC 9110 §14.1.1).
  if (!range || range.start >= size || range.end < range.start) {
    return { length: size, ...content() };
  }
  const part = { start: range.start, end: Math.min(range.end, size - 1) };
  return { range: part, length: part.end - part.start + 1, ...content(part) };
}
