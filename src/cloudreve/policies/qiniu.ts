import { UpstreamError } from "../../errors.js";
import { sendParts } from "../parts.js";
import type { PolicyUploader } from "../upload-request.js";
import { jsonField, OCTET, relayedSuccess, storageCall } from "./storage-call.js";

/**
 * Qiniu's own statuses above 599 and its 579 are answers, not outages: a callback that failed,
 * an upload id that is gone, a token refused. Repeating them changes nothing.
 */
const qiniuRetryable = (status: number) => status >= 500 && status <= 599 && status !== 579;

/**
 * Qiniu's multipart upload v2 (§6.2): each part PUT to `{upload_urls[0]}/{n}` with the session's
 * UpToken (answered `{"etag", "md5"}`), up to `chunk_concurrency` at once, each retried on its
 * own; then the JSON list of parts POSTed to `{upload_urls[0]}`. Qiniu calls Cloudreve back
 * before it answers the completion, and answers with the callback's answer (579 when the
 * callback failed; the object then stays stored until the cancel removes it).
 *
 * A completion sent again after its answer was lost meets 612: the upload id went with the
 * first try. That is taken as done here; whether Cloudreve completed is what uploadBySession
 * checks next, and a session still pending is cancelled. A 579 fails the upload at once.
 */
export const qiniuUploader: PolicyUploader = {
  async send(api, session, upload) {
    const base = session.upload_urls?.[0];
    if (!base || !session.credential)
      throw new UpstreamError("Cloudreve gave no Qiniu upload URL or token");
    const authorization = `UpToken ${session.credential}`;
    const etags = await sendParts(session, upload, async (index, length, body, signal) => {
      const reply = await storageCall(api, `${base}/${index + 1}`, "PUT", {
        body,
        length,
        headers: { authorization, "content-type": OCTET },
        signal,
        retryable: qiniuRetryable,
      });
      const etag = jsonField(reply.text, "etag");
      if (typeof etag !== "string" || etag === "")
        throw new UpstreamError(`Qiniu gave part ${index + 1} no etag`);
      return etag;
    });
    const parts = Buffer.from(
      JSON.stringify({
        parts: etags.map((etag, i) => ({ etag, partNumber: i + 1 })),
        ...(session.mime_type ? { mimeType: session.mime_type } : {}),
      }),
    );
    await storageCall(api, base, "POST", {
      body: async () => parts,
      length: parts.length,
      headers: { authorization, "content-type": "application/json" },
      signal: upload.signal,
      doneWhen: (status) => status === 612,
      accept: (reply) => relayedSuccess(reply, "Qiniu"),
      retryable: qiniuRetryable,
    });
  },
};
