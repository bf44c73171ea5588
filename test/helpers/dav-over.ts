import { createServer } from "node:http";
import { afterAll, beforeAll } from "vitest";
import type { LockSystem } from "../../src/dav/locks.js";
import { createDavHandler } from "../../src/dav/server.js";
import type { FileSystem } from "../../src/drive/types.js";
import { createLogger } from "../../src/log.js";

export interface DavOver {
  /** The server's origin, e.g. http://127.0.0.1:41234 (no trailing slash). */
  base: string;
}

/**
 * The WebDAV handler alone over a drive and lock system a test made (a stub, a counting proxy),
 * for the enclosing describe block: no upstream, no sign-in.
 */
export function useDavOver(
  fs: FileSystem,
  locks: LockSystem,
  options: { baseUrl?: string; root?: string; readOnly?: boolean } = {},
): DavOver {
  const fixture = { base: "" };
  const server = createServer(
    createDavHandler({
      workspace: () => ({
        fs,
        locks,
        root: options.root ?? "/",
        readOnly: options.readOnly ?? false,
        release: () => undefined,
      }),
      baseUrl: options.baseUrl ?? "",
      trustedProxies: [],
      log: createLogger("silent"),
      downloadMode: "proxy",
      lockTimeoutMaxSeconds: 600,
    }),
  );
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    fixture.base = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return fixture;
}
