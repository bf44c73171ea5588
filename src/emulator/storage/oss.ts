import { randomBytes } from "node:crypto";
import { StorageError, xmlEscape } from "./objects.js";
import { sendXml } from "./origin.js";
import { calledBackProvider } from "./called-back.js";
import type { StorageContext, UploadProvider } from "./provider.js";

const OCTET = "application/octet-stream";

/**
 * Alibaba OSS (`[S] driver/oss/oss.go` Token, `[F] uploader/oss.ts`): the completion URL is
 * signed with `x-oss-complete-all: yes` (OSS joins every uploaded part, the body must be empty)
 * and `x-oss-forbid-overwrite: true`, and carries the callback policy in `callback`. A failed
 * callback answers 203 with an XML `CallbackFailed` error.
 */
export function ossProvider(ctx: StorageContext): UploadProvider {
  return calledBackProvider(ctx, {
    callbackParam: "callback",
    callbackPolicy: {
      callbackBody:
        '{"name":${x:fname},"source_name":${object},"size":${size},' +
        '"pic_info":"${imageInfo.width},${imageInfo.height}"}',
      callbackBodyType: "application/json",
      callbackSNI: true,
    },
    partHeaders: { "content-type": OCTET },
    completeHeaders: {
      "content-type": OCTET,
      "x-oss-complete-all": "yes",
      "x-oss-forbid-overwrite": "true",
    },
    minPartSize: 100 * 1024,
    variables: (key) => ({ object: key }),
    parts(multipart, upload, body) {
      if (body !== "")
        throw new StorageError(
          400,
          "InvalidArgument",
          "Should not specify request body when x-oss-complete-all is yes.",
        );
      const parts = multipart.all(upload);
      if (parts.length === 0)
        throw new StorageError(400, "InvalidPart", "No part of this upload has been uploaded.");
      return parts;
    },
    callbackFailed: (res, message, objects) =>
      sendXml(
        res,
        203,
        `<Error><Code>CallbackFailed</Code><Message>${xmlEscape(message)}</Message>` +
          `<RequestId>${randomBytes(12).toString("hex").toUpperCase()}</RequestId></Error>`,
        objects,
      ),
  });
}
