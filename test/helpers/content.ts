import { Writable } from "node:stream";

/** Everything a read result sends, collected; chunks are copied since they may be lent. */
export async function contentOf(r: { pipeTo(dest: Writable): Promise<void> }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await r.pipeTo(
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(Buffer.from(chunk));
        done();
      },
    }),
  );
  return Buffer.concat(chunks);
}
