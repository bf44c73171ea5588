/** Concurrent writes to one path: each runs after the previous, none meets its upload lock. */
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloudreveApi } from "../../src/cloudreve/api.js";
import { Drive } from "../../src/drive/drive.js";
import type { ReadResult } from "../../src/drive/types.js";
import { EMAIL, PASSWORD, useEmulator } from "../helpers/emulator.js";
import { contentOf } from "../helpers/content.js";

const ctx = useEmulator({ chunkSize: 4 });
let api: CloudreveApi;
beforeAll(() => {
  api = new CloudreveApi({ baseUrl: ctx.emu.url, email: EMAIL, password: PASSWORD });
});
afterAll(() => api.close());

const text = async (r: ReadResult) => (await contentOf(r)).toString();

describe("write", () => {
  it("serialises concurrent writes to one path (upload sessions lock their path upstream)", async () => {
    const drive = new Drive(api);
    const contents = ["first version", "second version", "third version"];
    // With an mtime every write takes an upload session, which locks the path until it ends.
    const results = await Promise.allSettled(
      contents.map((c, i) =>
        drive.write("/same.txt", {
          source: Readable.from([Buffer.from(c)]),
          size: c.length,
          mtimeMs: 1000 * (i + 1),
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "fulfilled"]);
    const read = await new Drive(api).read("/same.txt");
    expect(await text(read)).toBe("third version");
  });
});
