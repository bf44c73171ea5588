import type { Readable } from "node:stream";
import { UpstreamError } from "../errors.js";
import type { CloudreveApi } from "./api.js";
import type { File, UploadSession } from "./types.js";

export interface UploadRequest {
  uri: string;
  source: Readable;
  /** Exact byte count the source will deliver. */
  size: number;
  /** Modification time in milliseconds; only an upload session can set it. */
  mtimeMs?: number;
  /**
   * Files up to this size go up in one `PUT /file/content` (without the time, which the caller
   * records otherwise) unless the site's edit limit is lower. Default 4 MiB.
   */
  directMaxBytes?: number;
  /** Replace an existing file instead of failing with Exists. */
  replace: boolean;
  mimeType?: string;
  /** The version being replaced, if known: the upload must leave another one current. */
  previousEntity?: string;
  /**
   * Chunks up to this size are kept in memory for a retry, larger ones in a temporary file
   * (relay mode sends the whole file as one chunk). Default 64 MiB.
   */
  memoryChunkBytes?: number;
  /**
   * Sees every byte of `source` once, in order, as it is read (the caller's checksums): a
   * part sent again is not read again.
   */
  onBytes?: (piece: Buffer) => void;
  signal?: AbortSignal;
}

/** Sends the bytes of an upload session: one implementation per storage policy type (§6.2). */
export interface PolicyUploader {
  send(api: CloudreveApi, session: UploadSession, upload: UploadRequest): Promise<void>;
}

/** Cloudreve shows the write: the size sent, a version other than the one replaced, nothing pending. */
export function isStored(file: File, upload: UploadRequest): boolean {
  const pending = file.metadata?.["sys:upload_session_id"] !== undefined;
  const sameVersion =
    upload.previousEntity !== undefined && file.primary_entity === upload.previousEntity;
  return file.size === upload.size && !pending && !sameVersion && Boolean(file.primary_entity);
}

/** The file as Cloudreve shows it after a write, if it holds what was written. */
export function stored(file: File, upload: UploadRequest): File {
  if (!isStored(file, upload)) {
    const pending = file.metadata?.["sys:upload_session_id"] !== undefined;
    throw new UpstreamError(
      `Cloudreve does not show the upload of ${upload.uri} as complete (size ${file.size} of ` +
        `${upload.size}${pending ? ", still uploading" : ""})`,
    );
  }
  return file;
}

/**
 * Whether Cloudreve shows the upload complete after all: a completion whose answer was lost.
 * When that cannot be checked either, the answer is no.
 */
export async function storedAfterAll(api: CloudreveApi, upload: UploadRequest): Promise<boolean> {
  // Not answered either: not known to be stored, so the caller's own error stands and the
  // session is cancelled (nothing is claimed that Cloudreve did not show).
  const file = await api.info(upload.uri).catch(() => undefined);
  return file !== undefined && isStored(file, upload);
}
