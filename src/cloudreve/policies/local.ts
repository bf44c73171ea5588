import { sendParts } from "../parts.js";
import type { PolicyUploader } from "../upload-request.js";

/**
 * Local and relay policies: chunks are POSTed to Cloudreve itself (§6.2), in order (one at a
 * time by default: the local driver writes sequentially). Completion is automatic on the last.
 */
export const relayUploader: PolicyUploader = {
  async send(api, session, upload) {
    await sendParts(session, upload, (index, length, body, signal) =>
      api.uploadChunk(session.session_id, index, length, body, signal),
    );
  },
};
