/**
 * A raw HTTP client for WebDAV tests: the path goes on the wire exactly as given (no URL
 * normalisation, so `%2e%2e%2f` and `%00` reach the server untouched), any method and header,
 * and bodies sent with a length, chunked, or after `Expect: 100-continue`.
 */
import { request } from "node:http";

export interface RawReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  /** The server sent `100 Continue` before the final answer. */
  continued: boolean;
}

export interface RawOptions {
  headers?: Record<string, string | number>;
  body?: string | Buffer;
  /** Send the body as several chunks without Content-Length (Transfer-Encoding: chunked). */
  chunked?: boolean;
  /** Wait for `100 Continue` before sending the body (sets the Expect header). */
  expectContinue?: boolean;
  /** Basic credentials. */
  auth?: { user: string; password: string };
}

/** Sends one request to `base` (e.g. http://127.0.0.1:1234) with `path` written verbatim. */
export function raw(
  base: string,
  method: string,
  path: string,
  options: RawOptions = {},
): Promise<RawReply> {
  const url = new URL(base);
  const body =
    options.body === undefined
      ? undefined
      : Buffer.isBuffer(options.body)
        ? options.body
        : Buffer.from(options.body);
  const headers: Record<string, string | number> = { ...options.headers };
  if (body !== undefined && !options.chunked && !hasHeader(headers, "content-length")) {
    headers["content-length"] = body.length;
  }
  if (options.chunked) headers["transfer-encoding"] = "chunked";
  if (options.expectContinue) headers["expect"] = "100-continue";
  if (options.auth) {
    const token = Buffer.from(`${options.auth.user}:${options.auth.password}`).toString("base64");
    headers["authorization"] = `Basic ${token}`;
  }
  return new Promise((resolve, reject) => {
    let continued = false;
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const all = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: all,
            text: all.toString("utf8"),
            continued,
          });
        });
      },
    );
    req.on("error", reject);
    const send = () => {
      if (body === undefined) return req.end();
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

function hasHeader(headers: Record<string, unknown>, name: string): boolean {
  return Object.keys(headers).some((k) => k.toLowerCase() === name);
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
