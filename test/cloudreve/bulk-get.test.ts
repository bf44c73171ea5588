/**
 * bulkGet (src/cloudreve/bulk-get.ts) against real sockets: node:http / node:https servers
 * where the reply is ordinary, raw node:net servers where the bytes on the wire matter. The
 * lending tests hold write callbacks and re-check each chunk when releasing it, so a pool
 * buffer reused too early shows up as changed bytes.
 */
import { createCipheriv, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import {
  createServer as createNetServer,
  type AddressInfo,
  type Server,
  type Socket,
} from "node:net";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { Agent } from "undici";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { CloudreveApi } from "../../src/cloudreve/api.js";
import { bulkGet, parseHead, UnsupportedReply } from "../../src/cloudreve/bulk-get.js";
import { Downloader } from "../../src/cloudreve/download.js";
import { DEFAULT_TIMEOUTS } from "../../src/cloudreve/transport.js";
import { UpstreamError } from "../../src/errors.js";
import { until } from "../helpers/wait.js";

const MiB = 1024 * 1024;
const POOL_BUFFER_BYTES = 256 * 1024;
const BUFFERS_PER_GET = 8;
/** What one download may lend at once: its pool buffers, and a little room for the TLS
 * records that arrive after it pauses (one-off 64 KiB buffers). */
const LENT_BYTES_BOUND = BUFFERS_PER_GET * POOL_BUFFER_BYTES + 4 * 64 * 1024;

/**
 * Deterministic bytes without a short period (an AES-CTR keystream): with a 256-byte pattern,
 * a buffer refilled at another offset could hold the very same bytes and hide a reuse.
 */
function pattern(size: number): Buffer {
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16, 3));
  return cipher.update(Buffer.alloc(size));
}
const BODY = pattern(64 * MiB);

function sha256(buf: Buffer): string {
  return createHash("sha256").update(buf).digest("hex");
}

/** Bounds waits on a local socket; never asserted as a duration. */
const WAIT_MS = 5_000;

/** Length, then the first differing offset (-1 when none): a failure says where. */
function expectBytes(got: Buffer, want: Buffer): void {
  expect(got.length).toBe(want.length);
  let diff = -1;
  if (!got.equals(want)) for (diff = 0; got[diff] === want[diff]; diff++);
  expect(diff).toBe(-1);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves on `event`; unlike events.once, an 'error' before it does not reject. */
function when(emitter: NodeJS.EventEmitter, event: string): Promise<void> {
  return new Promise((resolve) => emitter.once(event, () => resolve()));
}

// ---- servers, all closed after each test ----

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((close) => close()));
});

async function listen(server: Server): Promise<number> {
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** One request as an http(s) server saw it. */
interface Seen {
  req: IncomingMessage;
  res: ServerResponse;
  /** The request's end was read (a GET without a body is complete at once). */
  complete: Promise<void>;
  /** The client has half-closed the connection (sent its FIN) by now. */
  halfClosed: () => boolean;
  closed: Promise<void>;
}

async function httpServer(
  reply: (req: IncomingMessage, res: ServerResponse, seen: Seen) => void,
  tls?: { key: Buffer; cert: Buffer },
) {
  const seen: Seen[] = [];
  const server: HttpServer = tls ? createHttpsServer(tls) : createHttpServer();
  // Watched from the connection's start: a FIN may come before the request is parsed.
  const halfClosed = new WeakSet<Socket>();
  server.on(tls ? "secureConnection" : "connection", (s: Socket) =>
    s.once("end", () => halfClosed.add(s)),
  );
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const one: Seen = {
      req,
      res,
      complete: when(req, "end"),
      halfClosed: () => halfClosed.has(req.socket),
      closed: req.socket.destroyed ? Promise.resolve() : when(req.socket, "close"),
    };
    seen.push(one);
    req.resume();
    reply(req, res, one);
  });
  const port = await listen(server);
  const scheme = tls ? "https" : "http";
  return { seen, url: (path = "/") => new URL(`${scheme}://127.0.0.1:${port}${path}`), port };
}

/** A connection to a raw server, once the request head has arrived. */
interface RawConn {
  socket: Socket;
  request: string;
  closed: Promise<void>;
}

