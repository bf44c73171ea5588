import { pino, type Logger } from "pino";

/**
 * The gateway's logger: JSON lines, pretty when a person is watching a terminal. Anything that
 * could carry a secret is redacted by path, as a second line of defence behind not logging it.
 */
export function createLogger(
  level: string,
  stream: NodeJS.WritableStream = process.stdout,
): Logger {
  const pretty = stream === process.stdout && process.stdout.isTTY;
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
      : (stream as pino.DestinationStream),
  );
}

export type { Logger };
