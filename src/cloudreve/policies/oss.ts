import { UpstreamError } from "../../errors.js";
import type { PolicyUploader } from "../upload-request.js";
import { completeMultipart, completeXml, putParts } from "./s3.js";
import { OCTET, relayedSuccess, type StorageReply } from "./storage-call.js";

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
  relayedSuccess(reply, "the storage");
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
      await completeMultipart(api, session, upload, { ...completion(etags), accept: calledBack });
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
