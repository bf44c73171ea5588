import { randomBytes } from "node:crypto";
import { calledBackProvider, sendJson } from "./called-back.js";
import type { StorageContext, UploadProvider } from "./provider.js";

const OCTET = "application/octet-stream";

/**
 * Huawei OBS (`[S] driver/obs/obs.go` Token, `[F] uploader/obs.ts`): parts and the completion
 * are signed with `Content-Type: application/octet-stream`, the completion lists the parts as
 * S3's does and carries the callback policy in `x-obs-callback`. A failed callback answers 203
 * with a JSON error, the shape `[F] core/api/index.ts` obsFinishUpload reads.
 */
export function obsProvider(ctx: StorageContext): UploadProvider {
  return calledBackProvider(ctx, {
    callbackParam: "x-obs-callback",
    callbackPolicy: {
      callbackBody: '{"name":${key},"source_name":${fname},"size":${size}}',
      callbackBodyType: "application/json",
    },
    partHeaders: { "content-type": OCTET },
    completeHeaders: { "content-type": OCTET },
    minPartSize: 100 * 1024,
    variables: (key) => ({ key }),
    parts: (multipart, upload, body) => multipart.listed(upload, body),
    callbackFailed: (res, message, objects) =>
      sendJson(
        res,
        203,
        JSON.stringify({
          code: "CallbackFailed",
          message,
          request_id: randomBytes(16).toString("hex"),
        }),
        objects,
      ),
  });
}
