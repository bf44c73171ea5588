import { pino, type Logger } from "pino";

/**
 * What the layers below the WebDAV one tell the operator (clean-up that failed, state left
 * upstream): structured fields and a message. The gateway's pino logger is one.
 */
export interface EventLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/**
 * The gateway's logger: JSON lines, pretty when a person is watching a terminal. Anything that
 * could carry a secret is redacted by path, as a second line of defence behind not logging it.
 * Lines to standard output are written asynchronously, a batch per write: a synchronous write
 * per request line cost a third of a small request's time (measured with wrk). pino flushes
 * what is pending when the process exits and after a fatal line.
 */
export function createLogger(
  level: string,
  stream: NodeJS.WritableStream = process.stdout,
): Logger {
  const stdout = stream === process.stdout;
  const pretty = stdout && process.stdout.isTTY;
  return pino(
    {
      level,
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
      ? pino.transport({
          target: "pino-pretty",
          options: { colorize: true, translateTime: "SYS:HH:MM:ss" },
        })
      : stdout
        ? pino.destination({ dest: 1, sync: false })
        : (stream as pino.DestinationStream),
  );
}

export type { Logger };
