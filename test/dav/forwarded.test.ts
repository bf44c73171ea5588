/** originReader: X-Forwarded-* believed only from trusted proxies. */
import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { originReader } from "../../src/dav/forwarded.js";

function request(
  socketAddress: string,
  headers: Record<string, string>,
  encrypted = false,
): IncomingMessage {
  const socket = { remoteAddress: socketAddress, ...(encrypted ? { encrypted: true } : {}) };
  return { socket, connection: socket, headers } as unknown as IncomingMessage;
}

const forwarded = {
  host: "127.0.0.1:8080",
  "x-forwarded-for": "203.0.113.5",
  "x-forwarded-host": "dav.example.com",
  "x-forwarded-proto": "https",
};

describe("originReader", () => {
  it("without trusted proxies, ignores every X-Forwarded header", () => {
    const origin = originReader([])(request("127.0.0.1", forwarded));
    expect(origin).toEqual({ address: "127.0.0.1", host: "127.0.0.1:8080", proto: "http" });
  });

  it("believes a trusted proxy", () => {
    const origin = originReader(["127.0.0.1"])(request("127.0.0.1", forwarded));
    expect(origin).toEqual({ address: "203.0.113.5", host: "dav.example.com", proto: "https" });
  });

  it("does not believe a peer outside the trusted ranges", () => {
    const origin = originReader(["10.0.0.0/8"])(request("192.0.2.7", forwarded));
    expect(origin).toEqual({ address: "192.0.2.7", host: "127.0.0.1:8080", proto: "http" });
  });

  it("through a chain, the client is the nearest address no trusted proxy vouches for", () => {
    const read = originReader(["loopback", "10.0.0.0/8"]);
    const chain = { ...forwarded, "x-forwarded-for": "198.51.100.1, 203.0.113.9, 10.1.2.3" };
    expect(read(request("127.0.0.1", chain)).address).toBe("203.0.113.9");
  });

  it("takes the client-facing host of a list, and only http or https as the scheme", () => {
    const read = originReader(["loopback"]);
    const odd = {
      ...forwarded,
      "x-forwarded-host": "a.example, b.internal",
      "x-forwarded-proto": "gopher",
    };
    expect(read(request("::1", odd))).toMatchObject({ host: "a.example", proto: "http" });
    expect(read(request("::1", odd, true)).proto).toBe("https");
  });
});
