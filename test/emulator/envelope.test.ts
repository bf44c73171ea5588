import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Api, myUri, useEmulator } from "../helpers/emulator.js";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

describe("§1.1 envelope shape and HTTP status", () => {
  const ctx = useEmulator();

  it("§1.1 a success is HTTP 200 with {code:0, msg, data}", async () => {
    const r = await ctx.api.call("GET", "/file", { query: { uri: "cloudreve://my" } });
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(0);
    expect(typeof r.json.msg).toBe("string");
    expect(r.json.data).toBeTypeOf("object");
    expect(r.json).not.toHaveProperty("aggregated_error");
    expect(r.json).not.toHaveProperty("correlation_id");
    expect(r.json).not.toHaveProperty("error");
  });

  it("§1.1 a not-found error is HTTP 200 with code 40016, msg and a correlation_id", async () => {
    const r = await ctx.api.call("GET", "/file", { query: { uri: myUri("does-not-exist") } });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    expect(r.json.code).toBe(40016);
    expect(typeof r.json.msg).toBe("string");
    expect(r.json.msg).not.toBe("");
    expect(r.json.correlation_id).toMatch(UUID_RE);
    expect(r.json).not.toHaveProperty("data");
  });

  it("§1.1 a login-required error is HTTP 200 with code 401 and a correlation_id", async () => {
    const anon = new Api(ctx.emu.url);
    const r = await anon.call("GET", "/user/me");
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(401);
    expect(r.json.correlation_id).toMatch(UUID_RE);
  });

  it("§1.1 every error gets its own generated correlation_id", async () => {
    const a = await ctx.api.call("GET", "/file", { query: { uri: myUri("nope-a") } });
    const b = await ctx.api.call("GET", "/file", { query: { uri: myUri("nope-a") } });
    expect(a.json.correlation_id).toMatch(UUID_RE);
    expect(b.json.correlation_id).toMatch(UUID_RE);
    expect(a.json.correlation_id).not.toBe(b.json.correlation_id);
  });

  it("§0/§1.1 a UUID sent in X-Cr-Correlation-Id is echoed as correlation_id", async () => {
    const id = randomUUID();
    const r = await ctx.api.call("GET", "/file", {
      query: { uri: myUri("missing-corr") },
      headers: { "X-Cr-Correlation-Id": id },
    });
    expect(r.json.code).toBe(40016);
    expect(r.json.correlation_id).toBe(id);
  });

  it("§0 a non-UUID X-Cr-Correlation-Id is replaced by a generated UUID", async () => {
    const r = await ctx.api.call("GET", "/file", {
      query: { uri: myUri("missing-corr") },
      headers: { "X-Cr-Correlation-Id": "not-a-uuid" },
    });
    expect(r.json.code).toBe(40016);
    expect(r.json.correlation_id).not.toBe("not-a-uuid");
    expect(r.json.correlation_id).toMatch(UUID_RE);
  });

  it("§1.1 the error field is absent (release mode)", async () => {
    const r = await ctx.api.call("GET", "/file", { query: { uri: myUri("nope") } });
    expect(r.json.code).toBe(40016);
    expect(r.json).not.toHaveProperty("error");
  });
});

describe("§1.1 parameter binding errors are 40001 without correlation_id", () => {
  const ctx = useEmulator();

  it("§1.1 missing uri on GET /file → 40001, HTTP 200, no correlation_id", async () => {
    const r = await ctx.api.call("GET", "/file");
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40001);
    expect(typeof r.json.msg).toBe("string");
    expect(r.json).not.toHaveProperty("correlation_id");
  });

  it("§1.1 non-numeric page_size → 40001 without correlation_id", async () => {
    const r = await ctx.api.call("GET", "/file", {
      query: { uri: "cloudreve://my", page_size: "abc" },
    });
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40001);
    expect(r.json).not.toHaveProperty("correlation_id");
  });

  it("§1.1 malformed JSON body → 40001 'Parameter error' without correlation_id", async () => {
    const r = await ctx.api.call("POST", "/file/create", {
      body: '{"uri": "cloudreve://my/x", "type": ',
      headers: { "content-type": "application/json" },
    });
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40001);
    expect(r.json.msg).toBe("Parameter error");
    expect(r.json).not.toHaveProperty("correlation_id");
  });

  it("§1.1 a wrong JSON type → 40001 'JSON marshall error' without correlation_id", async () => {
    const r = await ctx.api.call("POST", "/file/create", {
      json: { uri: 12345, type: "folder" },
    });
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40001);
    expect(r.json.msg).toBe("JSON marshall error");
    expect(r.json).not.toHaveProperty("correlation_id");
  });

  it("§1.1 missing required JSON field (DELETE /file without uris) → 40001", async () => {
    const r = await ctx.api.call("DELETE", "/file", { json: {} });
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40001);
    expect(r.json).not.toHaveProperty("correlation_id");
  });
});

