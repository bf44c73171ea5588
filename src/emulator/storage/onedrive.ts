import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { UploadSession } from "../state.js";
import { StorageError } from "./objects.js";
import type { StorageContext, UploadProvider } from "./provider.js";

/** Graph's recommended fragment unit; a file cut otherwise fails when it is committed. */
const FRAGMENT_ALIGN = 327_680;
/**
 * An upload session lives this long after it is created or after its last fragment
 * (`[G] resources/uploadsession` expirationDateTime: "Each fragment uploaded during the session
 * extends the expiration time"; 15 minutes as OneDrive for Business answers it).
 */
const IDLE_MS = 15 * 60 * 1000;
const SESSION_PATH = /^\/_api\/v2\.0\/drives\/[^/]+\/items\/([^/]+)\/uploadSession$/;

/** A Graph error: `{"error": {"code", "message", "innererror"?: {"code"}}}`. */
class GraphError extends StorageError {
  constructor(
    status: number,
    code: string,
    message: string,
    readonly inner?: string,
  ) {
    super(status, code, message);
  }
}

// Status, codes and messages as Graph answers them (OneDrive/onedrive-api-docs#53, #64, #79,
// #1332, microsoft-graph-docs#1638, abraunegg/onedrive#849, #3859).
const sessionNotFound = () =>
  new GraphError(404, "itemNotFound", "The upload session was not found");
const badRange = () =>
  new GraphError(400, "invalidRequest", "The Content-Range header is missing or malformed.");
const lengthMismatch = () =>
  new GraphError(
    400,
    "invalidRequest",
    "The Content-Range header length does not match the provided number of bytes.",
  );
const overlap = () =>
  new GraphError(
    416,
    "invalidRange",
    "Uploaded fragment overlaps with existing data.",
    "fragmentOverlap",
  );
const outOfOrder = () =>
  new GraphError(416, "invalidRange", "Uploaded fragment is out of order.", "fragmentOutOfOrder");

interface Fragment {
  path: string;
  length: number;
}

/** A Graph upload session: the fragments received so far, in order. */
interface GraphSession {
  key: string;
  itemId: string;
  dir: string;
  fragments: Fragment[];
  /** The next byte expected. */
  received: number;
  /** The file's size, as the first fragment's Content-Range declared it. */
  total?: number;
  expiresAt: number;
}

/**
 * OneDrive (`[S] driver/onedrive` Token, `[F] uploader/onedrive.ts`): the session answers one
 * pre-authenticated Graph upload URL on the storage's origin; the client PUTs the file to it
 * in order, fragment by fragment, with `Content-Range: bytes start-end/total`; the fragment
 * that ends the file commits it. Then the client calls Cloudreve back, which checks the size.
 * Graph also answers GET (the missing ranges) and DELETE (cancel) on the upload URL.
 */
