/**
 * §5.12 change events over HTTP: the request checks in their order, the wire format byte for
 * byte, what each operation emits, debounce and merging, the 16-slot drop, resume, the
 * subscriber's own changes left out, keep-alive, a disabled feature and a server before 4.11.
 * Nothing waits on or asserts a duration: each change is followed by waiting for what arrives.
 */
import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import {
  advance,
  type Api,
  code,
  type CrFile,
  myUri,
  ok,
  put,
  useEmulator,
} from "../helpers/emulator.js";
import { settled, until } from "../helpers/wait.js";

interface FsEvent {
  type: string;
  file_id: string;
  from: string;
  to: string;
}

const WAIT_MS = 10_000;
const ROUTE = "/api/v4/file/events";

/** One open event stream, read into `text` as it arrives. */
class EventStream {
  text = "";
  /** Events already handed out by next(). */
  private seen = 0;

  constructor(
    readonly res: Response,
    private readonly abort: AbortController,
  ) {
    void this.pump();
  }

  private async pump(): Promise<void> {
    const reader = this.res.body!.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        this.text += decoder.decode(value, { stream: true });
      }
    } catch {
      // closed by the test
    }
  }

  get frames(): { event: string; data: string }[] {
    return this.text
      .split("\n\n")
      .slice(0, -1)
      .map((frame) => {
        const [event, data] = frame.split("\n");
        return { event: event!.replace(/^event:/, ""), data: data!.replace(/^data:/, "") };
      });
  }

  get events(): FsEvent[] {
    return this.frames.filter((f) => f.event === "event").map((f) => JSON.parse(f.data));
  }

  /** The events of the next delivery: waits for at least `n`, then until no more come. */
  async next(n = 1): Promise<FsEvent[]> {
    await until(
      `${n} more events (have ${this.text})`,
      () => this.events.length >= this.seen + n,
      WAIT_MS,
    );
    await settled("the delivery", async () => this.events.length, WAIT_MS);
    const got = this.events.slice(this.seen);
    this.seen += got.length;
    return got;
  }

  close(): void {
    this.abort.abort();
  }
}

