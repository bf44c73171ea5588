/**
 * Cloudreve's change events seen through WebDAV: with a cache lifetime of ten minutes, what
 * another client changes straight through the API shows up as soon as its event arrives; the
 * gateway's own writes come back as no event at all; a burst Cloudreve cuts short, a stream
 * the server resets and a server without events all end with a correct view.
 */
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaults, type Config } from "../../src/config.js";
import { startEmulator } from "../../src/emulator/index.js";
import type { EmulatorOptions, RunningEmulator } from "../../src/emulator/options.js";
import { createLogger } from "../../src/log.js";
import { startGateway, type Gateway } from "../../src/server.js";
import { calls, R, resetStats, setFaults, type FaultRule } from "../helpers/control.js";
import { advance, Api, EMAIL, myUri, ok, put } from "../helpers/emulator.js";
import { enc, hrefs, raw } from "../helpers/http-raw.js";
import { until } from "../helpers/wait.js";

const WAIT_MS = 15_000;
const EVENTS = "GET /api/v4/file/events";
const UNAVAILABLE = "Cloudreve sends no change events";

interface Fixture {
  emu: RunningEmulator;
  gw: Gateway;
  url: string;
  stateDir: string;
  /** Another client of the same account, as the web UI is. */
  web: Api;
  /** The gateway's log lines. */
  lines: { level: number; msg: string }[];
}

/**
 * An emulator (with `faults` set before the gateway connects) and a gateway in front of it
 * that trusts its cache for ten minutes, with or without events, logging into `lines`.
 */
function useEventGateway(
  emulator: EmulatorOptions,
  config: Partial<Config> = {},
  faults: FaultRule[] = [],
): Fixture {
  const fx = { lines: [] } as unknown as Fixture;
  beforeAll(async () => {
    fx.emu = await startEmulator({ email: EMAIL, eventDebounceMs: 200, ...emulator });
    await setFaults(fx.emu.url, faults);
    fx.web = new Api(fx.emu.url);
    await fx.web.login();
    fx.stateDir = await mkdtemp(join(tmpdir(), "cloudreve-dav-test-"));
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean))
          fx.lines.push(JSON.parse(line) as Fixture["lines"][number]);
        done();
      },
    });
    fx.gw = await startGateway(
      {
        ...defaults(),
        upstream: fx.emu.url,
        email: EMAIL,
        password: "cloudreve-dav",
        stateDir: fx.stateDir,
        port: 0,
        cacheTtlSeconds: 600,
        cacheTtlWithEventsSeconds: 600,
        ...config,
      },
      createLogger("info", sink),
    );
    fx.url = fx.gw.url.replace(/\/$/, "");
  });
  afterAll(async () => {
    await fx.gw?.close();
    await fx.emu?.close();
  });
  return fx;
}

/** The names a PROPFIND Depth 1 of a folder lists (the folder itself left out). */
async function names(fx: Fixture, folder: string): Promise<string[]> {
  const r = await raw(fx.url, "PROPFIND", enc(folder), { headers: { depth: "1" } });
  expect(r.status, `PROPFIND ${folder}`).toBe(207);
  const self = folder.endsWith("/") ? folder : `${folder}/`;
  return hrefs(r.text)
    .map(decodeURIComponent)
    .filter((h) => h !== self)
    .map((h) => h.slice(self.length).replace(/\/$/, ""))
    .sort();
}

async function exists(fx: Fixture, path: string): Promise<boolean> {
  const r = await raw(fx.url, "PROPFIND", enc(path), { headers: { depth: "0" } });
  expect([207, 404], `PROPFIND ${path}`).toContain(r.status);
  return r.status === 207;
}

async function body(fx: Fixture, path: string): Promise<string | undefined> {
  const r = await raw(fx.url, "GET", enc(path));
  return r.status === 200 ? r.text : undefined;
}

/** Waits until the gateway shows what `check` looks for. */
const shows = (what: string, check: () => Promise<boolean>) => until(what, check, WAIT_MS);

const listed = (fx: Fixture, folder: string, name: string) => async () =>
  (await names(fx, folder)).includes(name);

async function create(api: Api, path: string): Promise<void> {
  ok(await api.call("POST", "/file/create", { json: { uri: myUri(path), type: "folder" } }));
}

