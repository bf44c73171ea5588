import { pino, type DestinationStream, type Logger } from "pino";
import { isColorSupported, prettyFactory } from "pino-pretty";

/**
 * What the layers below the WebDAV one tell the operator (clean-up that failed, state left
 * upstream): structured fields and a message. The gateway's pino logger is one.
 */
export interface EventLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/**
 * The gateway's logger: JSON lines with ISO-8601 times, pretty when a person is watching a
 * terminal. Anything that could carry a secret is redacted by path, as a second line of defence
 * behind not logging it. JSON lines to standard output are written asynchronously, a batch per
 * write: a synchronous write per request line cost a third of a small request's time (measured
 * with wrk). pino flushes what is pending when the process exits and after a fatal line.
 */
export function createLogger(
  level: string,
  stream: NodeJS.WritableStream = process.stdout,
  pretty = stream === process.stdout && process.stdout.isTTY,
): Logger {
  const stdout = stream === process.stdout;
  return pino(
    {
      level,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          "password",
          "*.password",
          "refreshToken",
          "*.refreshToken",
          "token",
          "*.token",
          "access_token",
          "*.access_token",
          "refresh_token",
          "*.refresh_token",
          "cookie",
          "*.cookie",
          "authorization",
          "*.authorization",
          "headers.authorization",
          "req.headers.authorization",
        ],
        censor: "[redacted]",
      },
    },
    pretty
      ? prettyLines(stream)
      : stdout
        ? pino.destination({ dest: 1, sync: false })
        : (stream as DestinationStream),
  );
}

/**
 * Lines for a person: one per request, opening with what one scans for ("PUT /a b.txt 201 12ms
 * alice"), then its other fields; local times in ISO-8601. Formatted in this thread (a terminal
 * is written synchronously anyway) so that request lines can be told from the others.
 */
function prettyLines(stream: NodeJS.WritableStream): DestinationStream {
  const prettify = prettyFactory({
    colorize: stream === process.stdout && isColorSupported,
    singleLine: true,
    translateTime: "SYS:yyyy-mm-dd'T'HH:MM:ss.lp",
    ignore: "pid,hostname",
    // A client error's message (`error`) stays on the line; only our own failures (`err`) bring
    // their stack on the lines below.
    errorLikeObjectKeys: ["err"],
  });
  return {
    write(line: string) {
      const log = JSON.parse(line) as Record<string, unknown>;
      if (log.msg !== "request") {
        stream.write(prettify(log));
        return;
      }
      const { method, path, status, ms, user, ...rest } = log;
      const who = user === undefined ? "" : ` ${String(user)}`;
      const msg = `${String(method)} ${String(path)} ${String(status)} ${String(ms)}ms${who}`;
      stream.write(prettify({ ...rest, msg }));
    },
  };
}

export type { Logger };