const open: EventStream[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

function request(api: Api, uri: string | undefined, clientId: string | undefined, auth = true) {
  const url = new URL(ROUTE, api.base);
  if (uri !== undefined) url.searchParams.set("uri", uri);
  const headers: Record<string, string> = {};
  if (auth && api.token) headers.authorization = `Bearer ${api.token}`;
  if (clientId !== undefined) headers["x-cr-client-id"] = clientId;
  const abort = new AbortController();
  return { abort, res: fetch(url, { headers, signal: abort.signal }) };
}

/** Subscribes and waits for the first frame (subscribed or resumed). */
async function subscribe(
  api: Api,
  path: string,
  clientId: string = randomUUID(),
): Promise<EventStream> {
  const { abort, res } = request(api, myUri(path), clientId);
  const stream = new EventStream(await res, abort);
  open.push(stream);
  expect(stream.res.status).toBe(200);
  await until("the first frame", () => stream.frames.length > 0, WAIT_MS);
  return stream;
}

/** A refused subscription: the envelope. */
async function refused(api: Api, uri?: string, clientId?: string, auth = true) {
  const r = await request(api, uri, clientId, auth).res;
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  return (await r.json()) as { code: number; msg: string; correlation_id?: string };
}

async function create(api: Api, path: string, type: "file" | "folder"): Promise<CrFile> {
  return ok(await api.call<CrFile>("POST", "/file/create", { json: { uri: myUri(path), type } }));
}

async function rename(api: Api, path: string, newName: string, headers = {}): Promise<void> {
  ok(
    await api.call("POST", "/file/rename", {
      json: { uri: myUri(path), new_name: newName },
      headers,
    }),
  );
}

async function move(api: Api, paths: string[], dst: string, copy = false): Promise<void> {
  ok(
    await api.call("POST", "/file/move", {
      json: { uris: paths.map(myUri), dst: myUri(dst), copy },
    }),
  );
}

async function remove(api: Api, paths: string[]): Promise<void> {
  ok(await api.call("DELETE", "/file", { json: { uris: paths.map(myUri) } }));
}

async function listing(api: Api, uri: string): Promise<CrFile[]> {
  return ok(
    await api.call<{ files: CrFile[] }>("GET", "/file", { query: { uri, page_size: 2000 } }),
  ).files;
}

const ev = (type: string, from: string, to = "") => ({ type, from, to });
const shape = (events: FsEvent[]) => events.map(({ type, from, to }) => ({ type, from, to }));

describe("§5.12 request checks, in order", () => {
  const on = useEmulator();
  const off = useEmulator({ events: "disabled" });
  const old = useEmulator({ events: "absent" });

  it("login first (401), then the feature (40019), whatever else is missing", async () => {
    expect((await refused(off.api, undefined, undefined, false)).code).toBe(401);
    const disabled = await refused(off.api);
    expect(disabled).toMatchObject({ code: 40019, msg: "This feature is not enabled" });
    expect(disabled.correlation_id).toBeDefined();
  });

  it("then uri (40001 binding), its parsing, the folder (40016), the client id", async () => {
    await create(on.api, "checks/file.txt", "file");
    const noUri = await refused(on.api);
    expect(noUri).toMatchObject({ code: 40001, msg: "Uri cannot be empty" });
    expect(noUri.correlation_id).toBeUndefined();
    expect(await refused(on.api, "http://example.com/x")).toMatchObject({
      code: 40001,
      msg: "Unknown uri",
    });
    expect(await refused(on.api, myUri("checks/none"))).toMatchObject({
      code: 40016,
      msg: "Requested uri not available",
    });
    expect((await refused(on.api, myUri("checks/file.txt"))).code).toBe(40016);
    expect(await refused(on.api, myUri("checks"))).toMatchObject({
      code: 40001,
      msg: "Client ID is required",
    });
    for (const bad of ["abc", "{" + randomUUID(), "URN:UUID:" + randomUUID(), randomUUID() + "0"]) {
      expect(await refused(on.api, myUri("checks"), bad), bad).toMatchObject({
        code: 40001,
        msg: "Invalid client ID",
      });
    }
  });

  it("takes every form of UUID gofrs/uuid reads", async () => {
    const id = randomUUID();
    const hex = id.replace(/-/g, "");
    for (const form of [id.toUpperCase(), hex, `{${id}}`, `{${hex}}`, `urn:uuid:${id}`]) {
      const s = await subscribe(on.api, "checks", form);
      expect(s.frames[0]!.event, form).toMatch(/^(subscribed|resumed)$/);
    }
  });

  it("only GET is routed; a server before 4.11 has no route at all", async () => {
    const post = await on.api.call("POST", "/file/events", { query: { uri: myUri("") } });
    expect(post.status).toBe(404);
    const r = await request(old.api, myUri(""), randomUUID()).res;
    expect(r.status).toBe(404);
    expect(await r.text()).toBe("404 page not found");
  });
});

describe("§5.12 wire format and what each operation emits", () => {
  const ctx = useEmulator({ eventDebounceMs: 100 });

  it("headers and frames byte for byte; & is \\u0026; paths decoded", async () => {
    const s = await subscribe(ctx.api, "");
    expect(s.res.headers.get("content-type")).toBe("text/event-stream;charset=utf-8");
    expect(s.res.headers.get("cache-control")).toBe("no-cache");
    expect(s.res.headers.get("x-accel-buffering")).toBe("no");
    expect(s.text).toBe("event:subscribed\ndata:<nil>\n\n");
    const f = await put(ctx.api, "wire/a&b ü.txt", "x");
    const events = await s.next(2);
    const folder = events[0]!;
    expect(s.text).toBe(
      "event:subscribed\ndata:<nil>\n\n" +
        `event:event\ndata:{"type":"create","file_id":"${folder.file_id}","from":"/wire","to":""}\n\n` +
        `event:event\ndata:{"type":"create","file_id":"${f.id}","from":"/wire/a\\u0026b ü.txt","to":""}\n\n`,
    );
  });

  it("create: one event per folder mkdir -p makes, paths relative to the subscribed folder", async () => {
    await create(ctx.api, "w1", "folder");
    const s = await subscribe(ctx.api, "w1");
    await create(ctx.api, "w1/a/b/c", "folder");
    expect(shape(await s.next(3))).toEqual([
      ev("create", "/a"),
      ev("create", "/a/b"),
      ev("create", "/a/b/c"),
    ]);
    const f = await create(ctx.api, "w1/a/b/c/deep.txt", "file");
    const [created] = await s.next();
    expect(created).toEqual({ type: "create", file_id: f.id, from: "/a/b/c/deep.txt", to: "" });
    // Creating what exists already changes nothing: the next delivery is the sentinel's alone.
    await create(ctx.api, "w1/a", "folder");
    await create(ctx.api, "w1/sentinel", "folder");
    expect(shape(await s.next())).toEqual([ev("create", "/sentinel")]);
  });

  it("an upload: the placeholder is a create, its completion a modify; PUT content a modify", async () => {
    await create(ctx.api, "w2", "folder");
    const s = await subscribe(ctx.api, "w2");
    const session = ok(
      await ctx.api.call<{ session_id: string }>("PUT", "/file/upload", {
        json: { uri: myUri("w2/up/new.bin"), size: 3 },
      }),
    );
    expect(shape(await s.next(2))).toEqual([ev("create", "/up"), ev("create", "/up/new.bin")]);
    ok(
      await ctx.api.call("POST", `/file/upload/${session.session_id}/0`, {
        body: new Uint8Array([1, 2, 3]),
        headers: { "content-type": "application/octet-stream" },
      }),
    );
    expect(shape(await s.next())).toEqual([ev("modify", "/up/new.bin")]);
    const f = await put(ctx.api, "w2/up/new.bin", "changed");
    expect(await s.next()).toEqual([
      { type: "modify", file_id: f.id, from: "/up/new.bin", to: "" },
    ]);
  });

  it("rename; move inside, out of and into the subscribed folder", async () => {
    await create(ctx.api, "w3/in/sub", "folder");
    await create(ctx.api, "outside", "folder");
    const f = await put(ctx.api, "w3/in/f.txt", "f");
    const s = await subscribe(ctx.api, "w3");
    await rename(ctx.api, "w3/in/f.txt", "g.txt");
    expect(await s.next()).toEqual([
      { type: "rename", file_id: f.id, from: "/in/f.txt", to: "/in/g.txt" },
    ]);
    await move(ctx.api, ["w3/in/g.txt"], "w3/in/sub");
    expect(shape(await s.next())).toEqual([ev("rename", "/in/g.txt", "/in/sub/g.txt")]);
    await move(ctx.api, ["w3/in/sub/g.txt"], "outside");
    expect(shape(await s.next())).toEqual([ev("delete", "/in/sub/g.txt")]);
    await move(ctx.api, ["outside/g.txt"], "w3");
    expect(await s.next()).toEqual([{ type: "create", file_id: f.id, from: "/g.txt", to: "" }]);
  });

  it("delete: the top-level items only; copy: a create with the new id", async () => {
    await put(ctx.api, "w4/tree/a/1.txt", "1");
    await put(ctx.api, "w4/tree/2.txt", "2");
    const f = await put(ctx.api, "w4/c.txt", "c");
    const s = await subscribe(ctx.api, "w4");
    await remove(ctx.api, ["w4/tree", "w4/c.txt"]);
    expect(shape(await s.next(2))).toEqual([ev("delete", "/tree"), ev("delete", "/c.txt")]);
    const g = await put(ctx.api, "w4/d.txt", "d");
    await s.next();
    await create(ctx.api, "w4/copies", "folder");
    await s.next();
    await move(ctx.api, ["w4/d.txt"], "w4/copies", true);
    const [copied] = await s.next();
    expect(shape([copied!])).toEqual([ev("create", "/copies/d.txt")]);
    expect(copied!.file_id).not.toBe(g.id);
    expect(f.id).not.toBe(g.id);
  });

  it("restore: a create with the original id whose path ends in the trash name", async () => {
    const f = await put(ctx.api, "w5/r.txt", "r");
    await remove(ctx.api, ["w5/r.txt"]);
    const s = await subscribe(ctx.api, "w5");
    const item = (await listing(ctx.api, "cloudreve://trash")).find((x) => x.id === f.id)!;
    const trashName = item.path!.split("/").at(-1)!;
    ok(await ctx.api.call("POST", "/file/restore", { json: { uris: [item.path] } }));
    expect(await s.next()).toEqual([
      { type: "create", file_id: f.id, from: `/${trashName}`, to: "" },
    ]);
  });

  it("cancel: a new file's session leaves nothing; an existing file's is a modify", async () => {
    await put(ctx.api, "w6/old.txt", "old");
    const s = await subscribe(ctx.api, "w6");
    const start = (path: string, extra = {}) =>
      ctx.api.call<{ session_id: string }>("PUT", "/file/upload", {
        json: { uri: myUri(path), size: 5, ...extra },
      });
    const cancel = (id: string, path: string) =>
      ctx.api.call("DELETE", "/file/upload", { json: { id, uri: myUri(path) } });
    const fresh = ok(await start("w6/new.txt"));
    ok(await cancel(fresh.session_id, "w6/new.txt"));
    await create(ctx.api, "w6/sentinel", "folder");
    expect(shape(await s.next())).toEqual([ev("create", "/sentinel")]);
    const version = ok(await start("w6/old.txt", { entity_type: "version" }));
    ok(await cancel(version.session_id, "w6/old.txt"));
    expect(shape(await s.next())).toEqual([ev("modify", "/old.txt")]);
  });

  it("metadata patches and failed operations emit nothing", async () => {
    await put(ctx.api, "w7/a.txt", "a");
    await put(ctx.api, "w7/b.txt", "b");
    const s = await subscribe(ctx.api, "w7");
    ok(
      await ctx.api.call("PATCH", "/file/metadata", {
        json: { uris: [myUri("w7/a.txt")], patches: [{ key: "tag:x", value: "" }] },
      }),
    );
    const clash = await ctx.api.call("POST", "/file/rename", {
      json: { uri: myUri("w7/a.txt"), new_name: "b.txt" },
    });
    expect(code(clash)).toBe(40004);
    await create(ctx.api, "w7/sentinel", "folder");
    expect(shape(await s.next())).toEqual([ev("create", "/sentinel")]);
  });

  it("descendants deep below the subscribed folder are included", async () => {
    const s = await subscribe(ctx.api, "");
    await put(ctx.api, "deep/x/y/z.txt", "z");
    expect(shape(await s.next(4))).toEqual([
      ev("create", "/deep"),
      ev("create", "/deep/x"),
      ev("create", "/deep/x/y"),
      ev("create", "/deep/x/y/z.txt"),
    ]);
  });
});

describe("§5.12 debounce, merging and the 16-slot drop", () => {
  const ctx = useEmulator({ eventDebounceMs: 600 });

  it("each event restarts the debounce: changes 100 ms apart arrive together at the end", async () => {
    await create(ctx.api, "d1", "folder");
    const s = await subscribe(ctx.api, "d1");
    const names = Array.from({ length: 12 }, (_, i) => `f${i}`);
    for (const name of names) {
      expect(s.events).toEqual([]);
      await create(ctx.api, `d1/${name}`, "folder");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(shape(await s.next(12))).toEqual(names.map((n) => ev("create", `/${n}`)));
  });

  it("create + modify is a create; create + delete and a rename there and back are nothing", async () => {
    await put(ctx.api, "d2/stay.txt", "s");
    const s = await subscribe(ctx.api, "d2");
    const f = await create(ctx.api, "d2/new.txt", "file");
    await put(ctx.api, "d2/new.txt", "content");
    await put(ctx.api, "d2/gone.txt", "g");
    await remove(ctx.api, ["d2/gone.txt"]);
    await rename(ctx.api, "d2/stay.txt", "moved.txt");
    await rename(ctx.api, "d2/moved.txt", "stay.txt");
    expect(await s.next()).toEqual([{ type: "create", file_id: f.id, from: "/new.txt", to: "" }]);
  });

  it("a flush of more than 16 events sends 16 and drops the rest silently", async () => {
    await create(ctx.api, "d3", "folder");
    const s = await subscribe(ctx.api, "d3");
    const names = Array.from({ length: 20 }, (_, i) => `n${String(i).padStart(2, "0")}`);
    for (const name of names) await create(ctx.api, `d3/${name}`, "folder");
    expect(shape(await s.next(16))).toEqual(names.slice(0, 16).map((n) => ev("create", `/${n}`)));
    await create(ctx.api, "d3/after", "folder");
    expect(shape(await s.next())).toEqual([ev("create", "/after")]);
  });
});

describe("§5.12 resume, own changes, keep-alive", () => {
  const ctx = useEmulator({ eventDebounceMs: 300, eventKeepAliveMs: 50 });

  it("the same client id on the same folder resumes; another folder or 14 days later subscribes", async () => {
    await create(ctx.api, "r1", "folder");
    await create(ctx.api, "r2", "folder");
    const id = randomUUID();
    const first = await subscribe(ctx.api, "r1", id);
    expect(first.frames[0]!.event).toBe("subscribed");
    first.close();
    expect((await subscribe(ctx.api, "r1", id)).frames[0]!.event).toBe("resumed");
    expect((await subscribe(ctx.api, "r2", id)).frames[0]!.event).toBe("subscribed");
    for (const s of open.splice(0)) s.close();
    await advance(ctx.api, 14 * 86_400 + 3600);
    expect((await subscribe(ctx.api, "r1", id)).frames[0]!.event).toBe("subscribed");
  });

  it("what changed while offline arrives after resuming, merged", async () => {
    await create(ctx.api, "r3", "folder");
    const id = randomUUID();
    (await subscribe(ctx.api, "r3", id)).close();
    await put(ctx.api, "r3/temp.txt", "t");
    await remove(ctx.api, ["r3/temp.txt"]);
    await create(ctx.api, "r3/kept", "folder");
    const s = await subscribe(ctx.api, "r3", id);
    expect(s.frames[0]!.event).toBe("resumed");
    expect(shape(await s.next())).toEqual([ev("create", "/kept")]);
  });

  it("changes made with the subscriber's own client id are left out", async () => {
    await put(ctx.api, "o1/mine.txt", "m");
    const id = randomUUID();
    const s = await subscribe(ctx.api, "o1", id);
    await rename(ctx.api, "o1/mine.txt", "still-mine.txt", { "x-cr-client-id": id });
    await rename(ctx.api, "o1/still-mine.txt", "theirs.txt", { "x-cr-client-id": randomUUID() });
    expect(shape(await s.next())).toEqual([ev("rename", "/still-mine.txt", "/theirs.txt")]);
  });

  it("keep-alive frames come while nothing changes", async () => {
    const s = await subscribe(ctx.api, "");
    await until("a keep-alive", () => s.text.includes("event:keep-alive\ndata:<nil>\n\n"), WAIT_MS);
  });
});

describe("§5.12 events pending at a disconnect", () => {
  // A debounce longer than the test can wait: what arrives was flushed by the disconnect.
  const ctx = useEmulator({ eventDebounceMs: 600_000 });

  it("arrive at once after resuming", async () => {
    await create(ctx.api, "p1", "folder");
    const id = randomUUID();
    const first = await subscribe(ctx.api, "p1", id);
    await create(ctx.api, "p1/pending", "folder");
    first.close();
    const s = await subscribe(ctx.api, "p1", id);
    expect(s.frames[0]!.event).toBe("resumed");
    expect(shape(await s.next())).toEqual([ev("create", "/pending")]);
  });
});