describe("§0 Cache-Control and §1.1 unknown routes", () => {
  const ctx = useEmulator();

  it("§0 Cache-Control: private, no-cache on a successful /api/v4 response", async () => {
    const r = await ctx.api.call("GET", "/file", { query: { uri: "cloudreve://my" } });
    expect(r.json.code).toBe(0);
    expect(r.headers.get("cache-control")).toBe("private, no-cache");
  });

  it("§0 Cache-Control: private, no-cache on error and binding-error responses", async () => {
    const e = await ctx.api.call("GET", "/file", { query: { uri: myUri("missing") } });
    expect(e.json.code).toBe(40016);
    expect(e.headers.get("cache-control")).toBe("private, no-cache");
    const b = await ctx.api.call("GET", "/file");
    expect(b.json.code).toBe(40001);
    expect(b.headers.get("cache-control")).toBe("private, no-cache");
  });

  it("§0 Cache-Control: private, no-cache on anonymous site routes", async () => {
    const anon = new Api(ctx.emu.url);
    const r = await anon.call("GET", "/site/ping");
    expect(r.json.code).toBe(0);
    expect(r.headers.get("cache-control")).toBe("private, no-cache");
  });

  it("§1.1 an unknown /api/v4 route → plain-text HTTP 404, not a JSON envelope", async () => {
    const r = await ctx.api.call("GET", "/no/such/route");
    expect(r.status).toBe(404);
    expect(r.json).toBeUndefined();
    expect(r.headers.get("content-type") ?? "").toMatch(/^text\/plain/);
  });

  it("§1.1 unknown routes outside /api/v4 under /api are plain-text 404 too", async () => {
    for (const path of ["/api/nope", "/api/v3/file", "/api/v4"]) {
      const res = await fetch(`${ctx.emu.url}${path}`);
      const text = await res.text();
      expect(res.status, path).toBe(404);
      expect(() => JSON.parse(text) as unknown, path).toThrow();
    }
  });

  it("§1.1 a known path with an unrouted method → plain-text 404", async () => {
    const r = await ctx.api.call("PATCH", "/site/ping");
    expect(r.status).toBe(404);
    expect(r.json).toBeUndefined();
  });
});

describe("§1.3 aggregated errors (40081)", () => {
  const ctx = useEmulator();

  it("§1.3 a single missing URI on DELETE /file → 40081 wrapping 40016 keyed by the URI", async () => {
    const uri = myUri("missing-one");
    const r = await ctx.api.call("DELETE", "/file", { json: { uris: [uri] } });
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40081);
    const agg = r.json.aggregated_error!;
    expect(Object.keys(agg)).toEqual([uri]);
    const inner = agg[uri]!;
    expect(inner.code).toBe(40016);
    expect(typeof inner.msg).toBe("string");
    expect(inner.correlation_id).toMatch(UUID_RE);
    // exactly one failed item: the outer msg is the inner error's text
    expect(r.json.msg).toBe(inner.msg);
  });

  it("§1.3 the aggregate key is the re-serialised URI (trailing slash trimmed)", async () => {
    const r = await ctx.api.call("DELETE", "/file", {
      json: { uris: ["cloudreve://my/missing%20two/"] },
    });
    expect(r.json.code).toBe(40081);
    expect(Object.keys(r.json.aggregated_error!)).toEqual(["cloudreve://my/missing%20two"]);
    expect(r.json.aggregated_error!["cloudreve://my/missing%20two"]!.code).toBe(40016);
  });

  it("§1.3 two failures → msg 'One or more operation failed' and one entry per URI", async () => {
    const a = myUri("gone-a");
    const b = myUri("gone-b");
    const r = await ctx.api.call("DELETE", "/file", { json: { uris: [a, b] } });
    expect(r.json.code).toBe(40081);
    expect(r.json.msg).toBe("One or more operation failed");
    expect(Object.keys(r.json.aggregated_error!).sort()).toEqual([a, b].sort());
    expect(r.json.aggregated_error![a]!.code).toBe(40016);
    expect(r.json.aggregated_error![b]!.code).toBe(40016);
  });

  it("§1.3 items that pass are still processed; only failures are aggregated", async () => {
    const ok = myUri("env-batch/keep-me-not");
    const created = await ctx.api.call("POST", "/file/create", {
      json: { uri: ok, type: "folder" },
    });
    expect(created.json.code).toBe(0);
    const missing = myUri("env-batch/absent");
    const r = await ctx.api.call("DELETE", "/file", { json: { uris: [ok, missing] } });
    expect(r.json.code).toBe(40081);
    expect(Object.keys(r.json.aggregated_error!)).toEqual([missing]);
    const list = await ctx.api.call<{ files: { name: string }[] }>("GET", "/file", {
      query: { uri: myUri("env-batch") },
    });
    expect(list.json.code).toBe(0);
    expect(list.json.data!.files.map((f) => f.name)).not.toContain("keep-me-not");
  });
});

describe("§1.2 40074 when a batch exceeds max_batch_size", () => {
  const ctx = useEmulator({ maxBatchSize: 2 });

  it("§1.2 DELETE /file with 3 uris and maxBatchSize 2 → 40074", async () => {
    const r = await ctx.api.call("DELETE", "/file", {
      json: { uris: [myUri("b1"), myUri("b2"), myUri("b3")] },
    });
    expect(r.status).toBe(200);
    expect(r.json.code).toBe(40074);
    expect(r.json).not.toHaveProperty("aggregated_error");
  });

  it("§1.2 a batch of exactly max_batch_size is accepted (per-item errors instead)", async () => {
    const r = await ctx.api.call("DELETE", "/file", {
      json: { uris: [myUri("b1"), myUri("b2")] },
    });
    expect(r.json.code).toBe(40081);
  });

  it("§1.2 the limit also applies to POST /file/move", async () => {
    const dst = await ctx.api.call("POST", "/file/create", {
      json: { uri: myUri("dst"), type: "folder" },
    });
    expect(dst.json.code).toBe(0);
    const r = await ctx.api.call("POST", "/file/move", {
      json: { uris: [myUri("m1"), myUri("m2"), myUri("m3")], dst: myUri("dst"), copy: false },
    });
    expect(r.json.code).toBe(40074);
  });
});
