/**
 * Every emulator reply the gateway decodes must parse with the client's schemas
 * (src/cloudreve/types.ts). A failure here means the emulator or the schema disagrees with
 * docs/cloudreve-api.md; the test does not paper over either.
 */
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { decodeBitset, FilesystemCapability, NavCapability } from "../helpers/bitset.js";
import {
  BatchErrorEnvelopeSchema,
  CapacitySchema,
  EnvelopeSchema,
  FileSchema,
  FileUrlResponseSchema,
  ListResponseSchema,
  LockConflictEnvelopeSchema,
  LoginReplySchema,
  PingSchema,
  PrepareLoginSchema,
  SiteConfigBasicSchema,
  SiteConfigExplorerSchema,
  SiteConfigLoginSchema,
  successOf,
  timestampToEpochMs,
  UploadSessionSchema,
  UserSchema,
} from "../../src/cloudreve/types.js";
import { EMAIL, PASSWORD, myUri, useEmulator } from "../helpers/emulator.js";
import type { ApiReply } from "../helpers/emulator.js";

/** Parses a whole reply body with `schema`; on mismatch fails with the issues and the raw body. */
function shape<S extends z.ZodType>(schema: S, reply: ApiReply): z.infer<S> {
  expect(reply.status, reply.text).toBe(200);
  const r = schema.safeParse(reply.json);
  if (!r.success) {
    throw new Error(
      `reply does not match the schema:\n${JSON.stringify(r.error.issues, null, 2)}\nbody: ${reply.text}`,
    );
  }
  return r.data;
}

/** Parses a code-0 reply and returns its typed `data`. */
function data<S extends z.ZodType>(schema: S, reply: ApiReply): z.infer<S> {
  return shape(successOf(schema), reply).data as z.infer<S>;
}

