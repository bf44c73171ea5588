/**
 * Shared pieces of the client tests (test/cloudreve/client-*.test.ts): a real CloudreveApi
 * pointed at an emulator, and content to send it. The emulator's control routes are in
 * test/helpers/control.ts.
 */
import { Readable } from "node:stream";
import { CloudreveApi } from "../../src/cloudreve/api.js";
import type { TransportOptions } from "../../src/cloudreve/transport.js";
import { EMAIL, PASSWORD } from "../helpers/emulator.js";

export type ClientOptions = Partial<TransportOptions>;

/** A client with the default account and a 1 ms backoff base, so retries cost no real time. */
export function newClient(baseUrl: string, options: ClientOptions = {}): CloudreveApi {
  return new CloudreveApi({
    baseUrl,
    email: EMAIL,
    password: PASSWORD,
    ...options,
    queue: { baseDelayMs: 1, maxDelayMs: 5, ...options.queue },
  });
}

/** Deterministic content that differs from the seeded pattern: byte i is (i * 7 + salt) % 256. */
export function patternBytes(size: number, salt = 0): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 7 + salt) & 0xff;
  return buf;
}

/** A source stream delivering `buf` in pieces of `piece` bytes (not aligned to chunks). */
export function sourceOf(buf: Buffer, piece = 10_000): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += piece) parts.push(buf.subarray(i, i + piece));
  return Readable.from(parts);
}