export function onedriveProvider(ctx: StorageContext): UploadProvider {
  const { objects, stats, clock } = ctx;
  const sessions = new Map<string, GraphSession>();

  /** The live session of an upload URL; an expired one is cleaned up, as Graph does. */
  async function live(url: URL): Promise<[string, GraphSession]> {
    const guid = url.searchParams.get("guid") ?? "";
    const session = sessions.get(guid);
    if (!session || session.itemId !== SESSION_PATH.exec(url.pathname)?.[1])
      throw sessionNotFound();
    if (session.expiresAt <= clock.now()) {
      await drop(guid, session);
      throw sessionNotFound();
    }
    return [guid, session];
  }

  async function drop(guid: string, session: GraphSession): Promise<void> {
    if (sessions.get(guid) === session) sessions.delete(guid);
    await rm(session.dir, { recursive: true, force: true });
  }

  const status = (session: GraphSession) => ({
    expirationDateTime: new Date(session.expiresAt).toISOString(),
    nextExpectedRanges: [`${session.received}-`],
  });

  async function putFragment(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const [guid, session] = await live(url);
    // The URL carries its own authentication; Graph may refuse a bearer token next to it.
    if (req.headers.authorization !== undefined)
      throw new GraphError(401, "unauthenticated", "Unauthenticated");
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(req.headers["content-range"] ?? "");
    if (!range) throw badRange();
    const [start, end, total] = range.slice(1).map(Number) as [number, number, number];
    // An empty file has no range to send: upload sessions cannot take one.
    if (!(start <= end && end < total)) throw badRange();
    if (Number(req.headers["content-length"]) !== end - start + 1) throw lengthMismatch();
    if (session.total !== undefined && total !== session.total)
      throw new GraphError(
        400,
        "invalidRequest",
        `The current upload session is for ${session.total} total bytes, but the current ` +
          `fragment declares a total of ${total}.`,
      );
    if (start < session.received) throw overlap();
    if (start > session.received) throw outOfOrder();

    await mkdir(session.dir, { recursive: true });
    const fragment = { path: join(session.dir, `${start}.${randomUUID()}`), length: 0 };
    const tap = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        fragment.length += chunk.length;
        stats.bytesIn += chunk.length;
        done(null, chunk);
      },
    });
    const whole = await pipeline(req, tap, createWriteStream(fragment.path)).then(
      () => fragment.length === end - start + 1,
      () => false,
    );
    // A fragment that broke off is ignored whole; so is one that lost a race for its range.
    const current = sessions.get(guid) === session;
    if (!whole || !current || start !== session.received) {
      await rm(fragment.path, { force: true });
      if (!whole) return void res.destroy();
      throw current ? overlap() : sessionNotFound();
    }
    if (end + 1 < total) {
      session.fragments.push(fragment);
      session.received = end + 1;
      session.total = total;
      session.expiresAt = clock.now() + IDLE_MS;
      return sendJson(res, 202, status(session));
    }
    // The last fragment commits the file. Fragments off the 320 KiB grid fail the commit
    // ("errors committing some files"; OneDrive/onedrive-api-docs#70, #1640), and keep failing.
    if (session.fragments.some((f) => f.length % FRAGMENT_ALIGN !== 0)) {
      await rm(fragment.path, { force: true });
      throw new GraphError(500, "generalException", "General exception while processing");
    }
    sessions.delete(guid);
    const joined = join(session.dir, "item");
    for (const f of [...session.fragments, fragment])
      await pipeline(createReadStream(f.path), createWriteStream(joined, { flags: "a" }));
    await objects.putObject(session.key, joined);
    await rm(session.dir, { recursive: true, force: true });
    const now = new Date(clock.now()).toISOString();
    sendJson(res, 201, {
      id: session.itemId,
      name: session.key.slice(session.key.lastIndexOf("/") + 1),
      size: total,
      createdDateTime: now,
      lastModifiedDateTime: now,
      file: {},
    });
  }

  function sendJson(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    stats.bytesOut += Buffer.byteLength(text);
    res
      .writeHead(code, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(text),
      })
      .end(text);
  }

  return {
    async open(session) {
      const guid = randomUUID();
      const itemId = randomUUID().replace(/-/g, "").toUpperCase();
      session.object!.uploadId = guid;
      sessions.set(guid, {
        key: session.object!.key,
        itemId,
        dir: objects.partsDir(guid),
        fragments: [],
        received: 0,
        expiresAt: clock.now() + IDLE_MS,
      });
      const query = new URLSearchParams({ guid, dc: "0" });
      return {
        upload_urls: [
          `${objects.url}/_api/v2.0/drives/emulated/items/${itemId}/uploadSession?${query}`,
        ],
      };
    },

    // Cloudreve deletes the Graph session, and the stale entity's item if the upload went
    // through before the cancel (`[S] driver/onedrive` CancelToken, manager CancelUploadSession).
    async abort(session: UploadSession) {
      const guid = session.object?.uploadId ?? "";
      const graph = sessions.get(guid);
      if (graph) await drop(guid, graph);
      if (session.object) await objects.deleteObject(session.object.key);
    },

    operation(req, url) {
      if (!SESSION_PATH.test(url.pathname)) return undefined;
      if (req.method === "PUT") return "PUT part";
      if (req.method === "GET") return "GET upload session";
      if (req.method === "DELETE") return "DELETE upload session";
      return undefined;
    },

    async handle(req, res, url, operation) {
      try {
        if (operation === "PUT part") return await putFragment(req, res, url);
        const [guid, session] = await live(url);
        if (operation === "GET upload session") return sendJson(res, 200, status(session));
        await drop(guid, session);
        res.writeHead(204).end();
      } catch (err) {
        if (!(err instanceof GraphError) || res.headersSent) throw err;
        sendJson(res, err.status, {
          error: {
            code: err.code,
            message: err.message,
            ...(err.inner ? { innererror: { code: err.inner } } : {}),
          },
        });
      }
    },
  };
}
