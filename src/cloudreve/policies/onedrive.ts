import { UpstreamError } from "../../errors.js";
import { sendParts } from "../parts.js";
import type { PolicyUploader } from "../upload-request.js";
import { clientCallback } from "./callback.js";
import { storageCall, type StorageReply } from "./storage-call.js";

/** Graph wants every fragment but the last in multiples of 320 KiB, each under 60 MiB. */
const ALIGN = 327_680;
const MAX_FRAGMENT = 191 * ALIGN;

/**
 * The fragment size: Cloudreve's chunk size on Graph's grid. Cloudreve never sees the
 * fragments (only the callback), so a chunk size off the grid or over the limit is not kept.
 */
function fragmentSize(chunkSize: number): number {
  if (chunkSize <= 0) return MAX_FRAGMENT;
  return Math.min(MAX_FRAGMENT, Math.max(ALIGN, chunkSize - (chunkSize % ALIGN)));
}

/**
 * OneDrive (§6.2): the file is PUT to the Graph upload session's URL fragment by fragment with
 * `Content-Range`; the last fragment commits it; then the client callback has Cloudreve check
 * the size and finish.
 */
export const onedriveUploader: PolicyUploader = {
  async send(api, session, upload) {
    const url = session.upload_urls?.[0];
    if (!url) throw new UpstreamError("Cloudreve gave no OneDrive upload URL");
    const total = upload.size;
    // Content-Range has no form for zero bytes; empty files go by PUT /file/content.
    if (total === 0) throw new UpstreamError("a OneDrive upload session cannot take an empty file");
    const fragment = fragmentSize(session.chunk_size);
    // Graph refuses a fragment that does not start at the next byte expected, so fragments go
    // one at a time whatever chunk_concurrency says (the web UI's OneDrive uploader, which
    // computes each range from the bytes sent so far, can only work one at a time too).
    const sequential = {
      ...session,
      chunk_size: fragment,
      storage_policy: session.storage_policy && {
        ...session.storage_policy,
        chunk_concurrency: 1,
      },
    };
    await sendParts(sequential, upload, async (index, length, body, signal) => {
      const start = index * fragment;
      const end = start + length - 1;
      const last = end + 1 === total;
      await storageCall(api, url, "PUT", {
        body,
        length,
        headers: { "content-range": `bytes ${start}-${end}/${total}` },
        signal,
        // A repeat after a lost answer: Graph has the fragment (416, it takes a fragment whole
        // or not at all), or the last one committed the file and the session is gone (404).
        // Were it otherwise, the next fragment (416) or the callback's size check would fail.
        doneWhen: (status) => status === 416 || (last && status === 404),
        accept: (reply) => checkAnswer(reply, end, total, last),
      });
    });
    await clientCallback(api, session, upload);
  },
};

/**
 * A 2xx for a fragment must show where the file stands: the next byte expected, or the item
 * committed at its full size. An answer cut short is tried again (the repeat then meets 416 or
 * 404 above); one that tells of another state fails the upload.
 */
function checkAnswer(reply: StorageReply, end: number, total: number, last: boolean): void {
  let body: { nextExpectedRanges?: unknown; size?: unknown };
  try {
    body = (JSON.parse(reply.text) ?? {}) as typeof body;
  } catch (err) {
    throw new UpstreamError("OneDrive's answer to a fragment was cut short", {
      retryable: true,
      cause: err,
    });
  }
  if (last) {
    if (reply.status !== 202 && body.size === total) return;
    throw new UpstreamError("OneDrive did not commit the file after its last fragment");
  }
  const next = Array.isArray(body.nextExpectedRanges) ? String(body.nextExpectedRanges[0]) : "";
  if (reply.status !== 202 || Number(/^(\d+)-/.exec(next)?.[1]) !== end + 1)
    throw new UpstreamError(`OneDrive expects ${next || "nothing"} after byte ${end}`);
}