describe("emulator replies parse with the client schemas (cursor mode)", () => {
  const ctx = useEmulator();
  const folder = myUri("shapes");
  const file = myUri("shapes/a b.txt");

  it("site ping, basic and explorer config, prepare", async () => {
    const { api } = ctx;
    expect(data(PingSchema, await api.call("GET", "/site/ping", { auth: false }))).toMatch(/^4\./);
    const basic = data(SiteConfigBasicSchema, await api.call("GET", "/site/config/basic"));
    expect(basic).toBeTypeOf("object");
    const login = data(SiteConfigLoginSchema, await api.call("GET", "/site/config/login"));
    expect(login.login_captcha ?? false).toBe(false);
    const explorer = data(SiteConfigExplorerSchema, await api.call("GET", "/site/config/explorer"));
    // Optional in the schema (fallback 3000), but the emulator claims §7.3: it must send it.
    expect(explorer.max_batch_size).toBe(3000);
    const prep = data(
      PrepareLoginSchema,
      await api.call("GET", "/session/prepare", { query: { email: EMAIL }, auth: false }),
    );
    expect(prep.password_enabled).toBe(true);
  });

  it("login", async () => {
    const reply = shape(
      LoginReplySchema,
      await ctx.api.call("POST", "/session/token", {
        json: { email: EMAIL, password: PASSWORD },
        auth: false,
      }),
    );
    expect(reply.code).toBe(0);
    if (reply.code !== 0) return;
    expect(reply.data.user.email).toBe(EMAIL);
    expect(timestampToEpochMs(reply.data.token.access_expires)).toBeGreaterThan(Date.now());
    expect(timestampToEpochMs(reply.data.token.refresh_expires)).toBeGreaterThan(
      timestampToEpochMs(reply.data.token.access_expires),
    );
  });

  it("user/me and capacity", async () => {
    const me = data(UserSchema, await ctx.api.call("GET", "/user/me"));
    expect(me.email).toBe(EMAIL);
    expect(me.group?.permission).toBeDefined();
    expect(() => decodeBitset(me.group!.permission!)).not.toThrow();
    const cap = data(CapacitySchema, await ctx.api.call("GET", "/user/capacity"));
    expect(cap.total).toBeGreaterThan(0);
    expect(cap.used).toBeGreaterThanOrEqual(0);
  });

  it("create a folder and a file", async () => {
    const dir = data(
      FileSchema,
      await ctx.api.call("POST", "/file/create", { json: { uri: folder, type: "folder" } }),
    );
    expect(dir.type).toBe(1);
    expect(dir.name).toBe("shapes");
    expect(dir.path).toBe(folder);
    const f = data(
      FileSchema,
      await ctx.api.call("POST", "/file/create", { json: { uri: file, type: "file" } }),
    );
    expect(f.type).toBe(0);
    expect(f.size).toBe(0);
    expect(f.path).toBe("cloudreve://my/shapes/a%20b.txt");
    expect(f.owned).toBe(true);
    expect(f.capability).toBe(FilesystemCapability.my);
  });

  it("list the root and the folder", async () => {
    const root = data(
      ListResponseSchema,
      await ctx.api.call("GET", "/file", { query: { uri: "cloudreve://my" } }),
    );
    expect(root.parent.path).toBe("cloudreve://my/");
    expect(root.parent.name).toBe("");
    expect(root.pagination.is_cursor).toBe(true);
    expect(root.files.some((f) => f.name === "shapes" && f.type === 1)).toBe(true);
    expect(decodeBitset(root.props.capability).has(NavCapability.UPLOAD_FILE)).toBe(true);
    expect(root.storage_policy).toBeDefined();

    const sub = data(
      ListResponseSchema,
      await ctx.api.call("GET", "/file", { query: { uri: folder, page_size: 1 } }),
    );
    expect(sub.files.map((f) => f.name)).toEqual(["a b.txt"]);
    expect(sub.pagination.next_token).toBeUndefined();
  });

  it("file info, plain and extended", async () => {
    const info = data(
      FileSchema,
      await ctx.api.call("GET", "/file/info", { query: { uri: file } }),
    );
    expect(info.name).toBe("a b.txt");
    const ext = data(
      FileSchema,
      await ctx.api.call("GET", "/file/info", { query: { uri: file, extended: true } }),
    );
    expect(ext.extended_info?.storage_used).toBe(0);
  });

  it("upload session, the lock it takes, and its cancel", async () => {
    const target = myUri("shapes/up.bin");
    const s = data(
      UploadSessionSchema,
      await ctx.api.call("PUT", "/file/upload", {
        json: { uri: target, size: 5, last_modified: Date.now() },
      }),
    );
    expect(s.uri).toBe(target);
    expect(s.expires * 1000).toBeGreaterThan(Date.now());
    expect(s.callback_secret.length).toBeGreaterThan(0);

    // The session locks the path (§5.11): a rename is refused with 40073 and conflict details.
    const locked = shape(
      LockConflictEnvelopeSchema,
      await ctx.api.call("POST", "/file/rename", { json: { uri: target, new_name: "x.bin" } }),
    );
    expect(locked.data[0]?.owner.application.type).toBe("upload");

    const cancel = shape(
      EnvelopeSchema,
      await ctx.api.call("DELETE", "/file/upload", { json: { id: s.session_id, uri: target } }),
    );
    expect(cancel.code).toBe(0);
  });

  it("file url", async () => {
    const urls = data(
      FileUrlResponseSchema,
      await ctx.api.call("POST", "/file/url", { json: { uris: [file] } }),
    );
    expect(urls.urls).toHaveLength(1);
    expect(urls.urls[0]?.url).toMatch(/\/api\/v4\/file\/content\//);
    if (urls.expires !== null) {
      expect(timestampToEpochMs(urls.expires)).toBeGreaterThan(Date.now());
    }
  });

  it("delete of a missing path is a 40081 wrapping 40016", async () => {
    const missing = myUri("shapes/missing");
    const env = shape(
      BatchErrorEnvelopeSchema,
      await ctx.api.call("DELETE", "/file", { json: { uris: [missing] } }),
    );
    expect(env.aggregated_error[missing]?.code).toBe(40016);
  });

  it("soft delete, then the trash listing", async () => {
    const del = shape(
      EnvelopeSchema,
      await ctx.api.call("DELETE", "/file", { json: { uris: [file] } }),
    );
    expect(del.code).toBe(0);
    const trash = data(
      ListResponseSchema,
      await ctx.api.call("GET", "/file", { query: { uri: "cloudreve://trash" } }),
    );
    const item = trash.files.find((f) => f.name === "a b.txt");
    expect(item?.metadata?.["sys:restore_uri"]).toBe(file);
    expect(item?.path?.startsWith("cloudreve://trash/")).toBe(true);
    expect(trash.props.capability).toBe(FilesystemCapability.trash);
  });
});

describe("emulator replies parse with the client schemas (offset mode)", () => {
  const ctx = useEmulator({ pagination: "offset", maxPageSize: 2 });

  it("paged listing with total_items", async () => {
    for (const name of ["p1", "p2", "p3"]) {
      data(
        FileSchema,
        await ctx.api.call("POST", "/file/create", {
          json: { uri: myUri(`paged/${name}`), type: "file" },
        }),
      );
    }
    const page0 = data(
      ListResponseSchema,
      await ctx.api.call("GET", "/file", { query: { uri: myUri("paged"), page_size: 100 } }),
    );
    // page_size above max_page_size is clamped, not rejected (§4.1).
    expect(page0.props.max_page_size).toBe(2);
    expect(page0.files).toHaveLength(2);
    expect(page0.pagination.total_items).toBe(3);
    expect(page0.pagination.next_token).toBeUndefined();
    const page1 = data(
      ListResponseSchema,
      await ctx.api.call("GET", "/file", {
        query: { uri: myUri("paged"), page_size: 2, page: 1 },
      }),
    );
    expect(page1.pagination.page).toBe(1);
    expect(page1.files.map((f) => f.name)).toEqual(["p3"]);
  });
});
