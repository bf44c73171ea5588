import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { UpstreamError } from "../../errors.js";
import type { CloudreveApi } from "../api.js";
import { sendParts } from "../parts.js";
import { isStored, type PolicyUploader, type UploadRequest } from "../upload-request.js";
import { jsonField, storageCall, type StorageReply } from "./storage-call.js";

/** The form around the file: its fields first, the file's part header, and the closing line. */
function formFrame(fields: [string, string][], boundary: string): { head: Buffer; tail: Buffer } {
  const part = (disposition: string) =>
    `--${boundary}\r\nContent-Disposition: form-data; ${disposition}\r\n`;
  const head =
    fields.map(([name, value]) => `${part(`name="${name}"`)}\r\n${value}\r\n`).join("") +
    `${part('name="file"; filename="file"')}Content-Type: application/octet-stream\r\n\r\n`;
  return { head: Buffer.from(head), tail: Buffer.from(`\r\n--${boundary}--\r\n`) };
}

/** Upyun's answer to a stored form is `{"code": 200, "message": "ok", …}`. */
function stored(reply: StorageReply): void {
  if (jsonField(reply.text, "code") !== 200)
    throw new UpstreamError(`Upyun did not confirm the upload: ${reply.text.slice(0, 200)}`);
}

/** Polls start this far apart and double up to a second. */
const FIRST_POLL_MS = 50;
const MAX_POLL_MS = 1_000;

/**
 * Upyun notifies Cloudreve after it has answered the form, in the background: the upload is
 * done once Cloudreve shows the file. A notify that never lands (Cloudreve refused it, or it was
 * lost) leaves the session pending; after as long as Cloudreve may take to answer a call, the
 * upload fails and is cancelled.
 */
async function completedByNotify(api: CloudreveApi, upload: UploadRequest): Promise<void> {
  const limitMs = api.transport.timeouts.headersMs;
  const deadline = Date.now() + limitMs;
  for (let wait = FIRST_POLL_MS; ; wait = Math.min(2 * wait, MAX_POLL_MS)) {
    if (isStored(await api.info(upload.uri), upload)) return;
    if (Date.now() >= deadline)
      throw new UpstreamError(
        `Upyun stored ${upload.uri}, but Cloudreve did not complete the upload within ` +
          `${limitMs / 1000} s (its notify from Upyun failed or was lost)`,
      );
    await sleep(wait, undefined, { signal: upload.signal });
  }
}

/**
 * Upyun's form API (§6.2): the whole file in one `multipart/form-data` POST to
 * `upload_urls[0]` with `policy`, `authorization`, `content-type` and the file last, streamed
 * with its length known up front. The file is one part of `sendParts` (chunk size 0), so a
 * retry resends bytes kept in memory, or on disk when the file is large. Upyun answers the
 * form, then notifies Cloudreve on its own.
 */
export const upyunUploader: PolicyUploader = {
  async send(api, session, upload) {
    const url = session.upload_urls?.[0];
    if (!url || !session.upload_policy || !session.credential)
      throw new UpstreamError("Cloudreve gave no Upyun form URL, policy or signature");
    const boundary = `cloudreve-dav-${randomBytes(16).toString("hex")}`;
    const { head, tail } = formFrame(
      [
        ["policy", session.upload_policy],
        ["authorization", session.credential],
        ...(session.mime_type ? [["content-type", session.mime_type] as [string, string]] : []),
      ],
      boundary,
    );
    await sendParts({ ...session, chunk_size: 0 }, upload, (_index, length, body, signal) =>
      storageCall(api, url, "POST", {
        body: async (attempt) => {
          const file = await body(attempt);
          return Readable.from(
            (async function* () {
              yield head;
              if (Buffer.isBuffer(file)) yield file;
              else yield* file;
              yield tail;
            })(),
            { objectMode: false },
          );
        },
        length: head.length + length + tail.length,
        headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
        signal,
        accept: stored,
      }),
    );
    await completedByNotify(api, upload);
  },
};
