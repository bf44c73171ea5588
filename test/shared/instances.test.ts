/**
 * Two gateway instances serving one drive through one Redis (`--redis`): locks and cache
 * invalidations agree across them, over HTTP.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaults } from "../../src/config.js";
import { startEmulator } from "../../src/emulator/index.js";
import type { RunningEmulator } from "../../src/emulator/options.js";
import { createLogger } from "../../src/log.js";
import { hashPassword } from "../../src/passwords.js";
import { startGateway, type Gateway } from "../../src/server.js";
import { EMAIL, PASSWORD } from "../helpers/emulator.js";
import { hrefs, LOCK_EXCLUSIVE, raw } from "../helpers/http-raw.js";
import { eventually } from "../helpers/wait.js";
import { startRedis, type RedisServer } from "../helpers/redis.js";

const ALICE = { user: "alice", password: "alice-pw" };
const BOB = { user: "bob", password: "bob-pw" };

describe("two instances sharing Redis", () => {
  let redis: RedisServer;
  let emu: RunningEmulator;
  const gateways: Gateway[] = [];
  let a: string;
  let b: string;

  beforeAll(async () => {
    redis = await startRedis();
    // Cloudreve's own change events arrive only after a minute here: whatever B learns sooner
    // came from A through Redis.
    emu = await startEmulator({ email: EMAIL, password: PASSWORD, eventDebounceMs: 60_000 });
    const users = [
      { name: ALICE.user, passwordHash: await hashPassword(ALICE.password) },
      { name: BOB.user, passwordHash: await hashPassword(BOB.password) },
    ];
    for (let i = 0; i < 2; i++) {
      gateways.push(
        await startGateway(
          {
            ...defaults(),
            upstream: emu.url,
            email: EMAIL,
            password: PASSWORD,
            stateDir: await mkdtemp(join(tmpdir(), "cloudreve-dav-instance-")),
            port: 0,
            metricsListen: "off",
            users,
            redis: redis.url,
          },
          createLogger("silent"),
        ),
      );
    }
    [a, b] = gateways.map((g) => g.url.replace(/\/$/, "")) as [string, string];
  }, 60_000);

  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await emu?.close();
    await redis?.dispose();
  });

  it("a LOCK through A gives 423 to a PUT through B; A's token and user unlock through B", async () => {
    expect((await raw(a, "PUT", "/doc.txt", { body: "v1", auth: ALICE })).status).toBe(201);
    const lock = await raw(a, "LOCK", "/doc.txt", { body: LOCK_EXCLUSIVE, auth: ALICE });
    expect(lock.status).toBe(200);
    const token = /<([^>]+)>/.exec(String(lock.headers["lock-token"]))![1]!;

    expect((await raw(b, "PUT", "/doc.txt", { body: "v2", auth: ALICE })).status).toBe(423);
    const ifHeader = { if: `(<${token}>)` };
    const bobs = await raw(b, "PUT", "/doc.txt", { body: "v2", auth: BOB, headers: ifHeader });
    expect(bobs.status).toBe(423); // the token is alice's
    expect(
      (await raw(b, "UNLOCK", "/doc.txt", { auth: BOB, headers: { "lock-token": `<${token}>` } }))
        .status,
    ).toBe(403);
    const put = await raw(b, "PUT", "/doc.txt", { body: "v2", auth: ALICE, headers: ifHeader });
    expect(put.status).toBe(204);
    const unlock = await raw(b, "UNLOCK", "/doc.txt", {
      auth: ALICE,
      headers: { "lock-token": `<${token}>` },
    });
    expect(unlock.status).toBe(204);
    expect((await raw(a, "PUT", "/doc.txt", { body: "v3", auth: BOB })).status).toBe(204);
    expect(
      await eventually(async () => (await raw(b, "GET", "/doc.txt", { auth: ALICE })).text, "v3"),
    ).toBe("v3");
  });

  it("a file written through A is listed by B at once, though B had the folder cached", async () => {
    expect((await raw(a, "MKCOL", "/shared/", { auth: ALICE })).status).toBe(201);
    const before = await raw(b, "PROPFIND", "/shared/", { auth: BOB, headers: { depth: "1" } });
    expect(hrefs(before.text)).toEqual(["/shared/"]);
    expect((await raw(a, "PUT", "/shared/new.txt", { body: "hello", auth: ALICE })).status).toBe(
      201,
    );
    const listing = async () =>
      hrefs(
        (await raw(b, "PROPFIND", "/shared/", { auth: BOB, headers: { depth: "1" } })).text,
      ).join(" ");
    expect(await eventually(listing, "/shared/ /shared/new.txt")).toBe("/shared/ /shared/new.txt");
    expect((await raw(b, "GET", "/shared/new.txt", { auth: BOB })).text).toBe("hello");
  });
});
