import { UpstreamError } from "../../errors.js";
import { sendParts } from "../parts.js";
import type { PolicyUploader } from "../upload-request.js";
import { clientCallback } from "./callback.js";
import { storageCall } from "./storage-call.js";

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
      const urls = session.upload_urls ?? [];
      const etags = await sendParts(session, upload, async (index, length, body, signal) => {
        const url = urls[index];
        if (!url) throw new UpstreamError(`Cloudreve gave no upload URL for part ${index + 1}`);
        const reply = await storageCall(api, url, "PUT", {
          body,
          length,
          headers: { "content-type": "application/octet-stream" },
          signal,
        });
        const etag = reply.headers.etag;
        if (typeof etag !== "string") throw new UpstreamError("the storage gave a part no ETag");
        return etag;
      });
      if (!session.completeURL) throw new UpstreamError("Cloudreve gave no completion URL");
      const xml = Buffer.from(
        `<CompleteMultipartUpload>${etags
          .map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${etag}</ETag></Part>`)
          .join("")}</CompleteMultipartUpload>`,
      );
      await storageCall(api, session.completeURL, "POST", {
        body: async () => xml,
        length: xml.length,
        headers: { "content-type": "application/xml", ...extraCompleteHeaders },
        signal: upload.signal,
        // Completed by a try whose answer was lost: the upload id is gone.
        doneWhen: (status) => status === 404,
      });
      await clientCallback(api, session, upload);
    },
  };
}

export const s3Uploader = multipartUploader({});
export const cosUploader = multipartUploader({ "x-cos-forbid-overwrite": "true" });
