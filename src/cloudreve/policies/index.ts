import type { UploadSession } from "../types.js";
import type { PolicyUploader } from "../upload-request.js";
import { relayUploader } from "./local.js";
import { cosUploader, s3Uploader } from "./s3.js";

/** The uploader of each storage policy type (§6.2); relay sends every type's through Cloudreve. */
const uploaders: Record<string, PolicyUploader> = {
  local: relayUploader,
  s3: s3Uploader,
  ks3: s3Uploader,
  cos: cosUploader,
};

export function uploaderFor(session: UploadSession): PolicyUploader | undefined {
  const policy = session.storage_policy;
  if (!policy || policy.relay) return relayUploader;
  return uploaders[policy.type];
}
