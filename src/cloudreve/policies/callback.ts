import type { CloudreveApi } from "../api.js";
import type { UploadSession } from "../types.js";
import { storedAfterAll, type UploadRequest } from "../upload-request.js";

/**
 * The client callback of the policies whose storage does not call Cloudreve itself (§6.2,
 * §6.6): Cloudreve checks the stored object and completes the upload.
 */
export async function clientCallback(
  api: CloudreveApi,
  session: UploadSession,
  upload: UploadRequest,
): Promise<void> {
  const type = session.storage_policy?.type ?? "s3";
  try {
    await api.uploadCallback(type, session.session_id, session.callback_secret);
  } catch (err) {
    // A callback that completed but whose answer was lost shows as the stored file; else the
    // callback's own error stands (and cancels).
    if (!(await storedAfterAll(api, upload))) throw err;
  }
}
