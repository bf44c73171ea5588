import type { UploadSession } from "../types.js";
import type { PolicyUploader } from "../upload-request.js";
import { relayUploader } from "./local.js";
import { onedriveUploader } from "./onedrive.js";
import { remoteUploader } from "./remote.js";
import { cosUploader, s3Uploader } from "./s3.js";
import { qiniuUploader } from "./qiniu.js";
import { upyunUploader } from "./upyun.js";
import { obsUploader, ossUploader } from "./oss.js";

/** The uploader of each storage policy type (§6.2); relay sends every type's through Cloudreve. */
const uploaders: Record<string, PolicyUploader> = {
  local: relayUploader,
  s3: s3Uploader,
  ks3: s3Uploader,
  cos: cosUploader,
  qiniu: qiniuUploader,
  upyun: upyunUploader,
  oss: ossUploader,
  obs: obsUploader,
  remote: remoteUploader,
  onedrive: onedriveUploader,
};

export function uploaderFor(session: UploadSession): PolicyUploader | undefined {
  const policy = session.storage_policy;
  if (!policy || policy.relay) return relayUploader;
  return uploaders[policy.type];
}
