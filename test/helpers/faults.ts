/**
 * What the fault suites share: request bodies at a client's pace, WebDAV calls that report
 * status and body, and the check that upstream holds nothing a write left behind.
 */
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { expect } from "vitest";
import { request } from "undici";

/** A body that arrives in `pieces` parts with a pause before each: a slow client. */
export function trickle(body: Buffer, pieces: number, pauseMs: number): Readable {
  const size = Math.ceil(body.length / pieces);
  return Readable.from(
    (async function* () {
      for (let at = 0; at < body.length; at += size) {
        await sleep(pauseMs);
        yield body.subarray(at, at + size);
      }
    })(),
  );
}

export interface DavReply {
  status: number;
  body: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

/** One WebDAV request; a connection the gateway cuts counts as status 0. */
export async function dav(
  url: string,
  method: string,
  options: { headers?: Record<string, string>; body?: Buffer | Readable } = {},
): Promise<DavReply> {
  try {
    const res = await request(url, {
      method: method as "GET",
      headers: options.headers,
      body: options.body,
      bodyTimeout: 120_000,
      headersTimeout: 120_000,
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, body, headers: res.headers };
  } catch {
    return { status: 0, body: Buffer.alloc(0), headers: {} };
  }
}

interface Leftovers {
  locks: { path: string; application: string }[];
  uploads: { id: string; placeholder: boolean; locked: boolean }[];
}

export async function leftovers(emulatorUrl: string): Promise<Leftovers> {
  const res = await fetch(`${emulatorUrl}/__emulator/locks`);
  return (await res.json()) as Leftovers;
}

/**
 * Upstream holds no path lock and no placeholder: nothing a write left behind can get in a
 * user's way. (An overwrite's session whose creation answer was lost can only be unlocked, not
 * cancelled: Cloudreve tells its id to nobody; it expires on its own.)
 */
export async function expectNothingLeft(emulatorUrl: string): Promise<void> {
  const left = await leftovers(emulatorUrl);
  expect(left.locks, "path locks left upstream").toEqual([]);
  const inTheWay = left.uploads.filter((u) => u.placeholder || u.locked);
  expect(inTheWay, "upload sessions left upstream").toEqual([]);
}

/** Deterministic content that differs by `seed`. */
export function content(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 13 + seed * 101 + (i >> 10)) & 0xff;
  return b;
}
