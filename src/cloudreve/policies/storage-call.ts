import type { Readable } from "node:stream";
import { request } from "undici";
import { UpstreamError } from "../../errors.js";
import type { CloudreveApi } from "../api.js";
import { unreachable } from "../transport.js";

/**
 * One call to a storage provider's presigned URL (no Cloudreve token), through the account's
 * request queue: retried on 5xx and lost connections, failing on any other status.
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
  },
): Promise<{ headers: Record<string, string | string[] | undefined> }> {
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
    const ok = res.statusCode < 300 || (n > 0 && call.doneWhen?.(res.statusCode));
    if (ok) return { headers: res.headers };
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
    throw new UpstreamError(
      `the storage answered HTTP ${res.statusCode}${code ? ` (${code})` : ""} for ${method}`,
      { retryable: res.statusCode >= 500, httpStatus: res.statusCode },
    );
  };
  return api.transport.queue.run(attempt, {
    idempotent: true,
    priority: "bulk",
    signal: call.signal,
  });
}
