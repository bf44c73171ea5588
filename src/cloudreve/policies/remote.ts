import { UpstreamError } from "../../errors.js";
import { sendParts } from "../parts.js";
import { storedAfterAll, type PolicyUploader } from "../upload-request.js";
import { OCTET, storageCall, type StorageReply } from "./storage-call.js";

/** CodeIOFailed (`[S] pkg/serializer/error.go`): a chunk's bytes did not all arrive or land. */
const IO_FAILED = 50004;

/** The slave answered HTTP 200 with an error envelope. */
class SlaveRefusal extends UpstreamError {}

/**
 * The envelope of a slave's answer. Only 50004 is worth a retry: sending the same bytes again
 * is idempotent. A credential cannot be renewed, a length does not change, a session found
 * gone (40011) stays gone, and a failed completion is not repeated by a re-sent chunk (the
 * slave has every chunk by then and answers 0 without calling back).
 */
function checkEnvelope(reply: StorageReply): void {
  let envelope: { code?: unknown; msg?: unknown };
  try {
    envelope = JSON.parse(reply.text) as typeof envelope;
  } catch {
    throw new UpstreamError(`the slave node answered HTTP ${reply.status} without an envelope`);
  }
  const code = envelope?.code;
  if (code === 0) return;
  throw new SlaveRefusal(
    `the slave node refused a chunk: ${String(envelope?.msg)} (${String(code)})`,
    { code: typeof code === "number" ? code : undefined, retryable: code === IO_FAILED },
  );
}

/**
 * A remote (slave) node (§6.2): each chunk is POSTed to the slave's upload URL with `?chunk=i`
 * and the session's `credential` as the Authorization header, up to `chunk_concurrency` at once
 * (the slave pre-allocates the file). The slave completes on the last missing chunk by calling
 * Cloudreve back itself and relays a failure of that callback as the chunk's error.
 */
export const remoteUploader: PolicyUploader = {
  async send(api, session, upload) {
    const url = session.upload_urls?.[0];
    const credential = session.credential;
    if (!url || !credential) {
      throw new UpstreamError("Cloudreve gave no slave upload URL or credential");
    }
    try {
      await sendParts(session, upload, async (index, length, body, signal) => {
        await storageCall(api, `${url}?chunk=${index}`, "POST", {
          body,
          length,
          headers: { authorization: credential, "content-type": OCTET },
          signal,
          accept: checkEnvelope,
        });
      });
    } catch (err) {
      if (!(err instanceof SlaveRefusal)) throw err;
      // The slave may have completed anyway: a chunk re-sent after its answer was lost finds
      // the session gone (40011), a callback whose answer the slave lost is relayed as 50007.
      // Cloudreve's view of the file decides.
      if (!(await storedAfterAll(api, upload))) throw err;
    }
  },
};