async function rawServer(reply: (conn: RawConn) => void | Promise<void>) {
  const conns: RawConn[] = [];
  let connections = 0;
  const server = createNetServer((socket) => {
    connections++;
    socket.on("error", () => {});
    socket.setNoDelay(true);
    const closed = when(socket, "close");
    let buf = Buffer.alloc(0);
    const onData = (data: Buffer) => {
      buf = Buffer.concat([buf, data]);
      if (buf.indexOf("\r\n\r\n") < 0) return;
      socket.off("data", onData);
      const conn = { socket, request: buf.toString("latin1"), closed };
      conns.push(conn);
      void Promise.resolve(reply(conn)).catch(() => socket.destroy());
    };
    socket.on("data", onData);
  });
  const port = await listen(server);
  return {
    conns,
    connections: () => connections,
    url: (path = "/") => new URL(`http://127.0.0.1:${port}${path}`),
    port,
  };
}

/** Writes `bytes` in `piece`-byte writes, a timer tick apart so they reach the client apart. */
async function trickle(socket: Socket, bytes: Buffer, piece: number): Promise<void> {
  for (let i = 0; i < bytes.length && !socket.destroyed; i += piece) {
    socket.write(bytes.subarray(i, i + piece));
    await sleep(1);
  }
}

/**
 * A raw server sending all of BODY with Content-Length, 64 KiB at a time as the socket drains;
 * `sent()` resolves, once the connection is gone, to how much it got to write.
 */
