import { Readable } from "node:stream";
import { NotFound, TooLarge, UpstreamError } from "../errors.js";
import type { CloudreveApi } from "./api.js";
import { ChunkTee, ExactReader, inMemory } from "./parts.js";
import { uploaderFor } from "./policies/index.js";
import type { File, UploadSession } from "./types.js";
import type { JournalTicket } from "./upload-journal.js";
import { stored, type UploadRequest } from "./upload-request.js";

export type { UploadRequest } from "./upload-request.js";

/**
 * Writes one file and returns its final state, only once Cloudreve shows it: the size sent, a
 * version other than `previousEntity`, no upload pending. Small files take the one-call path
 * (without the modification time: the caller records it); everything else an upload session,
 * cancelled on any failure so that no placeholder or 24-hour path lock is left behind (§5.11,
 * §6.4).
 */
export async function uploadFile(api: CloudreveApi, upload: UploadRequest): Promise<File> {
  const directMax = upload.directMaxBytes ?? 4 * 1024 * 1024;
  // An empty file always: OneDrive's upload sessions cannot take one (§6.2).
  if (upload.size > directMax && upload.size > 0) return uploadBySession(api, upload);
  const reader = new ExactReader(upload.source, upload.onBytes);
  // Read whole, with no try streaming from it: the same filling as a chunk's.
  const body = Buffer.allocUnsafe(upload.size);
  await new ChunkTee(inMemory(body)).fill(reader);
  await reader.expectEnd();
  // `onBytes` has seen the body already.
  const bySession = () =>
    uploadBySession(api, { ...upload, source: Readable.from([body]), onBytes: undefined });
  // PUT /file/content is an upsert; without `replace` the caller wants Exists on a clash.
  if (!upload.replace) return bySession();
  try {
    return stored(await api.putContent(upload.uri, body, upload.size), upload);
  } catch (err) {
    // The site's edit limit (`maxEditSize`) is lower than ours: a session takes any size.
    if (err instanceof TooLarge && upload.size > 0) return bySession();
    throw err;
  }
}

/** Lost on the way, not refused: the upstream may have acted on the request. */
function ambiguous(err: unknown): boolean {
  return err instanceof UpstreamError && err.httpStatus === undefined && err.code === undefined;
}

async function uploadBySession(
  api: CloudreveApi,
  upload: UploadRequest,
  retried = false,
): Promise<File> {
  const ticket = await api.journal.open(upload.uri);
  let session: UploadSession;
  try {
    session = await api.createUploadSession({
      uri: upload.uri,
      size: upload.size,
      lastModified: upload.mtimeMs,
      replace: upload.replace,
      mimeType: upload.mimeType,
    });
  } catch (err) {
    if (!ambiguous(err) || retried || upload.signal?.aborted) {
      await ticket.closed();
      throw err;
    }
    // The session may exist, holding its lock: the journal frees it when the second try
    // meets that lock.
    ticket.abandoned();
    return uploadBySession(api, upload, true);
  }
  let file: File;
  try {
    await ticket.started(session.session_id);
    const uploader = uploaderFor(session);
    if (!uploader) {
      throw new UpstreamError(
        `storage policy type "${session.storage_policy?.type}" is not supported yet`,
      );
    }
    await uploader.send(api, session, upload);
    file = stored(await api.info(upload.uri), upload);
  } catch (err) {
    await cancel(api, session.session_id, upload.uri, ticket);
    throw err;
  }
  await ticket.closed();
  return file;
}

/** Cancels a session; one that cannot be cancelled now stays in the journal to be freed later. */
async function cancel(
  api: CloudreveApi,
  sessionId: string,
  uri: string,
  ticket: JournalTicket,
): Promise<void> {
  try {
    await api.cancelUpload(sessionId, uri);
  } catch (err) {
    // NotFound: the session is gone already (completed, or the file removed).
    if (!(err instanceof NotFound)) {
      ticket.abandoned();
      return;
    }
  }
  await ticket.closed();
}
