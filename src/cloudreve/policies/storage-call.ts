import type { Readable } from "node:stream";
import { request } from "undici";
import { UpstreamError } from "../../errors.js";
import type { CloudreveApi } from "../api.js";
import { observed, unreachable } from "../transport.js";

/** A storage provider's answer: its status, headers and body text. */
export interface StorageReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * One call to a storage provider's URL (no Cloudreve token), through the account's request
 * queue: retried on 5xx (or what `retryable` says) and lost connections, failing on any
 * other status. `accept` may refuse a 2xx answer whose body reports a failure (throwing an
 * UpstreamError, retryable or not); `doneWhen` takes a status seen on a repeat as the first
 * try's success.
 */
export async function storageCall(
  api: CloudreveApi,
  url: string,
  method: "PUT" | "POST",
  call: {
    body: (attempt: number) => Promise<Buffer | Readable>;
    length: number;
    headers: Record<string, string>;
    signal?: AbortSignal;
    doneWhen?: (status: number) => boolean;
    accept?: (reply: StorageReply) => void;
    retryable?: (status: number) => boolean;
  },
): Promise<StorageReply> {
  const send = async (n: number) => {
    let res;
    try {
      res = await request(url, {
        method,
        headers: { ...call.headers, "content-length": String(call.length) },
        body: await call.body(n),
        dispatcher: api.transport.dispatcher,
        signal: call.signal,
      });
    } catch (err) {
      if (call.signal?.aborted) throw err;
      throw unreachable(`the storage is unreachable for ${method}`, err);
    }
    // The body only names the storage's error code; a failed read of it leaves the status.
    const text = await res.body.text().catch(() => "");
    const reply = { status: res.statusCode, headers: res.headers, text };
    const ok = res.statusCode < 300 || (n > 0 && call.doneWhen?.(res.statusCode));
    if (ok) {
      if (res.statusCode < 300) call.accept?.(reply);
      return reply;
    }
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
    throw new UpstreamError(
      `the storage answered HTTP ${res.statusCode}${code ? ` (${code})` : ""} for ${method}`,
      { retryable: (call.retryable ?? serverError)(res.statusCode), httpStatus: res.statusCode },
    );
  };
  const attempt = (n: number) =>
    observed(api.transport.observer, method, "storage", call.signal, () => send(n));
  return api.transport.queue.run(attempt, {
    idempotent: true,
    priority: "bulk",
    signal: call.signal,
  });
}

const serverError = (status: number) => status >= 500;

export const OCTET = "application/octet-stream";

/** One field of a storage's JSON answer; undefined when the answer is no JSON object. */
export function jsonField(text: string, name: string): unknown {
  try {
    return (JSON.parse(text) as Record<string, unknown> | null)?.[name];
  } catch {
    return undefined;
  }
}

/**
 * A storage that calls Cloudreve back before it answers the completion relays Cloudreve's
 * answer: only its success envelope says the upload completed.
 */
export function relayedSuccess(reply: StorageReply, storage: string): void {
  if (jsonField(reply.text, "code") !== 0)
    throw new UpstreamError(
      `${storage} completed the upload but relayed no success from Cloudreve (HTTP ` +
        `${reply.status}: ${reply.text.slice(0, 200)})`,
    );
}