async function pumpingServer() {
  const sent: Promise<number>[] = [];
  const srv = await rawServer(({ socket, closed }) => {
    sent.push(
      (async () => {
        let n = 0;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${BODY.length}\r\n\r\n`);
        while (n < BODY.length && !socket.destroyed) {
          const more = socket.write(BODY.subarray(n, n + 64 * 1024));
          n = Math.min(n + 64 * 1024, BODY.length);
          if (!more) await Promise.race([when(socket, "drain"), closed]);
        }
        await closed;
        return n;
      })(),
    );
  });
  return { ...srv, sent: () => sent[0]! };
}

// ---- destinations ----

/** Copies every chunk (they are lent) and calls back at once. */
function collector() {
  const chunks: Buffer[] = [];
  let finished = false;
  const dest = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  dest.once("finish", () => (finished = true));
  return { dest, bytes: () => Buffer.concat(chunks), finished: () => finished };
}

type WriteCallback = (err?: Error | null) => void;

/**
 * Holds every write's callback for a while, and checks each chunk against `expected` at its
 * offset only when releasing it: bytes changed in between mean the lender reused the buffer
 * early. Counts callbacks and bytes outstanding across `dest.write` calls (the bytes are the
 * per-download memory bound).
 */
function heldSink(expected: Buffer) {
  let verified = 0;
  let mismatches = 0;
  let outstanding = 0;
  let maxOutstanding = 0;
  let lentBytes = 0;
  let maxLentBytes = 0;
  let writes = 0;
  let releases = 0;
  const poolBuffers = new Set<ArrayBufferLike>();
  const hold = (chunks: Buffer[], done: WriteCallback) => {
    const release = () => {
      for (const chunk of chunks) {
        const want = expected.subarray(verified, verified + chunk.length);
        if (!chunk.equals(want)) mismatches++;
        verified += chunk.length;
      }
      done();
    };
    // Mostly the next turn of the loop; every 16th a timer, long enough for reads to pile up.
    if (++releases % 16 === 0) setTimeout(release, 2);
    else setImmediate(release);
  };
  const dest = new Writable({
    write: (chunk: Buffer, _encoding, done) => hold([chunk], done),
    writev: (chunks, done) =>
      hold(
        chunks.map((c) => c.chunk as Buffer),
        done,
      ),
  });
  const write = dest.write.bind(dest) as (chunk: Buffer, done?: WriteCallback) => boolean;
  dest.write = ((chunk: Buffer, done?: WriteCallback) => {
    writes++;
    maxOutstanding = Math.max(maxOutstanding, ++outstanding);
    maxLentBytes = Math.max(maxLentBytes, (lentBytes += chunk.length));
    if (chunk.buffer.byteLength === POOL_BUFFER_BYTES) poolBuffers.add(chunk.buffer);
    return write(chunk, (err) => {
      outstanding--;
      lentBytes -= chunk.length;
      done?.(err);
    });
  }) as unknown as Writable["write"];
  return {
    dest,
    stats: () => ({
      verified,
      mismatches,
      outstanding,
      maxOutstanding,
      maxLentBytes,
      writes,
      poolBuffers,
    }),
  };
}

/** Counts bytes and calls `at` once, when `threshold` bytes have been written. */
function countingSink(threshold: number, at: (dest: Writable) => void) {
  let bytes = 0;
  let fired = false;
  let finished = false;
  const dest = new Writable({
    write(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      done();
      if (!fired && bytes >= threshold) {
        fired = true;
        at(dest);
      }
    },
  });
  dest.once("finish", () => (finished = true));
  return { dest, bytes: () => bytes, finished: () => finished };
}

// ---- the tests ----

describe("bulkGet: bodies framed by Content-Length", () => {
  it("pipes a 20 MiB body byte for byte; the request is GET, HTTP/1.1, with Range and connection: close", async () => {
    const size = 20 * MiB;
    let halfClosedBeforeReply: boolean | undefined;
    const srv = await httpServer((_req, res, seen) => {
      // A moment for a FIN, had the client half-closed after its request, to arrive first.
      setTimeout(() => {
        halfClosedBeforeReply = seen.halfClosed();
        res.writeHead(206, {
          "content-length": size,
          "content-range": `bytes 0-${size - 1}/${BODY.length}`,
        });
        res.end(BODY.subarray(0, size));
      }, 20);
    });
    const res = await bulkGet(srv.url("/content/a%20b?sign=x%3Ay&n=1"), {
      range: `bytes=0-${size - 1}`,
      "x-extra": "kept",
    });
    expect(res.statusCode).toBe(206);
    expect(res.headers["content-length"]).toBe(String(size));
    expect(res.headers["content-range"]).toBe(`bytes 0-${size - 1}/${BODY.length}`);
    const sink = collector();
    await res.pipeTo(sink.dest);
    expect(sink.finished()).toBe(true);
    const got = sink.bytes();
    expect(got.length).toBe(size);
    expect(sha256(got)).toBe(sha256(BODY.subarray(0, size)));

    expect(srv.seen).toHaveLength(1);
    const [seen] = srv.seen;
    const { req } = seen!;
    expect(req.method).toBe("GET");
    expect(req.url).toBe("/content/a%20b?sign=x%3Ay&n=1");
    expect(req.httpVersion).toBe("1.1");
    expect(req.headers.host).toBe(`127.0.0.1:${srv.port}`);
    expect(req.headers.range).toBe(`bytes=0-${size - 1}`);
    expect(req.headers["x-extra"]).toBe("kept");
    expect(req.headers.connection).toBe("close");
    expect(req.headers["content-length"]).toBeUndefined();
    expect(req.headers["transfer-encoding"]).toBeUndefined();
    // The request was whole, and the client did not half-close while the reply was going out.
    await seen!.complete;
    expect(req.complete).toBe(true);
    expect(halfClosedBeforeReply).toBe(false);
    await seen!.closed;
  });

  it("a caller's connection header cannot keep the connection open", async () => {
    const srv = await httpServer((_req, res) => res.end("ok"));
    const res = await bulkGet(srv.url(), { connection: "keep-alive" });
    expect((await res.readAll()).toString()).toBe("ok");
    expect(srv.seen[0]!.req.headers.connection).toBe("close");
    expect(srv.seen[0]!.req.rawHeaders.filter((h) => /^connection$/i.test(h))).toHaveLength(1);
  });

  it("an empty body (Content-Length: 0) ends the destination with nothing written", async () => {
    const srv = await httpServer((_req, res) => {
      res.writeHead(200, { "content-length": 0, etag: '"e"' });
      res.end();
    });
    const res = await bulkGet(srv.url(), {});
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).toBe('"e"');
    const sink = collector();
    await res.pipeTo(sink.dest);
    expect(sink.finished()).toBe(true);
    expect(sink.bytes().length).toBe(0);
  });

  it("bytes past Content-Length are not delivered", async () => {
    const srv = await rawServer(({ socket }) => {
      socket.end(
        Buffer.concat([
          Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
          BODY.subarray(0, 1500),
        ]),
      );
    });
    const res = await bulkGet(srv.url(), {});
    expectBytes(await res.readAll(), BODY.subarray(0, 1000));
  });
});

describe("bulkGet: lending under backpressure", () => {
  it.each([
    ["a 64 MiB body", 64 * MiB],
    ["a 3 MiB body", 3 * MiB],
  ])(
    "%s: every chunk is intact when its callback runs; at most 8 pool buffers' worth lent",
    async (_name, size) => {
      const srv = await httpServer((_req, res) => {
        res.writeHead(200, { "content-length": size });
        res.end(BODY.subarray(0, size));
      });
      const res = await bulkGet(srv.url(), {});
      const sink = heldSink(BODY);
      await res.pipeTo(sink.dest);
      const s = sink.stats();
      expect(s.mismatches).toBe(0);
      expect(s.verified).toBe(size);
      expect(s.outstanding).toBe(0);
      expect(s.maxLentBytes).toBeLessThanOrEqual(LENT_BYTES_BOUND);
      // The holding did make the reader wait on the destination (not one chunk at a time).
      expect(s.maxOutstanding).toBeGreaterThan(1);
      // Reused buffers: many more chunks than the few pool buffers they came in.
      expect(s.poolBuffers.size).toBeLessThanOrEqual(BUFFERS_PER_GET);
      expect(s.writes).toBeGreaterThan(BUFFERS_PER_GET);
    },
  );

  it("two downloads at once, sharing the spare pool, each stay intact and bounded", async () => {
    const size = 24 * MiB;
    const srv = await httpServer((req, res) => {
      const from = Number(/bytes=(\d+)-/.exec(req.headers.range ?? "")?.[1] ?? 0);
      res.writeHead(206, { "content-length": size });
      res.end(BODY.subarray(from, from + size));
    });
    const offsets = [0, 24 * MiB + 13];
    const results = await Promise.all(
      offsets.map(async (from) => {
        const res = await bulkGet(srv.url(), { range: `bytes=${from}-${from + size - 1}` });
        const sink = heldSink(BODY.subarray(from));
        await res.pipeTo(sink.dest);
        return sink.stats();
      }),
    );
    for (const s of results) {
      expect(s.mismatches).toBe(0);
      expect(s.verified).toBe(size);
      expect(s.maxLentBytes).toBeLessThanOrEqual(LENT_BYTES_BOUND);
    }
  });
});

describe("bulkGet: bytes on the wire", () => {
  const head = (length: number) =>
    Buffer.from(
      `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n` +
        `Content-Length: ${length}\r\nETag: "v1"\r\n\r\n`,
    );

  it("a head split into single bytes; the request is exactly one head and no body", async () => {
    const size = 700_000;
    const srv = await rawServer(async ({ socket }) => {
      await trickle(socket, head(size), 1);
      await trickle(socket, BODY.subarray(0, size), 100_003);
    });
    const res = await bulkGet(srv.url("/f?x=1"), { range: "bytes=0-" });
    expect(res.statusCode).toBe(200);
    expect(res.headers).toEqual({
      "content-type": "application/octet-stream",
      "content-length": String(size),
      etag: '"v1"',
    });
    const sink = collector();
    await res.pipeTo(sink.dest);
    expectBytes(sink.bytes(), BODY.subarray(0, size));
    const request = srv.conns[0]!.request;
    expect(request.endsWith("\r\n\r\n")).toBe(true);
    expect(request.indexOf("\r\n\r\n")).toBe(request.length - 4);
    const [line, ...fields] = request.slice(0, -4).split("\r\n");
    expect(line).toBe("GET /f?x=1 HTTP/1.1");
    expect(fields.map((f) => f.toLowerCase()).sort()).toEqual(
      [`host: 127.0.0.1:${srv.port}`, "range: bytes=0-", "connection: close"].sort(),
    );
    await srv.conns[0]!.closed;
  });

  it("the head and the first body bytes in one write, the rest later", async () => {
    const size = 1_000_000;
    const srv = await rawServer(async ({ socket }) => {
      socket.write(Buffer.concat([head(size), BODY.subarray(0, 777)]));
      await sleep(5);
      await trickle(socket, BODY.subarray(777, size), 65_537);
    });
    // bulkGet resolves on the read that holds the head and stops reading there: the body bytes
    // in that read wait as early bytes.
    const res = await bulkGet(srv.url(), {});
    const sink = collector();
    await res.pipeTo(sink.dest);
    expectBytes(sink.bytes(), BODY.subarray(0, size));
  });

  it("the head and the whole body in one write", async () => {
    const size = 5000;
    const srv = await rawServer(({ socket }) => {
      socket.write(Buffer.concat([head(size), BODY.subarray(0, size)]));
    });
    const res = await bulkGet(srv.url(), {});
    // The whole body came with the head: the client is done with the connection before the
    // body is asked for.
    await srv.conns[0]!.closed;
    const sink = collector();
    await res.pipeTo(sink.dest);
    expectBytes(sink.bytes(), BODY.subarray(0, size));
  });

  it.each([
    ["in its own write", false],
    ["in one write with the real head", true],
  ])("an interim 100 Continue %s is skipped", async (_name, together) => {
    const size = 300_000;
    const interim = Buffer.from("HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n");
    const srv = await rawServer(async ({ socket }) => {
      if (together) socket.write(Buffer.concat([interim, head(size)]));
      else {
        socket.write(interim);
        await sleep(5);
        socket.write(head(size));
      }
      socket.write(BODY.subarray(0, size));
    });
    const res = await bulkGet(srv.url(), {});
    expect(res.statusCode).toBe(200);
    expect(res.headers["x-interim"]).toBeUndefined();
    expect(res.headers.etag).toBe('"v1"');
    const sink = collector();
    await res.pipeTo(sink.dest);
    expectBytes(sink.bytes(), BODY.subarray(0, size));
  });

  it("without Content-Length the body runs to the close", async () => {
    const size = 3 * MiB + 5;
    const srv = await rawServer(async ({ socket }) => {
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n");
      await trickle(socket, BODY.subarray(0, size), 512 * 1024);
      socket.end();
    });
    const res = await bulkGet(srv.url(), {});
    expect(res.headers["content-length"]).toBeUndefined();
    const sink = heldSink(BODY);
    await res.pipeTo(sink.dest);
    expect(sink.stats().verified).toBe(size);
    expect(sink.stats().mismatches).toBe(0);
  });

  it("an upstream closing before the body is complete rejects pipeTo; the destination is not ended", async () => {
    const size = 2 * MiB;
    const missing = 12_345;
    const srv = await rawServer(async ({ socket }) => {
      socket.write(head(size));
      await trickle(socket, BODY.subarray(0, size - missing), 256 * 1024);
      socket.end();
    });
    const res = await bulkGet(srv.url(), {});
    const sink = collector();
    const err = await res.pipeTo(sink.dest).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toBe(`download: the upstream closed ${missing} bytes early`);
    expect(sink.finished()).toBe(false);
    expect(sink.dest.writableEnded).toBe(false);
    // What did arrive was delivered as it was.
    expectBytes(sink.bytes(), BODY.subarray(0, size - missing));
  });

  it("an early close noticed before the body is read still rejects pipeTo", async () => {
    const srv = await rawServer(({ socket }) => {
      socket.end(Buffer.concat([head(10_000), BODY.subarray(0, 4000)]));
    });
    const res = await bulkGet(srv.url(), {});
    // The close is on the wire (the server's end flushed) before the body is asked for.
    await until("the server's end", () => srv.conns[0]!.socket.writableFinished, WAIT_MS);
    const sink = collector();
    await expect(res.pipeTo(sink.dest)).rejects.toThrow(
      "download: the upstream closed 6000 bytes early",
    );
    expect(sink.finished()).toBe(false);
  });

  it("a close before any reply rejects bulkGet with UpstreamError", async () => {
    const srv = await rawServer(({ socket }) => {
      socket.end("HTTP/1.1 200 OK\r\nContent-Le");
    });
    const err = await bulkGet(srv.url(), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toBe("download: the upstream closed before replying");
  });

  it("a reply that is not HTTP/1.x rejects bulkGet", async () => {
    const srv = await rawServer(({ socket }) => {
      socket.end("SSH-2.0-OpenSSH\r\n\r\n");
    });
    await expect(bulkGet(srv.url(), {})).rejects.toThrow(/not an HTTP\/1\.1 reply: SSH-2\.0/);
  });

  it("a bad Content-Length rejects bulkGet", async () => {
    const srv = await rawServer(({ socket }) => {
      socket.end("HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n");
    });
    const err = await bulkGet(srv.url(), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toBe("download: bad content-length 12abc");
  });

  it("a refused connection rejects bulkGet with UpstreamError", async () => {
    const srv = await rawServer(() => {});
    const url = srv.url();
    // Closing the listener leaves a port nothing listens on.
    await Promise.all(cleanups.splice(0).map((close) => close()));
    const err = await bulkGet(url, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toMatch(/^download failed: .*ECONNREFUSED/);
  });

  it("a header value with a line break is refused before connecting", async () => {
    const srv = await rawServer(() => {});
    await expect(
      (async () => bulkGet(srv.url(), { range: "bytes=0-\r\nX-Injected: 1" }))(),
    ).rejects.toThrow(TypeError);
    // A valid request made afterwards is the first connection the server sees.
    const ac = new AbortController();
    const valid = bulkGet(srv.url("/valid"), {}, ac.signal).catch(() => undefined);
    await until("the valid request's head", () => srv.conns.length === 1, WAIT_MS);
    expect(srv.conns[0]!.request).toMatch(/^GET \/valid /);
    expect(srv.connections()).toBe(1);
    ac.abort();
    await valid;
  });
});

describe("bulkGet: replies it does not frame", () => {
  it("a chunked reply rejects with UnsupportedReply", async () => {
    const srv = await httpServer((_req, res) => {
      res.write(BODY.subarray(0, 1000));
      res.end(BODY.subarray(1000, 2000));
    });
    const err = await bulkGet(srv.url(), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedReply);
    expect((err as Error).message).toBe("transfer-encoding chunked");
    await srv.seen[0]!.closed;
  });

  describe("through Downloader", () => {
    const agent = new Agent();
    afterAll(() => agent.close());
    /** Just enough of CloudreveApi for Downloader: a signed URL that is used as given. */
    const apiFor = (url: URL) =>
      ({
        fileUrl: async () => ({ url: url.href, expires: null }),
        transport: {
          origin: "http://cloudreve.invalid",
          dispatcher: agent,
          timeouts: DEFAULT_TIMEOUTS,
        },
      }) as unknown as CloudreveApi;

    it("a chunked reply to the bulk reader is fetched again with the general client", async () => {
      const size = 100_000;
      const srv = await httpServer((_req, res) => {
        res.setHeader("etag", '"v1"');
        res.write(BODY.subarray(0, 40_000));
        res.end(BODY.subarray(40_000, size));
      });
      const d = new Downloader(apiFor(srv.url("/blob")), Date.now, 1);
      const res = await d.open({ uri: "cloudreve://my/a", entity: "e1", size });
      expect(res.statusCode).toBe(200);
      const sink = collector();
      await res.pipeTo(sink.dest);
      expectBytes(sink.bytes(), BODY.subarray(0, size));
      // First the bulk reader (connection: close), then undici (keep-alive).
      expect(srv.seen.map((s) => s.req.headers.connection)).toEqual(["close", "keep-alive"]);
    });

    it.each([
      ["bulk", 1],
      ["streamed", Infinity],
    ])(
      "a body that breaks off is resumed with a Range from the next byte (%s reader)",
      async (_kind, bulkFrom) => {
        const size = 200_000;
        const cut = 70_000;
        const srv = await httpServer((req, res) => {
          const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
          if (!m) {
            // The first try: the whole file announced, the connection lost part-way.
            res.writeHead(200, { "content-length": size, etag: '"v1"' });
            res.write(BODY.subarray(0, cut), () => res.destroy());
            return;
          }
          const [from, to] = [Number(m[1]), Number(m[2])];
          res.writeHead(206, {
            "content-length": to - from + 1,
            "content-range": `bytes ${from}-${to}/${size}`,
            etag: '"v1"',
          });
          res.end(BODY.subarray(from, to + 1));
        });
        const d = new Downloader(apiFor(srv.url("/blob")), Date.now, bulkFrom, { backoffMs: 1 });
        const res = await d.open({ uri: "cloudreve://my/a", entity: "e1", size });
        const sink = collector();
        await res.pipeTo(sink.dest);
        expectBytes(sink.bytes(), BODY.subarray(0, size));
        const ranges = srv.seen.map((s) => s.req.headers.range);
        expect(ranges[0]).toBeUndefined();
        // Whatever had reached the gateway went on to the client; the rest was asked for.
        const resumedAt = Number(/^bytes=(\d+)-/.exec(ranges.at(-1) ?? "")?.[1]);
        expect(resumedAt).toBeGreaterThan(0);
        expect(resumedAt).toBeLessThanOrEqual(cut);
        expect(ranges.at(-1)).toBe(`bytes=${resumedAt}-${size - 1}`);
      },
    );

    it("reads from the threshold up go through the bulk reader, smaller ones do not", async () => {
      const size = 64 * 1024;
      const srv = await httpServer((_req, res) => {
        res.writeHead(200, { "content-length": size, etag: '"v1"' });
        res.end(BODY.subarray(0, size));
      });
      const d = new Downloader(apiFor(srv.url("/blob")), Date.now, size);
      for (const range of [undefined, `bytes=0-${size - 2}`]) {
        const res = await d.open({ uri: "cloudreve://my/a", entity: "e1", size, range });
        const sink = collector();
        await res.pipeTo(sink.dest);
        expectBytes(sink.bytes(), BODY.subarray(0, size));
      }
      expect(srv.seen.map((s) => s.req.headers.connection)).toEqual(["close", "keep-alive"]);
    });
  });
});

describe("bulkGet: breaking off", () => {
  it("aborting mid-body rejects pipeTo with the reason and closes the connection", async () => {
    const srv = await pumpingServer();
    const ac = new AbortController();
    const reason = new Error("client went away");
    const res = await bulkGet(srv.url(), {}, ac.signal);
    const sink = countingSink(MiB, () => ac.abort(reason));
    await expect(res.pipeTo(sink.dest)).rejects.toBe(reason);
    expect(sink.finished()).toBe(false);
    // The server sees the connection go before it could send everything.
    expect(await srv.sent()).toBeLessThan(BODY.length);
    expect(sink.bytes()).toBeLessThan(BODY.length);
  });

  it("an abort before the head arrives rejects bulkGet", async () => {
    const srv = await rawServer(() => {});
    const ac = new AbortController();
    const pending = bulkGet(srv.url(), {}, ac.signal);
    await until("the request's head", () => srv.conns.length === 1, WAIT_MS);
    ac.abort();
    await expect(pending).rejects.toMatchObject({ name: "AbortError" });
    await srv.conns[0]!.closed;
  });

  it("an already aborted signal rejects at once", async () => {
    const srv = await httpServer((_req, res) => res.end("x"));
    const reason = new Error("already");
    await expect(bulkGet(srv.url(), {}, AbortSignal.abort(reason))).rejects.toBe(reason);
  });

  it("the destination closing mid-body rejects pipeTo and closes the connection", async () => {
    const srv = await pumpingServer();
    const res = await bulkGet(srv.url(), {});
    const sink = countingSink(MiB, (dest) => setImmediate(() => dest.destroy()));
    const err = await res.pipeTo(sink.dest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toBe("download: the destination closed");
    expect(await srv.sent()).toBeLessThan(BODY.length);
    expect(sink.bytes()).toBeLessThan(BODY.length);
  });
});

describe("bulkGet: HTTPS", () => {
  const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url));
  const tls = {
    key: readFileSync(`${fixtures}tls-key.pem`),
    cert: readFileSync(`${fixtures}tls-cert.pem`),
  };
  // bulkGet takes no CA: trust the self-signed certificate by turning verification off, only
  // for these tests (read by tls.connect at each connection).
  let saved: string | undefined;
  const trustAll = () => {
    saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
  };
  afterEach(() => {
    if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
    saved = undefined;
  });

  it("an untrusted certificate is refused (verification is on by default)", async () => {
    const srv = await httpServer((_req, res) => res.end("x"), tls);
    const err = await bulkGet(srv.url(), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toMatch(/self-signed certificate/);
  });

  async function tlsDownload(size: number) {
    trustAll();
    const srv = await httpServer((_req, res) => {
      res.writeHead(200, { "content-length": size });
      res.end(BODY.subarray(0, size));
    }, tls);
    const res = await bulkGet(srv.url("/tls"), { range: "bytes=0-" });
    expect(res.statusCode).toBe(200);
    const sink = heldSink(BODY);
    await res.pipeTo(sink.dest);
    expect(srv.seen[0]!.req.headers.range).toBe("bytes=0-");
    expect(srv.seen[0]!.req.headers.connection).toBe("close");
    return sink.stats();
  }

  it("a 20 MiB body over TLS arrives byte for byte, every lent chunk intact", async () => {
    const s = await tlsDownload(20 * MiB);
    expect(s.mismatches).toBe(0);
    expect(s.verified).toBe(20 * MiB);
  });

  // The memory bound must hold over TLS too: TLS hands over one record (<= 16 KiB) per read
  // and can deliver a few more after the reader pauses.
  it("over TLS, at most 8 pool buffers' worth lent and 8 pool buffers per download", async () => {
    const s = await tlsDownload(20 * MiB);
    expect(s.maxLentBytes).toBeLessThanOrEqual(LENT_BYTES_BOUND);
    expect(s.poolBuffers.size).toBeLessThanOrEqual(BUFFERS_PER_GET);
  });

  it("readAll over TLS", async () => {
    trustAll();
    const srv = await httpServer((_req, res) => res.end(BODY.subarray(0, 70_000)), tls);
    const res = await bulkGet(srv.url(), {});
    expectBytes(await res.readAll(), BODY.subarray(0, 70_000));
  });

  /** A server answering with the TLS server name (SNI) it was sent; "false" for none. */
  const sniServer = () =>
    httpServer((req, res) => {
      res.end(String((req.socket as unknown as { servername: string | false }).servername));
    }, tls);

  it("sends a host name as the TLS server name", async () => {
    trustAll();
    const srv = await sniServer();
    const res = await bulkGet(new URL(`https://localhost:${srv.port}/`), {});
    expect((await res.readAll()).toString()).toBe("localhost");
  });

  // RFC 6066 forbids an IP address as server name; Node's own https client sends none then,
  // and tls.connect warns (DEP0123) when given one.
  it("sends no TLS server name for an IP address", async () => {
    trustAll();
    const srv = await sniServer();
    const res = await bulkGet(srv.url(), {});
    expect((await res.readAll()).toString()).toBe("false");
  });
});

describe("bulkGet: readAll and discard", () => {
  it("readAll returns a small JSON reply whole", async () => {
    const json = JSON.stringify({ code: 40005, msg: "expired", data: null });
    const srv = await httpServer((_req, res) => {
      res.writeHead(200, {
        "content-type": "application/json; charset=utf-8",
        "content-length": Buffer.byteLength(json),
      });
      res.end(json);
    });
    const res = await bulkGet(srv.url(), {});
    expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect((await res.readAll()).toString("utf8")).toBe(json);
    await expect(res.readAll()).rejects.toThrow("the body is already being read");
  });

  it("discard closes the connection with the body unread", async () => {
    const srv = await pumpingServer();
    const res = await bulkGet(srv.url(), {});
    res.discard();
    expect(await srv.sent()).toBeLessThan(BODY.length);
    await expect(res.readAll()).rejects.toThrow("download discarded");
  });
});

describe("parseHead", () => {
  it("lower-cases names, trims values, joins repeats with a comma", () => {
    const head = parseHead(
      [
        "HTTP/1.1 206 Partial Content",
        "Content-Type:  text/plain ",
        "Vary: Accept",
        "VARY: Origin",
        "X-Empty:",
      ].join("\r\n"),
    );
    expect(head).toEqual({
      statusCode: 206,
      headers: { "content-type": "text/plain", vary: "Accept, Origin", "x-empty": "" },
    });
  });

  it("keeps set-cookie as a list, even a single one", () => {
    expect(parseHead("HTTP/1.1 200 OK\r\nSet-Cookie: a=1, b").headers["set-cookie"]).toEqual([
      "a=1, b",
    ]);
    expect(
      parseHead("HTTP/1.0 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2").headers["set-cookie"],
    ).toEqual(["a=1", "b=2"]);
  });

  it("takes a status line without a reason phrase", () => {
    expect(parseHead("HTTP/1.1 204")).toEqual({ statusCode: 204, headers: {} });
  });

  it.each([
    ["HTTP/2 200 OK"],
    ["HTTP/1.1 20 OK"],
    ["HTTP/1.1 2000 OK"],
    ["HTTP/1.1  200 OK"],
    ["http/1.1 200 OK"],
    ["ICY 200 OK"],
    [""],
  ])("refuses the status line %j", (line) => {
    expect(() => parseHead(`${line}\r\nA: b`)).toThrow(UpstreamError);
    expect(() => parseHead(`${line}\r\nA: b`)).toThrow(/not an HTTP\/1\.1 reply/);
  });

  it.each([["no colon"], [": empty name"], [" "]])("refuses the header line %j", (line) => {
    expect(() => parseHead(`HTTP/1.1 200 OK\r\n${line}`)).toThrow(
      "download: malformed header line in the reply",
    );
  });
});
