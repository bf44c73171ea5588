import { UpstreamError } from "../../errors.js";
import type { CloudreveApi } from "../api.js";
import { sendParts } from "../parts.js";
import type { UploadSession } from "../types.js";
import type { PolicyUploader, UploadRequest } from "../upload-request.js";
import { clientCallback } from "./callback.js";
import { OCTET, storageCall, type StorageReply } from "./storage-call.js";

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
 * The completion request to `completeURL`. A completion whose answer was lost and is sent
 * again meets 404 NoSuchUpload (the upload id went with the first try): it is taken as done,
 * and what Cloudreve shows afterwards decides (uploadBySession checks it).
 */
export async function completeMultipart(
  api: CloudreveApi,
  session: UploadSession,
  upload: UploadRequest,
  completion: { body: Buffer; headers: Record<string, string>; accept?: (r: StorageReply) => void },
): Promise<void> {
  if (!session.completeURL) throw new UpstreamError("Cloudreve gave no completion URL");
  const { body, headers, accept } = completion;
  await storageCall(api, session.completeURL, "POST", {
    body: async () => body,
    length: body.length,
    headers,
    signal: upload.signal,
    doneWhen: (status) => status === 404,
    accept,
  });
}

/**
 * S3 and the stores that speak its multipart protocol, KS3 and COS (§6.2): each part is PUT to
 * its presigned URL straight to the storage and its ETag kept; the parts are completed with
 * the XML list at `completeURL`; then the client callback has Cloudreve check the object's
 * size and finish. A presigned URL cannot be renewed, so a part the storage refuses (403)
 * fails the upload.
 */
function multipartUploader(extraCompleteHeaders: Record<string, string>): PolicyUploader {
  return {
    async send(api, session, upload) {
      const etags = await putParts(api, session, upload);
      await completeMultipart(api, session, upload, {
        body: completeXml(etags),
        headers: { "content-type": "application/xml", ...extraCompleteHeaders },
      });
      await clientCallback(api, session, upload);
    },
  };
}

export const s3Uploader = multipartUploader({});
export const cosUploader = multipartUploader({ "x-cos-forbid-overwrite": "true" });
