import type { IncomingMessage, ServerResponse } from "node:http";
import { within } from "./accounts.js";
import {
  CredentialInvalid,
  GatewayError,
  LoginRejected,
  UpstreamError,
  UpstreamTimeout,
} from "./errors.js";

/** A readiness answer is reused this long: probes every second must not each call Cloudreve. */
const READY_CACHE_MS = 5_000;
/** A probe is answered within this even when Cloudreve hangs: probe timeouts are short. */
const READY_WAIT_MS = 2_000;

/**
 * Why Cloudreve cannot be used, in a few words: the probes answer anyone, so no address or
 * message of the upstream's goes out (the request and start-up logs have those).
 */
function reasonOf(err: unknown): string {
  if (err instanceof CredentialInvalid || err instanceof LoginRejected)
    return "Cloudreve refused the gateway's credentials";
  if (err instanceof UpstreamTimeout) return "Cloudreve did not answer in time";
  if (err instanceof GatewayError && err.httpStatus !== undefined)
    return `Cloudreve answered HTTP ${err.httpStatus}`;
  if (err instanceof UpstreamError) return "Cloudreve is unreachable";
  return "Cloudreve cannot be used";
}

function reply(req: IncomingMessage, res: ServerResponse, status: number, text: string): void {
  res
    .writeHead(status, {
      "content-type": "text/plain; charset=utf-8",
      "content-length": Buffer.byteLength(text),
      "cache-control": "no-store",
    })
    .end(req.method === "HEAD" ? undefined : text);
}

/**
 * Liveness and readiness probes, answered before WebDAV and without sign-in: a GET or HEAD of
 * exactly `/healthz` or `/readyz` at the server's root, whatever the base URL. Every other
 * request is WebDAV's, so a file named `healthz` or `readyz` in the served root (with no base
 * URL) cannot be read with GET, while PROPFIND, MOVE, DELETE and the rest still reach it.
 */
export class Probes {
  private last: { at: number; problem: Promise<string | undefined> } | undefined;

  constructor(
    /** Resolves when Cloudreve answers (and the gateway's own account is signed in). */
    private readonly check: () => Promise<unknown>,
    private readonly stopping: () => boolean,
  ) {}

  /** Answers `req` when it is a probe: true; false when it is WebDAV's. */
  answer(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const path = (req.url ?? "").split("?")[0];
    if (path === "/healthz") {
      reply(req, res, 200, "ok");
      return true;
    }
    if (path !== "/readyz") return false;
    void this.problem().then((problem) => reply(req, res, problem ? 503 : 200, problem ?? "ok"));
    return true;
  }

  /** Why the gateway cannot serve now, or undefined when it can. */
  private async problem(): Promise<string | undefined> {
    if (this.stopping()) return "stopping";
    const now = Date.now();
    if (!this.last || now - this.last.at >= READY_CACHE_MS) {
      const problem = this.check().then(() => undefined, reasonOf);
      this.last = { at: now, problem };
    }
    const { problem } = this.last;
    return (await within(problem, READY_WAIT_MS)) ? problem : "Cloudreve did not answer in time";
  }
}
