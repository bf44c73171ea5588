/**
 * The raw HTTP client of the tests: the path goes on the wire exactly as given (no URL
 * normalisation, so `%2e%2e%2f` and `%00` reach the server untouched), any method and header,
 * and bodies sent with a length, chunked, piece by piece, streamed, or after
 * `Expect: 100-continue`. Each request has a connection of its own.
 */
import {
  request,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from "node:http";
import { pipeline } from "node:stream/promises";

export interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The body as UTF-8, decoded when asked for (media bodies are tens of MB). */
  readonly text: string;
  /** The server sent `100 Continue` before the final answer. */
  continued: boolean;
}

/** A reply whose body is still on the wire: read it, or drop the connection through `req`. */
export interface RawOpen {
  req: ClientRequest;
  res: IncomingMessage;
  /** The server sent `100 Continue` before the final answer. */
  continued: boolean;
}

export interface RawOptions {
  /** Sent as given, plus Host; Content-Length or Transfer-Encoding only when neither is given. */
  headers?: Record<string, string | number>;
  /**
   * One piece (gets a Content-Length unless `chunked`), or pieces written one write each as a
   * streaming client does (chunked unless a Content-Length is given).
   */
  body?: string | Buffer | Iterable<Buffer> | AsyncIterable<Buffer>;
  /** Send a one-piece body as several chunks without Content-Length (Transfer-Encoding: chunked). */
  chunked?: boolean;
  /** Wait for `100 Continue` before sending the body (sets the Expect header). */
  expectContinue?: boolean;
  /** Basic credentials. */
  auth?: { user: string; password: string };
}

/**
 * Sends one request to `base` (e.g. http://127.0.0.1:1234) with `path` written verbatim and
 * resolves once the reply's head has arrived, its body unread.
 */
export function open(
  base: string,
  method: string,
  path: string,
  options: RawOptions = {},
): Promise<RawOpen> {
  const url = new URL(base);
  const body = typeof options.body === "string" ? Buffer.from(options.body) : options.body;
  const pieces = body !== undefined && !Buffer.isBuffer(body);
  const headers: Record<string, string | number> = { ...options.headers };
  const framed = Object.keys(headers).some((k) =>
    ["content-length", "transfer-encoding"].includes(k.toLowerCase()),
  );
  if (!framed && (options.chunked || pieces)) headers["transfer-encoding"] = "chunked";
  else if (!framed && Buffer.isBuffer(body)) headers["content-length"] = body.length;
  if (options.expectContinue) headers["expect"] = "100-continue";
  if (options.auth) {
    const token = Buffer.from(`${options.auth.user}:${options.auth.password}`).toString("base64");
    headers["authorization"] = `Basic ${token}`;
  }
  return new Promise((resolve, reject) => {
    let continued = false;
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers, agent: false },
      (res) => resolve({ req, res, continued }),
    );
    req.on("error", reject);
    const send = () => {
      if (body === undefined) return req.end();
      if (pieces) return void pipeline(body, req).catch(reject);
      if (options.chunked) {
        // Several writes so that the body really travels as chunks.
        const step = Math.max(1, Math.ceil(body.length / 3));
        for (let i = 0; i < body.length; i += step) req.write(body.subarray(i, i + step));
        return req.end();
      }
      req.end(body);
    };
    if (options.expectContinue) {
      req.on("continue", () => {
        continued = true;
        send();
      });
      req.flushHeaders();
    } else {
      send();
    }
  });
}

/** Sends one request like {@link open} and reads the whole reply. */
export async function raw(
  base: string,
  method: string,
  path: string,
  options: RawOptions = {},
): Promise<RawReply> {
  const { res, continued } = await open(base, method, path, options);
  const parts: Buffer[] = [];
  for await (const chunk of res as AsyncIterable<Buffer>) parts.push(chunk);
  const body = Buffer.concat(parts);
  return {
    status: res.statusCode ?? 0,
    headers: res.headers,
    body,
    get text() {
      return body.toString("utf8");
    },
    continued,
  };
}

/** `/a b/c#d` → `/a%20b/c%23d`: each segment encoded, slashes kept. */
export function enc(path: string): string {
  return path
    .split("/")
    .map((s) => encodeURIComponent(s))
    .join("/");
}

const unescapeXml = (s: string) =>
  s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&");

/** The `<D:href>` values of a multistatus body, in order, XML-unescaped. */
export function hrefs(xml: string): string[] {
  return [...xml.matchAll(/<D:href>([^<]*)<\/D:href>/g)].map((m) => unescapeXml(m[1]!));
}

/** The `<D:response>` element of a multistatus body whose href is `href`. */
export function responseFor(xml: string, href: string): string | undefined {
  return xml
    .split("<D:response>")
    .slice(1)
    .find((r) => unescapeXml(/^<D:href>([^<]*)<\/D:href>/.exec(r)?.[1] ?? "") === href);
}

/** Total upstream calls in a stats snapshot. */
export function totalCalls(stats: { requests: Record<string, number> }): number {
  return Object.values(stats.requests).reduce((a, b) => a + b, 0);
}

export const PROPFIND_ALL = `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`;

export function propfindBody(...props: string[]): string {
  return `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>${props.join("")}</D:prop></D:propfind>`;
}

export const LOCK_EXCLUSIVE = `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tester</D:owner></D:lockinfo>`;
export const LOCK_SHARED = `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tester</D:owner></D:lockinfo>`;
