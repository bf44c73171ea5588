#!/usr/bin/env node
import { parseArgs } from "node:util";
import { startEmulator } from "./index.js";
import type { EmulatorUser } from "./options.js";
import { EMULATED_POLICIES, type PolicyType } from "./storage/index.js";

const usage = `usage: cloudreve-emulator --port N --email E --password P [--host H] [--chunk-size BYTES]
  [--max-page-size N] [--pagination cursor|offset] [--access-ttl S] [--refresh-ttl S]
  [--latency-ms MS] [--captcha] [--otp-secret BASE32] [--capacity BYTES] [--policy TYPE] [--relay] [--chunk-concurrency N]
  [--version-retention N] [--no-events | --version-before-events] [--event-debounce-ms MS]
  [--event-keep-alive-ms MS] [--user EMAIL:PASSWORD[:TYPE]]...
  TYPE: ${EMULATED_POLICIES.join("|")}
  --user adds an account (repeatable) with its own drive, the --capacity quota and its own
  policy (default --policy). EMAIL ends at the first ":"; a last ":TYPE" naming a policy type
  is the policy, so a password that ends in ":TYPE" needs the policy after it.`;

function int(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) {
    process.stderr.write(`--${name} must be a non-negative integer, got "${value}"\n${usage}\n`);
    process.exit(2);
  }
  return n;
}

function isPolicy(value: string): value is PolicyType {
  return (EMULATED_POLICIES as string[]).includes(value);
}

/** `--user EMAIL:PASSWORD[:TYPE]`. */
function user(value: string): EmulatorUser {
  const [, email, rest] = /^([^:]+):(.+)$/.exec(value) ?? [];
  const last = rest?.lastIndexOf(":") ?? -1;
  const policy = rest?.slice(last + 1) ?? "";
  const typed = last >= 0 && isPolicy(policy);
  const password = typed ? rest!.slice(0, last) : rest;
  if (!email || !password) {
    process.stderr.write(`--user must be EMAIL:PASSWORD[:TYPE], got "${value}"\n${usage}\n`);
    process.exit(2);
  }
  return typed ? { email, password, policy } : { email, password };
}

let args;
try {
  args = parseArgs({
    options: {
      port: { type: "string" },
      host: { type: "string" },
      email: { type: "string" },
      password: { type: "string" },
      "chunk-size": { type: "string" },
      "max-page-size": { type: "string" },
      pagination: { type: "string" },
      "access-ttl": { type: "string" },
      "refresh-ttl": { type: "string" },
      "latency-ms": { type: "string" },
      captcha: { type: "boolean" },
      "otp-secret": { type: "string" },
      capacity: { type: "string" },
      policy: { type: "string" },
      relay: { type: "boolean" },
      "version-retention": { type: "string" },
      "chunk-concurrency": { type: "string" },
      "no-events": { type: "boolean" },
      "version-before-events": { type: "boolean" },
      "event-debounce-ms": { type: "string" },
      "event-keep-alive-ms": { type: "string" },
      user: { type: "string", multiple: true },
      help: { type: "boolean" },
    },
  }).values;
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n${usage}\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
const pagination = args.pagination ?? "cursor";
if (pagination !== "cursor" && pagination !== "offset") {
  process.stderr.write(`--pagination must be cursor or offset, got "${pagination}"\n`);
  process.exit(2);
}
const policy = args.policy ?? "local";
if (!isPolicy(policy)) {
  process.stderr.write(
    `--policy must be one of ${EMULATED_POLICIES.join(", ")}, got "${policy}"\n`,
  );
  process.exit(2);
}
const extraUsers = (args.user ?? []).map(user);

const emulator = await startEmulator({
  port: int("port", args.port) ?? 5212,
  host: args.host,
  email: args.email,
  password: args.password,
  extraUsers,
  chunkSize: int("chunk-size", args["chunk-size"]),
  maxPageSize: int("max-page-size", args["max-page-size"]),
  pagination,
  accessTtl: int("access-ttl", args["access-ttl"]),
  refreshTtl: int("refresh-ttl", args["refresh-ttl"]),
  latencyMs: int("latency-ms", args["latency-ms"]),
  captcha: args.captcha,
  otpSecret: args["otp-secret"],
  capacity: int("capacity", args.capacity),
  policy,
  relay: args.relay,
  versionRetention: int("version-retention", args["version-retention"]),
  chunkConcurrency: int("chunk-concurrency", args["chunk-concurrency"]),
  events: args["version-before-events"] ? "absent" : args["no-events"] ? "disabled" : "on",
  eventDebounceMs: int("event-debounce-ms", args["event-debounce-ms"]),
  eventKeepAliveMs: int("event-keep-alive-ms", args["event-keep-alive-ms"]),
});
process.stdout.write(`listening on ${emulator.url}\n`);
if (emulator.storageUrl) process.stdout.write(`storage on ${emulator.storageUrl}\n`);
for (const [type, url] of Object.entries(emulator.storageUrls)) {
  if (type !== policy) process.stdout.write(`${type} storage on ${url}\n`);
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void emulator.close().then(() => process.exit(0)));
}