describe("changes made straight through Cloudreve, with a ten-minute cache", () => {
  const fx = useEventGateway({});

  beforeAll(async () => {
    await put(fx.web, "deep/a/b/kept.txt", "kept");
    await put(fx.web, "top.txt", "top");
    await create(fx.web, "deep/elsewhere");
    // The events flow: what follows is cached for the ten minutes.
    await until("the subscription", () => fx.lines.some((l) => /following/.test(l.msg)), WAIT_MS);
  });

  it("a folder and an upload, in the root and deep in a subtree", async () => {
    expect(await names(fx, "/")).toEqual(["deep", "top.txt"]);
    expect(await names(fx, "/deep/a/b")).toEqual(["kept.txt"]);
    expect(await exists(fx, "/new-folder")).toBe(false);
    await create(fx.web, "new-folder");
    await put(fx.web, "deep/a/b/up.txt", "uploaded");
    await shows("the new folder", listed(fx, "/", "new-folder"));
    expect(await exists(fx, "/new-folder")).toBe(true);
    await shows("the upload", async () => (await body(fx, "/deep/a/b/up.txt")) === "uploaded");
    expect(await names(fx, "/deep/a/b")).toEqual(["kept.txt", "up.txt"]);
  });

  it("new content of a file the gateway has read", async () => {
    expect(await body(fx, "/top.txt")).toBe("top");
    await put(fx.web, "top.txt", "top, changed");
    await shows("the new content", async () => (await body(fx, "/top.txt")) === "top, changed");
  });

  it("a rename and a move", async () => {
    await put(fx.web, "r1.txt", "r");
    await shows("r1.txt", listed(fx, "/", "r1.txt"));
    expect(await names(fx, "/deep/elsewhere")).toEqual([]);
    ok(
      await fx.web.call("POST", "/file/rename", {
        json: { uri: myUri("r1.txt"), new_name: "r2.txt" },
      }),
    );
    ok(
      await fx.web.call("POST", "/file/move", {
        json: { uris: [myUri("deep/a/b/kept.txt")], dst: myUri("deep/elsewhere") },
      }),
    );
    await shows("the rename", async () => !(await exists(fx, "/r1.txt")));
    expect(await body(fx, "/r2.txt")).toBe("r");
    await shows("the move", listed(fx, "/deep/elsewhere", "kept.txt"));
    expect(await exists(fx, "/deep/a/b/kept.txt")).toBe(false);
    expect(await body(fx, "/deep/elsewhere/kept.txt")).toBe("kept");
  });

  it("a deleted folder takes its subtree with it", async () => {
    expect(await names(fx, "/deep/a/b")).toContain("up.txt");
    ok(await fx.web.call("DELETE", "/file", { json: { uris: [myUri("deep/a")] } }));
    await shows("the folder gone", async () => !(await exists(fx, "/deep/a/b/up.txt")));
    expect(await exists(fx, "/deep/a")).toBe(false);
    expect(await names(fx, "/deep")).toEqual(["elsewhere"]);
  });

  it("the gateway's own writes come back as no event: nothing is looked up again", async () => {
    for (const folder of ["/", "/own"]) {
      if (folder !== "/") expect((await raw(fx.url, "MKCOL", folder)).status).toBe(201);
      await names(fx, folder);
    }
    const writes: [string, string, Record<string, string>?][] = [
      ["PUT", "/own/a.txt"],
      ["PUT", "/own/b.txt"],
      ["MKCOL", "/own/sub"],
      ["MOVE", "/own/a.txt", { destination: `${fx.url}/own/sub/a.txt` }],
      ["COPY", "/own/b.txt", { destination: `${fx.url}/own/c.txt` }],
      ["DELETE", "/own/b.txt"],
    ];
    for (const [method, path, headers] of writes) {
      const r = await raw(fx.url, method, path, {
        headers,
        body: method === "PUT" ? "x" : undefined,
      });
      expect(r.status, `${method} ${path}`).toBeLessThan(300);
    }
    // Events come merged per debounce window: once another client's change is in, any echo
    // of the gateway's own writes would have come with it.
    await create(fx.web, "sentinel");
    await shows("the sentinel", listed(fx, "/", "sentinel"));
    await resetStats(fx.emu.url);
    expect(await names(fx, "/own")).toEqual(["c.txt", "sub"]);
    expect(await names(fx, "/own/sub")).toEqual(["a.txt"]);
    expect(await calls(fx.emu.url, R.list)).toBe(0);
    expect(await calls(fx.emu.url, R.info)).toBe(0);
  });

  it("keeps its client id in the state folder", async () => {
    const file = join(fx.stateDir, "client-id", `127.0.0.1_${new URL(fx.emu.url).port}-${EMAIL}`);
    expect((await readFile(file, "utf8")).trim()).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("a burst larger than Cloudreve's buffer", () => {
  const fx = useEventGateway({ eventDebounceMs: 500 });

  it("forgets everything: what was dropped shows too", async () => {
    await create(fx.web, "burst-a");
    await create(fx.web, "burst-b");
    await until("the subscription", () => fx.lines.some((l) => /following/.test(l.msg)), WAIT_MS);
    expect(await names(fx, "/burst-a")).toEqual([]);
    expect(await names(fx, "/burst-b")).toEqual([]);
    // The first 16 events fill the buffer; burst-b's come after them and are dropped.
    for (let i = 0; i < 16; i++) await create(fx.web, `burst-a/f${String(i).padStart(2, "0")}`);
    for (let i = 0; i < 4; i++) await create(fx.web, `burst-b/g${i}`);
    await shows("burst-b's folders", async () => (await names(fx, "/burst-b")).length === 4);
    expect(await names(fx, "/burst-a")).toHaveLength(16);
  });
});

describe("a stream the server resets", () => {
  // `subscribed` is 29 bytes: the stream breaks one byte into what comes next, a change's event.
  const fx = useEventGateway({}, {}, [
    { route: EVENTS, failWith: "reset", afterBytes: 30, times: 1 },
  ]);

  it("reconnects, forgets what it may have missed, and follows again", async () => {
    await until("the subscription", () => fx.lines.some((l) => /following/.test(l.msg)), WAIT_MS);
    expect(await names(fx, "/")).toEqual([]);
    await create(fx.web, "lost-event");
    await shows("the change whose event was lost", listed(fx, "/", "lost-event"));
    await until("the reconnect", async () => (await calls(fx.emu.url, EVENTS)) >= 2, WAIT_MS);
    expect(fx.lines.filter((l) => /change events stopped/.test(l.msg))).toHaveLength(1);
    await create(fx.web, "after-reconnect");
    await shows("a change after the reconnect", listed(fx, "/", "after-reconnect"));
  });
});

describe("a stream reopened once the access token has expired", () => {
  const fx = useEventGateway({}, {}, [
    { route: EVENTS, failWith: "reset", afterBytes: 30, times: 1 },
  ]);

  it("renews the token as any call does and follows again", async () => {
    await until("the subscription", () => fx.lines.some((l) => /following/.test(l.msg)), WAIT_MS);
    expect(await names(fx, "/")).toEqual([]);
    // By the server's clock the gateway's access token is dead; its own clock does not know.
    await advance(fx.web, 2 * 3600);
    await create(fx.web, "after-expiry");
    // The stream breaks at the change's event; nothing else asks the server meanwhile, so the
    // reopening meets the dead token first: refused as anonymous (401), renewed, opened.
    await until("the reopening", async () => (await calls(fx.emu.url, EVENTS)) >= 3, WAIT_MS);
    expect(await calls(fx.emu.url, R.refresh)).toBe(1);
    await shows("the change", listed(fx, "/", "after-expiry"));
    await create(fx.web, "followed");
    await shows("a change after the renewal", listed(fx, "/", "followed"));
  });
});

describe.each([
  ["turned off (40019)", { events: "disabled" as const }, 1],
  // The emulator counts only the routes it has.
  ["older than 4.11 (404)", { events: "absent" as const }, 0],
])("a Cloudreve without events: %s", (_name, emulator, counted) => {
  const fx = useEventGateway(emulator, { cacheTtlSeconds: 1 });

  it("says so once, asks once, and the short lifetime keeps the view correct", async () => {
    await until("the log line", () => fx.lines.some((l) => l.msg.includes(UNAVAILABLE)), WAIT_MS);
    expect(await names(fx, "/")).toEqual([]);
    await create(fx.web, "seen-by-ttl");
    await shows("the change, once its entry expired", listed(fx, "/", "seen-by-ttl"));
    expect(fx.lines.filter((l) => l.msg.includes(UNAVAILABLE))).toHaveLength(1);
    expect(fx.lines.find((l) => l.msg.includes(UNAVAILABLE))!.level).toBe(30); // info
    expect(await calls(fx.emu.url, EVENTS)).toBe(counted);
  });
});

describe("shutdown", () => {
  const fx = useEventGateway({});

  it("closes the subscription with the gateway", async () => {
    await until("the subscription", () => fx.lines.some((l) => /following/.test(l.msg)), WAIT_MS);
    await fx.gw.close();
    expect(fx.lines.filter((l) => /did not (finish|close) in time/.test(l.msg))).toEqual([]);
  });
});
