import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { answerFault, type Faults } from "../control.js";
import { StorageError, xmlEscape, type ObjectStore } from "./objects.js";
import type { UploadProvider } from "./provider.js";

/**
 * The storage provider's own origin (another port than Cloudreve's): object reads from
 * presigned URLs, and the provider's upload requests. Each request is counted and may be
 * failed under its operation's name ("GET object", "HEAD object", or the provider's).
 */
export class StorageOrigin {
  constructor(
    private readonly objects: ObjectStore,
    private readonly provider: UploadProvider | undefined,
    private readonly faults: Faults,
  ) {}

  /** Set when reads are redirected: the origin that serves them (see `storageRedirect`). */
  readsAt: string | undefined;

  /** `serveReads` false: object reads answer 307 to `readsAt`, the other requests as usual. */
  async handle(req: IncomingMessage, res: ServerResponse, serveReads = true): Promise<void> {
    const url = new URL(req.url ?? "/", "http://storage");
    const method = req.method ?? "GET";
    const operation =
      this.provider?.operation(req, url) ??
      (method === "GET" ? "GET object" : method === "HEAD" ? "HEAD object" : undefined);
    const stats = this.objects.stats;
    if (operation) {
      stats.count(operation);
      if (await answerFault(req, res, this.faults.decide(operation, "storage"))) return;
    }
    try {
      if (!operation) throw new StorageError(405, "MethodNotAllowed", "Not supported here.");
      if (operation === "GET object" || operation === "HEAD object") {
        if (!serveReads && this.readsAt) {
          const location = `${this.readsAt}${url.pathname}${url.search}`;
          res.writeHead(307, { location, "content-length": 0 }).end();
          return;
        }
        return await this.objects.read(req, res, url);
      }
      return await this.provider!.handle(req, res, url, operation);
    } catch (err) {
      if (res.headersSent) return void res.destroy();
      if (!(err instanceof StorageError)) {
        process.stderr.write(`emulator storage: ${operation} failed: ${String(err)}\n`);
        res.writeHead(500, { "content-type": "text/plain" }).end("Internal Server Error");
        return;
      }
      sendXml(
        res,
        err.status,
        `<Error><Code>${err.code}</Code><Message>${xmlEscape(err.message)}</Message>` +
          `<RequestId>${randomBytes(8).toString("hex").toUpperCase()}</RequestId></Error>`,
        this.objects,
      );
    }
  }
}

/** An XML answer, counted in the storage's bytes out. */
export function sendXml(
  res: ServerResponse,
  status: number,
  xml: string,
  objects: ObjectStore,
): void {
  const text = `<?xml version="1.0" encoding="UTF-8"?>\n${xml}`;
  objects.stats.bytesOut += Buffer.byteLength(text);
  res
    .writeHead(status, {
      "content-type": "application/xml",
      "content-length": Buffer.byteLength(text),
    })
    .end(text);
}
