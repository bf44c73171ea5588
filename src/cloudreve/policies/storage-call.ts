import type { Readable } from "node:stream";
import { request } from "undici";
import { UpstreamError } from "../../errors.js";
import type { CloudreveApi } from "../api.js";
import { unreachable } from "../transport.js";

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
  const attempt = async (n: number) => {
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
  return api.transport.queue.run(attempt, {
    idempotent: true,
    priority: "bulk",
    signal: call.signal,
  });
}

const serverError = (status: number) => status >= 500;
