import { createInterface, type Interface } from "node:readline";
import { Writable } from "node:stream";

/**
 * Asks questions on the terminal, one line per answer. On a terminal the question is shown and
 * a secret answer is not echoed; from a pipe the lines are read in turn without questions, so
 * that a script (or a test) can feed them.
 */
export class Prompter {
  private readonly lines: Interface;
  private readonly next: AsyncIterator<string>;
  private readonly tty: boolean;
  /** While a secret is typed, readline's echo goes nowhere. */
  private muted = false;

  constructor(
    input: NodeJS.ReadStream = process.stdin,
    private readonly output: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = input.isTTY === true;
    const echo = new Writable({
      write: (chunk, _encoding, done) => {
        if (!this.muted) output.write(chunk);
        done();
      },
    });
    this.lines = createInterface({ input, output: echo, terminal: this.tty });
    // Ctrl-C reaches readline as a key in raw mode: give the terminal back, then stop as usual.
    this.lines.on("SIGINT", () => {
      this.close();
      output.write("\n");
      process.kill(process.pid, "SIGINT");
    });
    // The iterator buffers lines that come before their question (a pipe delivers them at once).
    this.next = this.lines[Symbol.asyncIterator]();
  }

  /** The next line, or undefined once the input has ended. */
  async ask(question: string, options: { secret?: boolean } = {}): Promise<string | undefined> {
    if (this.tty) this.output.write(question);
    this.muted = options.secret === true;
    try {
      const line = await this.next.next();
      return line.done ? undefined : line.value;
    } finally {
      // The Enter of a muted answer was not echoed either.
      if (this.tty && this.muted) this.output.write("\n");
      this.muted = false;
    }
  }

  close(): void {
    this.lines.close();
  }
}
