import { UpstreamError } from "../../errors.js";
import type { CloudreveApi } from "../api.js";
import { sendParts } from "../parts.js";
import type { UploadSession } from "../types.js";
import type { PolicyUploader, UploadRequest } from "../upload-request.js";
import { storageCall, type StorageReply } from "./storage-call.js";

const OCTET = "application/octet-stream";

/**
 * Every part PUT to its presigned URL straight to the storage (each retried on its own, up to
 * `chunk_concurrency` at once), with the Content-Type the URLs are signed with. Resolves to the
 * parts' ETags in order.
 */
export async function putParts(
  api: CloudreveApi,
  session: UploadSession,
  upload: UploadRequest,
): Promise<string[]> {
  const urls = session.upload_urls ?? [];
  return sendParts(session, upload, async (index, length, body, signal) => {
    const url = urls[index];
    if (!url) throw new UpstreamError(`Cloudreve gave no upload URL for part ${index + 1}`);
    const reply = await storageCall(api, url, "PUT", {
      body,
      length,
      headers: { "content-type": OCTET },
      signal,
    });
    const etag = reply.headers.etag;
    if (typeof etag !== "string") throw new UpstreamError("the storage gave a part no ETag");
    return etag;
  });
}

/** S3's CompleteMultipartUpload body: the parts' numbers and ETags. */
export function completeXml(etags: string[]): Buffer {
  return Buffer.from(
    `<CompleteMultipartUpload>${etags
      .map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${etag}</ETag></Part>`)
      .join("")}</CompleteMultipartUpload>`,
  );
}

/**
 * The completion's answer carries the outcome of the storage's callback to Cloudreve: 200 with
 * Cloudreve's envelope when it completed the upload, 203 when the object is stored but the
 * callback failed (Cloudreve refused it or was not reached), which no retry mends.
 */
function calledBack(reply: StorageReply): void {
  if (reply.status === 203) {
    const reason = /<Code>([^<]*)<\/Code>|"code":\s*"([^"]*)"/.exec(reply.text);
    throw new UpstreamError(
      `the storage stored the object, but its callback to Cloudreve failed` +
        `${reason ? ` (${reason[1] ?? reason[2]})` : ""}`,
      { httpStatus: 203 },
    );
  }
  let code: unknown;
  try {
    code = (JSON.parse(reply.text) as { code?: unknown }).code;
  } catch {
    // Not Cloudreve's answer: nothing says the upload completed.
  }
  if (code !== 0) {
    throw new UpstreamError(
      `the storage completed the upload, but relayed no success from Cloudreve (HTTP ` +
        `${reply.status}: ${reply.text.slice(0, 200)})`,
    );
  }
}

/**
 * The stores that call Cloudreve back themselves once a completion has stored the object, OSS
 * and OBS (§6.2): the parts go up as S3's do, then one completion request whose answer is
 * Cloudreve's; there is no client callback. A completion whose answer was lost and is sent
 * again meets 404 NoSuchUpload (the upload id went with the first): it is taken as done here,
 * and whether Cloudreve completed is what uploadBySession checks next (a failed callback shows
 * as the upload still pending, and the session is cancelled).
 */
function calledBackUploader(
  completion: (etags: string[]) => { body: Buffer; headers: Record<string, string> },
): PolicyUploader {
  return {
    async send(api, session, upload) {
      const etags = await putParts(api, session, upload);
      if (!session.completeURL) throw new UpstreamError("Cloudreve gave no completion URL");
      const { body, headers } = completion(etags);
      await storageCall(api, session.completeURL, "POST", {
        body: async () => body,
        length: body.length,
        headers,
        signal: upload.signal,
        doneWhen: (status) => status === 404,
        accept: calledBack,
      });
    },
  };
}

/** OSS joins every uploaded part itself (`x-oss-complete-all`); the URL is signed with these. */
export const ossUploader = calledBackUploader(() => ({
  body: Buffer.alloc(0),
  headers: {
    "content-type": OCTET,
    "x-oss-forbid-overwrite": "true",
    "x-oss-complete-all": "yes",
  },
}));

/** OBS takes S3's list of parts, under the Content-Type its URL is signed with. */
export const obsUploader = calledBackUploader((etags) => ({
  body: completeXml(etags),
  headers: { "content-type": OCTET },
}));
