import type { IncomingMessage } from "node:http";
import proxyaddr from "proxy-addr";

/** Who sent a request and which URL they used, as far as the gateway may believe. */
export interface RequestOrigin {
  /** The client's address: the socket's, or the one a trusted proxy forwarded for. */
  address: string;
  /** The authority the client addressed (Host, or a trusted proxy's X-Forwarded-Host). */
  host: string | undefined;
  /** The client's scheme (the socket's, or a trusted proxy's X-Forwarded-Proto). */
  proto: "http" | "https";
}

/**
 * Reads X-Forwarded-For, -Host and -Proto only when the request came through a trusted proxy
 * (`--trusted-proxy`); otherwise anyone could pick the address they are throttled and logged
 * under. With several proxies, the client is the nearest address no trusted proxy vouches for.
 */
export function originReader(trusted: readonly string[]): (req: IncomingMessage) => RequestOrigin {
  const trust = proxyaddr.compile([...trusted]);
  return (req) => {
    const socketAddress = req.socket.remoteAddress ?? "";
    const ownProto = "encrypted" in req.socket && req.socket.encrypted ? "https" : "http";
    const host = req.headers.host;
    if (trusted.length === 0 || !trust(socketAddress, 0)) {
      return { address: socketAddress, host, proto: ownProto };
    }
    const forwardedHost = first(req.headers["x-forwarded-host"]);
    const forwardedProto = first(req.headers["x-forwarded-proto"])?.toLowerCase();
    return {
      address: proxyaddr(req, trust),
      host: forwardedHost ?? host,
      proto: forwardedProto === "https" || forwardedProto === "http" ? forwardedProto : ownProto,
    };
  };
}

/** The first (client-facing) value of a header a chain of proxies may have appended to. */
function first(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  const head = text?.split(",")[0]?.trim();
  return head || undefined;
}
