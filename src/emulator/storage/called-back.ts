import type { IncomingMessage, ServerResponse } from "node:http";
import { StorageError, quoted, type ObjectStore } from "./objects.js";
import type { StorageContext, UploadProvider } from "./provider.js";
import { Multipart, multipartOperation, receive, type MultipartUpload, type Part } from "./s3.js";

/** OSS gives Cloudreve 5 s to answer a callback ("Cost too long time"); OBS is taken alike. */
const CALLBACK_TIMEOUT_MS = 5000;

/** How one store that calls Cloudreve back after a multipart completion differs from another. */
export interface CalledBackStore {
  /** The completion URL's query parameter carrying the base64 JSON callback policy. */
  callbackParam: string;
  /** The policy's fields besides `callbackUrl`: the body template, its type, … */
  callbackPolicy: { callbackBody: string; callbackBodyType: string } & Record<string, unknown>;
  /** Headers the part and completion URLs are signed with: a request must send them as is. */
  partHeaders: Record<string, string>;
  completeHeaders: Record<string, string>;
  /** Every part but the last must be at least this big. */
  minPartSize: number;
  /** The callback body's variables for the object `key`, besides `size`. */
  variables(key: string): Record<string, string>;
  /** The parts a completion joins: listed in its body, or every uploaded one. */
  parts(multipart: Multipart, upload: MultipartUpload, body: string): Part[];
  /** The answer when the object is stored but Cloudreve's callback failed: 203, the reason. */
  callbackFailed(res: ServerResponse, message: string, objects: ObjectStore): void;
}

interface CallbackPolicy {
  callbackUrl: string;
  callbackBody: string;
  callbackBodyType?: string;
}

const signatureMismatch = () =>
  new StorageError(
    403,
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided.",
  );

/**
 * Fills a callback body template: `${var}` standing as a JSON value becomes its JSON (a string
 * quoted, a number bare), inside a JSON string its text; an unknown variable is empty.
 */
function fillTemplate(template: string, vars: Record<string, string | number>): string {
  const value = (name: string) => vars[name] ?? "";
  return template.replace(/"(?:[^"\\]|\\.)*"|\$\{([^}]+)\}/g, (match, bare?: string) =>
    bare !== undefined
      ? JSON.stringify(value(bare))
      : match.replace(/\$\{([^}]+)\}/g, (_all, name: string) =>
          JSON.stringify(String(value(name))).slice(1, -1),
        ),
  );
}

/** A JSON answer, counted in the storage's bytes out. */
export function sendJson(
  res: ServerResponse,
  status: number,
  text: string,
  objects: ObjectStore,
  headers: Record<string, string> = {},
): void {
  objects.stats.bytesOut += Buffer.byteLength(text);
  res
    .writeHead(status, {
      ...headers,
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
    })
    .end(text);
}

/** The store's POST to Cloudreve: its JSON answer, or why the callback failed. */
async function callBack(
  policy: CallbackPolicy,
  body: string,
): Promise<{ ok: true; text: string } | { ok: false; message: string }> {
  let status: number;
  let text: string;
  try {
    const res = await fetch(policy.callbackUrl, {
      method: "POST",
      headers: { "content-type": policy.callbackBodyType ?? "application/json" },
      body,
      signal: AbortSignal.timeout(CALLBACK_TIMEOUT_MS),
    });
    status = res.status;
    text = await res.text();
  } catch {
    return { ok: false, message: "Error status : -1." };
  }
  if (status !== 200) return { ok: false, message: `Error status : ${status}.` };
  try {
    JSON.parse(text);
  } catch {
    return { ok: false, message: "Response body is not valid json format." };
  }
  return { ok: true, text };
}

/**
 * A multipart store that calls Cloudreve back itself (OSS, OBS: `[S] driver/oss/oss.go` and
 * `driver/obs/obs.go` Token): the session presigns the part PUTs and a completion POST whose
 * query carries the callback policy (its URL, a body template). Once the completion has stored
 * the object, the store POSTs the filled body to Cloudreve and answers the client with
 * Cloudreve's JSON (200), or with 203 when the callback failed: the object is stored, the
 * upload id gone, and the upload not complete in Cloudreve.
 */
export function calledBackProvider(ctx: StorageContext, store: CalledBackStore): UploadProvider {
  const { objects } = ctx;
  const multipart = new Multipart(objects, store.minPartSize);

  const checkSigned = (req: IncomingMessage, headers: Record<string, string>) => {
    for (const [name, value] of Object.entries(headers))
      if (req.headers[name] !== value) throw signatureMismatch();
  };

  async function complete(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const body = await receive(req, objects.stats);
    const upload = multipart.named(url);
    const parts = store.parts(multipart, upload, body);
    const policy = JSON.parse(
      Buffer.from(url.searchParams.get(store.callbackParam) ?? "", "base64").toString("utf8"),
    ) as CallbackPolicy;
    const etag = await multipart.complete(upload, parts);
    const size = parts.reduce((sum, part) => sum + part.size, 0);
    const outcome = await callBack(
      policy,
      fillTemplate(policy.callbackBody, { ...store.variables(upload.key), size }),
    );
    if (!outcome.ok) return store.callbackFailed(res, outcome.message, objects);
    sendJson(res, 200, outcome.text, objects, { etag: quoted(etag) });
  }

  return {
    open: async (session, expires) => {
      const policy = { callbackUrl: ctx.callbackUrl(session), ...store.callbackPolicy };
      return multipart.open(session, expires, {
        [store.callbackParam]: Buffer.from(JSON.stringify(policy)).toString("base64"),
      });
    },

    async abort(session) {
      await multipart.abort(session);
      // A completion whose callback failed left the object stored: it goes with the session.
      if (session.object) await objects.deleteObject(session.object.key);
    },

    operation: multipartOperation,

    async handle(req, res, url, operation) {
      objects.authenticate(req.method ?? "", url.pathname, url.searchParams);
      if (operation === "PUT part") {
        checkSigned(req, store.partHeaders);
        return multipart.putPart(req, res, url);
      }
      checkSigned(req, store.completeHeaders);
      return complete(req, res, url);
    },
  };
}
