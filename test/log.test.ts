/** The log as a person reads it in a terminal, and as machines read it (JSON lines). */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";

/** A logger writing to memory, and what it wrote so far. */
function capture(pretty: boolean) {
  let text = "";
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { log: createLogger("info", sink, pretty), text: () => text };
}

const request = {
  method: "PUT",
  path: "/café menu.txt",
  status: 201,
  client: "127.0.0.1",
  user: "alice",
  bytes: 141,
  ms: 12,
  ua: "rclone/v1.69",
};

/** An ISO-8601 time with milliseconds and the offset of the machine's zone. */
const LOCAL_ISO = /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d\] /;

describe("pretty lines (a terminal)", () => {
  it("one line per request, opening with method, path, status, time taken and user", () => {
    const { log, text } = capture(true);
    log.info({ ...request, error: "precondition failed" }, "request");
    log.warn({ ...request, user: undefined, status: 401 }, "request");
    const lines = text().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe("");
    expect(lines[0]).toMatch(LOCAL_ISO);
    expect(lines[0]).toContain(" INFO: PUT /café menu.txt 201 12ms alice {");
    const fields = JSON.parse(lines[0]!.slice(lines[0]!.indexOf("{"))) as object;
    expect(fields).toEqual({
      client: "127.0.0.1",
      bytes: 141,
      ua: "rclone/v1.69",
      error: "precondition failed",
    });
    expect(lines[1]).toContain(" WARN: PUT /café menu.txt 401 12ms {");
  });

  it("other lines keep their message and all their fields", () => {
    const { log, text } = capture(true);
    log.info({ user: "me@example.com" }, "logged in upstream");
    expect(text()).toMatch(LOCAL_ISO);
    expect(text()).toContain(' INFO: logged in upstream {"user":"me@example.com"}\n');
  });
});

describe("JSON lines", () => {
  it("carry every field and an ISO-8601 time in UTC", () => {
    const { log, text } = capture(false);
    log.info(request, "request");
    const line = JSON.parse(text()) as Record<string, unknown>;
    expect(line).toMatchObject({ ...request, msg: "request", level: 30 });
    expect(new Date(line.time as string).toISOString()).toBe(line.time);
  });
});
