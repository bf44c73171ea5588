import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  decodeBitset,
  FilesystemCapability,
  GroupPermission,
  NavCapability,
} from "../helpers/bitset.js";
import {
  BatchErrorEnvelopeSchema,
  CapacitySchema,
  EnvelopeSchema,
  FileSchema,
  FileUrlResponseSchema,
  LockConflictDetailSchema,
  LockConflictEnvelopeSchema,
  ListResponseSchema,
  LoginReplySchema,
  LoginResponseSchema,
  PingSchema,
  PrepareLoginSchema,
  SiteConfigBasicSchema,
  SiteConfigExplorerSchema,
  SiteConfigLoginSchema,
  successOf,
  TimestampSchema,
  TokenSchema,
  TwoFactorRequiredSchema,
  UploadSessionSchema,
  UserSchema,
  timestampToEpochMs,
} from "../../src/cloudreve/types.js";

// -----------------------------------------------------------------------------------------------
// (a) Response examples of the seed notes (Pro 4.0.0-alpha.9), copied verbatim.

const SEED_PING = String.raw`{
    "code":0,
    "data":"4.0.0",
    "msg":""
}`;

const SEED_SITE_CONFIG = String.raw`{
    "code":0,
    "data":{
        "instance_id":"{请求ID}",
        "title":"Cloudreve",
        "themes":"{json}",
        "default_theme":"#1976d2",
        "site_notice":"",
        "user":{
            "id":"3ktq",
            "nickname":"",
            "created_at":"0001-01-01T00:00:00Z",
            "anonymous":true,
            "group":{
                "id":"dqcz",
                "name":"Anonymous",
                "permission":"gg=="
                }
            },
        "logo":"/statics/static/logo.svg",
        "logo_light":"/statics/static/logo_light.svg",
        "shop_nav_enabled":true,
        "captcha_ReCaptchaKey":"defaultKey",
        "captcha_type":"turnstile",
        "turnstile_site_id":"{key}"
        },
    "msg":""
}`;

const SEED_PREPARE_OK = String.raw`{
    "code":0,
    "data":{
        "webauthn_enabled":true,
        "sso_enabled":false,
        "password_enabled":true,
        "qq_enabled":false
        },
    "msg":""
}`;

const SEED_PREPARE_FAIL = String.raw`{
    "code":40001,
    "msg":"Email cannot be empty"
}`;

const SEED_TOKEN = String.raw`{
    "code":0,
    "data":{
        "user":{
            "id":"0721",
            "email":"admin@yuxiaoqiu.cn",
            "nickname":"admin",
            "status":"active",
            "created_at":"2025-03-23T17:05:43.7517532+08:00",
            "group":{
                "id":"LyTN",
                "name":"Admin",
                "permission":"/X8B",
                "direct_link_batch_size":1000
                },
            "language":"zh-CN"
            },
        "token":{
            "access_token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwic3ViIjoibllUNiIsImV4cCI6MTc0MzA3MjkxMCwibmJmIjoxNzQzMDY5MzEwfQ.QYSBOtDSnQzHIuSKT9fwMhc7p5cMZLIaQQjHthn4ePU",
            "refresh_token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCIsInN1YiI6Im5ZVDYiLCJleHAiOjE3NDQyNzg5MTAsIm5iZiI6MTc0MzA2OTMxMCwic3RhdGVfaGFzaCI6IlMrTDBQZGdiUzgrR003R1Y3RTMvbjRhSHdnMFNMQ1hlZk53cjJmdWViME09In0.q4qxofCDfp23kOPSyER_euOU-Y_3DAxvZ3v53OlMJOw",
            "access_expires":"2025-03-27T18:55:10.041224+08:00",
            "refresh_expires":"2025-04-10T17:55:10.041224+08:00"
            }
        },
    "msg":""
}`;

const SEED_USER_ME = String.raw`{
    "code":0,
    "data":{
        "id":"nYT6",
        "email":"admin@yuxiaoqiu.cn",
        "nickname":"admin",
        "status":"active",
        "created_at":"2025-03-23T17:05:43.7517532+08:00",
        "group":{
            "id":"LyTN",
            "name":"Admin",
            "permission":"/X8B",
            "direct_link_batch_size":1000
            },
        "language":"zh-CN"
        },
    "msg":""
}`;

const SEED_CAPACITY = String.raw`{
    "code":0,
    "data":{
        "total":1099511627776,
        "used":0,
        "storage_pack_total":0
        },
    "msg":""
}`;

const SEED_LIST = String.raw`{
    "code":0,
    "data":{
        "files":[],
        "parent":{
            "type":1,
            "id":"2ATR",
            "name":"",
            "permission":null,
            "created_at":"2025-03-23T17:05:46.7121552+08:00",
            "updated_at":"2025-03-23T17:05:46.7121552+08:00",
            "size":0,
            "metadata":null,
            "path":"cloudreve://my/",
            "capability":"39/9",
            "owned":true,
            "primary_entity":"LWCY"
            },
        "pagination":{
            "page":0,
            "page_size":10,
            "is_cursor":true
            },
        "props":{
            "capability":"39/9",
            "max_page_size":2000,
            "order_by_options":[
                "name","size",
                "updated_at",
                "created_at"
                ],
            "order_direction_options":[
                "asc",
                "desc"
                ]
            },
        "context_hint":"632f5431-8f2c-4112-bffb-66fb158c5178",
        "mixed_type":false,
        "storage_policy":{
            "id":"kxTm",
            "name":"Default storage policy",
            "type":"local",
            "max_size":0
            }
        },
    "msg":""
}`;

const SEED_CREATE_FILE = String.raw`{
    "code":0,
    "data":{
        "type":0,
        "id":"k3uP",
        "name":"1234.txt",
        "permission":null,
        "created_at":"2025-03-27T19:09:32.1169196+08:00",
        "updated_at":"2025-03-27T19:09:32.1169196+08:00",
        "size":0,
        "metadata":null,
        "path":"cloudreve://my/1234.txt",
        "capability":"39/9",
        "owned":true,
        "primary_entity":"LWCY"
        },
    "msg":""
}`;

const SEED_CREATE_FOLDER = String.raw`{
    "code": 0,
    "data": {
        "type": 1,
        "id": "x9F1",
        "name": "新建文件夹",
        "permission": null,
        "created_at": "2025-03-27T19:22:53.2929764+08:00",
        "updated_at": "2025-03-27T19:22:53.2929764+08:00",
        "size": 0,
        "metadata": null,
        "path": "cloudreve://my/新建文件夹",
        "capability": "39/9",
        "owned": true,
        "primary_entity": "LWCY"
    },
    "msg": ""
}`;

const SEED_RENAME = String.raw`{
    "code": 0,
    "data": {
        "type": 0,
        "id": "Mwfa",
        "name": "123.md",
        "permission": null,
        "created_at": "2025-03-27T19:04:35.9581581+08:00",
        "updated_at": "2025-03-27T19:17:18.5811722+08:00",
        "size": 0,
        "metadata": null,
        "path": "cloudreve://my/123.md",
        "capability": "39/9",
        "owned": true,
        "primary_entity": "LWCY"
    },
    "msg": ""
}`;

const SEED_FILE_INFO = String.raw`{
    "code": 0,
    "data": {
        "type": 0,
        "id": "k3uP",
        "name": "1234.txt",
        "permission": null,
        "created_at": "2025-03-27T19:09:32.1169196+08:00",
        "updated_at": "2025-03-27T19:09:32.1169196+08:00",
        "size": 0,
        "metadata": {},
        "path": "cloudreve://my/1234.txt",
        "capability": "39/9",
        "owned": true,
        "primary_entity": "LWCY",
        "extended_info": {
            "storage_policy": {
                "id": "kxTm",
                "name": "Default storage policy",
                "type": "local",
                "max_size": 0
            },
            "storage_policy_inherited": false,
            "storage_used": 0
        }
    },
    "msg": ""
}`;

/** Parses a wire text as an envelope whose `data` must match `data`. */
function ok<T extends z.ZodType>(text: string, data: T): z.infer<T> {
  return successOf(data).parse(JSON.parse(text)).data as z.infer<T>;
}

describe("seed examples (Pro 4.0.0-alpha.9)", () => {
  it("ping", () => {
    expect(ok(SEED_PING, PingSchema)).toBe("4.0.0");
  });

  it("site config keeps Pro-only keys and types the anonymous user", () => {
    const cfg = ok(SEED_SITE_CONFIG, SiteConfigBasicSchema);
    expect(cfg.title).toBe("Cloudreve");
    expect(cfg.captcha_type).toBe("turnstile");
    expect(cfg.user?.anonymous).toBe(true);
    expect(cfg.user?.group?.permission).toBe("gg==");
    expect(cfg["shop_nav_enabled"]).toBe(true);
    const perm = decodeBitset(cfg.user!.group!.permission!);
    expect(perm.has(GroupPermission.IS_ANONYMOUS)).toBe(true);
    expect(perm.has(GroupPermission.IS_ADMIN)).toBe(false);
  });

  it("prepare login: success with the seed's extra flags, and a 40001 failure", () => {
    const p = ok(SEED_PREPARE_OK, PrepareLoginSchema);
    expect(p.password_enabled).toBe(true);
    expect(p.webauthn_enabled).toBe(true);
    expect(p.sso_enabled).toBe(false);
    const fail = EnvelopeSchema.parse(JSON.parse(SEED_PREPARE_FAIL));
    expect(fail.code).toBe(40001);
    expect(fail.data).toBeUndefined();
    expect(fail.msg).toBe("Email cannot be empty");
  });

  it("token (login)", () => {
    const login = ok(SEED_TOKEN, LoginResponseSchema);
    expect(login.user.email).toBe("admin@yuxiaoqiu.cn");
    expect(login.user.group?.direct_link_batch_size).toBe(1000);
    expect(login.token.access_token.startsWith("eyJ")).toBe(true);
    expect(timestampToEpochMs(login.token.access_expires)).toBe(
      Date.UTC(2025, 2, 27, 10, 55, 10, 41),
    );
    const reply = LoginReplySchema.parse(JSON.parse(SEED_TOKEN));
    expect(reply.code).toBe(0);
  });

  it("user/me: admin group bits", () => {
    const me = ok(SEED_USER_ME, UserSchema);
    expect(me.id).toBe("nYT6");
    expect(me.status).toBe("active");
    const perm = decodeBitset(me.group!.permission!);
    expect(perm.has(GroupPermission.IS_ADMIN)).toBe(true);
    expect(perm.has(GroupPermission.WEBDAV)).toBe(true);
    expect(perm.has(GroupPermission.ADVANCE_DELETE)).toBe(true);
    expect(perm.has(GroupPermission.IS_ANONYMOUS)).toBe(false);
  });

  it("capacity with storage_pack_total", () => {
    const cap = ok(SEED_CAPACITY, CapacitySchema);
    expect(cap).toMatchObject({ total: 1099511627776, used: 0, storage_pack_total: 0 });
  });

  it("listing with permission: null and capability 39/9", () => {
    const list = ok(SEED_LIST, ListResponseSchema);
    expect(list.files).toEqual([]);
    expect(list.parent.type).toBe(1);
    expect(list.parent.path).toBe("cloudreve://my/");
    expect(list.parent.metadata).toBeNull();
    expect(list.parent["permission"]).toBeNull();
    expect(list.pagination).toEqual({ page: 0, page_size: 10, is_cursor: true });
    expect(list.pagination.next_token).toBeUndefined();
    expect(list.props.max_page_size).toBe(2000);
    expect(list.props.order_direction_options).toEqual(["asc", "desc"]);
    expect(list.storage_policy?.type).toBe("local");
    expect(list.storage_policy?.max_size).toBe(0);
    expect(() => decodeBitset(list.props.capability)).not.toThrow();
  });

  it("create file and folder", () => {
    const file = ok(SEED_CREATE_FILE, FileSchema);
    expect(file.type).toBe(0);
    expect(file.size).toBe(0);
    expect(file.owned).toBe(true);
    expect(file.primary_entity).toBe("LWCY");
    const folder = ok(SEED_CREATE_FOLDER, FileSchema);
    expect(folder.type).toBe(1);
    expect(folder.name).toBe("新建文件夹");
    // The seed shows the path unencoded; the schema does not judge URIs.
    expect(folder.path).toBe("cloudreve://my/新建文件夹");
  });

  it("rename", () => {
    const f = ok(SEED_RENAME, FileSchema);
    expect(f.name).toBe("123.md");
    expect(timestampToEpochMs(f.updated_at)).toBeGreaterThan(timestampToEpochMs(f.created_at));
  });

  it("file info with extended_info", () => {
    const f = ok(SEED_FILE_INFO, FileSchema);
    expect(f.metadata).toEqual({});
    expect(f.extended_info?.storage_used).toBe(0);
    expect(f.extended_info?.storage_policy?.id).toBe("kxTm");
    expect(f.extended_info?.["storage_policy_inherited"]).toBe(false);
    expect(f.extended_info?.entities).toBeUndefined();
  });
});

// -----------------------------------------------------------------------------------------------
// (b) 4.18-shaped replies built from docs/cloudreve-api.md.

const POLICY_418 = {
  id: "kxTm",
  name: "Default storage policy",
  type: "local",
  max_size: 0,
  denied_suffix: ["exe"],
  relay: false,
  chunk_concurrency: 1,
};

const ROOT_PARENT = {
  type: 1,
  id: "2ATR",
  name: "",
  created_at: "2026-07-15T10:00:00.123456789+08:00",
  updated_at: "2026-07-15T10:00:00.123456789+08:00",
  size: 0,
  metadata: null,
  path: "cloudreve://my/",
  capability: "w8edAQ==",
  owned: true,
  primary_entity: "LWCY",
};

function file418(name: string, type: 0 | 1, extra: Record<string, unknown> = {}) {
  return {
    type,
    id: type === 0 ? "k3uP" : "x9F1",
    name,
    created_at: "2026-07-15T10:01:02+08:00",
    updated_at: "2026-07-15T10:01:02.5+08:00",
    size: type === 0 ? 1234 : 0,
    metadata: null,
    path: `cloudreve://my/${encodeURIComponent(name)}`,
    capability: "w8edAQ==",
    owned: true,
    primary_entity: type === 0 ? "Zb3q" : "LWCY",
    ...extra,
  };
}

describe("4.18 shapes", () => {
  it("list in cursor mode with next_token", () => {
    const reply = {
      code: 0,
      msg: "",
      data: {
        files: [file418("docs", 1), file418("a b.txt", 0, { shared: true })],
        parent: ROOT_PARENT,
        pagination: { page: 0, page_size: 2, next_token: "eyJpZCI6Ing5RjEifQ==", is_cursor: true },
        props: {
          capability: "w8edAQ==",
          max_page_size: 2000,
          order_by_options: ["name", "size", "updated_at", "created_at"],
          order_direction_options: ["asc", "desc"],
        },
        context_hint: "0b7e4a3c-6f1e-4d7a-9a0e-0c6f3e2b1d4a",
        mixed_type: false,
        storage_policy: POLICY_418,
      },
    };
    const list = successOf(ListResponseSchema).parse(reply).data;
    expect(list.files.map((f) => f.type)).toEqual([1, 0]);
    expect(list.files[1]?.path).toBe("cloudreve://my/a%20b.txt");
    expect(list.files[1]?.shared).toBe(true);
    expect(list.pagination.is_cursor).toBe(true);
    expect(list.pagination.next_token).toBe("eyJpZCI6Ing5RjEifQ==");
    expect(list.pagination.total_items).toBeUndefined();
    expect(list.storage_policy?.denied_suffix).toEqual(["exe"]);
    expect(list.storage_policy?.chunk_concurrency).toBe(1);
    const cap = decodeBitset(list.props.capability);
    expect(cap.has(NavCapability.LIST_CHILDREN)).toBe(true);
    expect(cap.has(NavCapability.RESTORE)).toBe(false);
  });

  it("list in offset mode with total_items and null option lists", () => {
    const reply = {
      code: 0,
      msg: "",
      data: {
        files: [file418("x.bin", 0)],
        parent: file418("docs", 1),
        pagination: { page: 1, page_size: 50, total_items: 120 },
        props: {
          capability: "w8edAQ==",
          max_page_size: 500,
          order_by_options: null,
          order_direction_options: null,
        },
        context_hint: null,
        mixed_type: false,
      },
    };
    const list = successOf(ListResponseSchema).parse(reply).data;
    expect(list.pagination).toEqual({ page: 1, page_size: 50, total_items: 120 });
    expect(list.pagination.is_cursor).toBeUndefined();
    expect(list.props.order_by_options).toBeNull();
    expect(list.context_hint).toBeNull();
    expect(list.storage_policy).toBeUndefined();
  });

  it("trash listing: zero parent and an item with sys:restore_uri", () => {
    const reply = {
      code: 0,
      msg: "",
      data: {
        files: [
          {
            type: 0,
            id: "k3uP",
            name: "report.pdf",
            created_at: "2026-07-15T10:01:02+08:00",
            updated_at: "2026-07-15T11:00:00+08:00",
            size: 2048,
            metadata: {
              "sys:restore_uri": "cloudreve://my/work/report.pdf",
              "sys:expected_collect_time": "1784686800",
            },
            path: "cloudreve://trash/3f2c7a10-9a4e-4b59-8c1d-2e6f5a7b8c9d",
            capability: "AMIK",
            owned: true,
            primary_entity: "Zb3q",
          },
        ],
        parent: {
          type: 0,
          id: "",
          name: "",
          created_at: "0001-01-01T00:00:00Z",
          updated_at: "0001-01-01T00:00:00Z",
          size: 0,
          metadata: null,
        },
        pagination: { page: 0, page_size: 100, is_cursor: true },
        props: {
          capability: "AMIK",
          max_page_size: 2000,
          order_by_options: null,
          order_direction_options: null,
        },
        context_hint: null,
        mixed_type: false,
      },
    };
    const list = successOf(ListResponseSchema).parse(reply).data;
    const item = list.files[0]!;
    expect(item.metadata?.["sys:restore_uri"]).toBe("cloudreve://my/work/report.pdf");
    expect(Number(item.metadata?.["sys:expected_collect_time"])).toBe(1784686800);
    expect(item.path?.startsWith("cloudreve://trash/")).toBe(true);
    expect(list.parent.id).toBe("");
    expect(list.parent.capability).toBeUndefined();
    expect(timestampToEpochMs(list.parent.created_at)).toBe(-62135596800000);
    const cap = decodeBitset(item.capability);
    expect(cap.has(NavCapability.RESTORE)).toBe(true);
    expect(cap.has(NavCapability.SOFT_DELETE)).toBe(false);
  });

  it("40081 with aggregated_error (single missing URI)", () => {
    const reply = {
      code: 40081,
      msg: "Path not exist",
      correlation_id: "7a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
      aggregated_error: {
        "cloudreve://my/x": {
          code: 40016,
          msg: "Path not exist",
          correlation_id: "7a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        },
      },
    };
    const env = BatchErrorEnvelopeSchema.parse(reply);
    expect(env.data).toBeUndefined();
    expect(env.aggregated_error["cloudreve://my/x"]?.code).toBe(40016);
    expect(EnvelopeSchema.parse(reply).aggregated_error).toBeDefined();
  });

  it("40081 wrapping a lock conflict with data", () => {
    const reply = {
      code: 40081,
      msg: "Lock conflict",
      correlation_id: "7a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
      aggregated_error: {
        "cloudreve://my/a.txt": {
          code: 40073,
          msg: "Lock conflict",
          correlation_id: "7a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
          data: [
            {
              path: "cloudreve://my/a.txt",
              token: "d6f1c0de-1111-4222-8333-944455566677",
              owner: { application: { type: "upload" } },
              type: 0,
            },
          ],
        },
      },
    };
    const inner = BatchErrorEnvelopeSchema.parse(reply).aggregated_error["cloudreve://my/a.txt"]!;
    const details = z.array(LockConflictDetailSchema).parse(inner.data);
    expect(details[0]?.owner.application.type).toBe("upload");
  });

  it("40073 with conflict data", () => {
    const reply = {
      code: 40073,
      msg: "Lock conflict",
      correlation_id: "7a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
      data: [
        {
          path: "cloudreve://my/docs/a.txt",
          token: "d6f1c0de-1111-4222-8333-944455566677",
          owner: { application: { type: "dav", inner_xml: "<D:href>x</D:href>" } },
          type: 0,
        },
        { path: "", owner: { application: { type: "viewer", viewer_id: "v1" } }, type: 1 },
      ],
    };
    const env = LockConflictEnvelopeSchema.parse(reply);
    expect(env.data).toHaveLength(2);
    expect(env.data[0]?.token).toBe("d6f1c0de-1111-4222-8333-944455566677");
    expect(env.data[0]?.owner.application.inner_xml).toBe("<D:href>x</D:href>");
    expect(env.data[1]?.token).toBeUndefined();
  });

  it("upload session", () => {
    const reply = {
      code: 0,
      msg: "",
      data: {
        session_id: "5c0f7e2a-3b1d-4c6e-9f8a-7b6c5d4e3f2a",
        upload_id: "",
        chunk_size: 26214400,
        expires: 1784600000,
        storage_policy: { ...POLICY_418, relay: true, encryption: false },
        uri: "cloudreve://my/docs/big.iso",
        callback_secret: "abcdefghijklmnopqrstuvwxyzABCDEF",
        mime_type: "application/x-iso9660-image",
      },
    };
    const s = successOf(UploadSessionSchema).parse(reply).data;
    expect(s.chunk_size).toBe(26214400);
    expect(s.expires).toBe(1784600000);
    expect(s.upload_urls).toBeUndefined();
    expect(s.storage_policy?.relay).toBe(true);
    expect(s.callback_secret).toHaveLength(32);
  });

  it("file url with expires null and with a date", () => {
    const none = FileUrlResponseSchema.parse({
      urls: [{ url: "" }, { url: "https://cdn.example.com/a?x=1" }],
      expires: null,
    });
    expect(none.expires).toBeNull();
    expect(none.urls[0]?.url).toBe("");
    const dated = FileUrlResponseSchema.parse({
      urls: [
        {
          url: "http://127.0.0.1:5212/api/v4/file/content/Zb3q/0/a.txt?sign=abc%3D%3D%3A1784600000",
          stream_saver_display_name: "a.txt",
        },
      ],
      expires: "2026-07-15T11:01:02.987654321+08:00",
    });
    expect(dated.urls[0]?.stream_saver_display_name).toBe("a.txt");
    expect(timestampToEpochMs(dated.expires!)).toBe(Date.UTC(2026, 6, 15, 3, 1, 2, 987));
  });

  it("2FA required (code 203, data string) and a token refresh", () => {
    const twoFa = { code: 203, msg: "", data: "e1b2c3d4-0000-4111-8222-933344455566" };
    const reply = LoginReplySchema.parse(twoFa);
    expect(reply.code).toBe(203);
    if (reply.code === 203) expect(reply.data).toBe(twoFa.data);
    expect(TwoFactorRequiredSchema.safeParse({ ...twoFa, data: { user: {} } }).success).toBe(false);
    const token = successOf(TokenSchema).parse({
      code: 0,
      msg: "",
      data: {
        access_token: "a.b.c",
        refresh_token: "d.e.f",
        access_expires: "2026-07-15T11:00:00Z",
        refresh_expires: "2026-07-29T10:00:00Z",
      },
    }).data;
    expect(token.refresh_token).toBe("d.e.f");
  });

  it("file with folder_summary and extended entities", () => {
    const f = FileSchema.parse(
      file418("docs", 1, {
        folder_summary: {
          size: 10,
          files: 2,
          folders: 1,
          completed: true,
          calculated_at: "2026-07-15T10:05:00+08:00",
        },
        extended_info: {
          storage_used: 1234,
          entities: [
            {
              id: "Zb3q",
              size: 1234,
              type: 0,
              created_at: "2026-07-15T10:01:02+08:00",
              storage_policy: POLICY_418,
              created_by: { id: "nYT6", nickname: "admin", created_at: "2026-01-01T00:00:00Z" },
            },
          ],
        },
      }),
    );
    expect(f.folder_summary?.completed).toBe(true);
    expect(f.extended_info?.entities?.[0]?.created_by?.id).toBe("nYT6");
  });

  it("site config login", () => {
    const cfg = SiteConfigLoginSchema.parse({
      login_captcha: true,
      register_enabled: false,
      tos_url: "",
      authn: true,
    });
    expect(cfg.login_captcha).toBe(true);
    expect(SiteConfigLoginSchema.safeParse({ login_captcha: "yes" }).success).toBe(false);
  });

  it("site config explorer types max_batch_size and keeps the rest", () => {
    const cfg = SiteConfigExplorerSchema.parse({
      max_batch_size: 3000,
      thumbnail_width: 400,
      file_viewers: [],
    });
    expect(cfg.max_batch_size).toBe(3000);
    expect(cfg["thumbnail_width"]).toBe(400);
  });
});

// -----------------------------------------------------------------------------------------------
// (c) What must be rejected.

describe("rejections", () => {
  const good = file418("a.txt", 0);

  it("accepts the baseline file", () => {
    expect(FileSchema.safeParse(good).success).toBe(true);
  });

  it("a File without id", () => {
    const noId: Record<string, unknown> = { ...good };
    delete noId.id;
    expect(FileSchema.safeParse(noId).success).toBe(false);
  });

  it('a File with type "x" or 2', () => {
    expect(FileSchema.safeParse({ ...good, type: "x" }).success).toBe(false);
    expect(FileSchema.safeParse({ ...good, type: 2 }).success).toBe(false);
  });

  it("a File without capability, primary_entity or the metadata key", () => {
    for (const key of ["capability", "primary_entity", "metadata"] as const) {
      const copy: Record<string, unknown> = { ...good };
      delete copy[key];
      expect(FileSchema.safeParse(copy).success, key).toBe(false);
    }
  });

  it("a File with a timestamp lacking a zone, or epoch numbers", () => {
    expect(FileSchema.safeParse({ ...good, created_at: "2026-07-15T10:01:02" }).success).toBe(
      false,
    );
    expect(FileSchema.safeParse({ ...good, updated_at: 1784600000000 }).success).toBe(false);
  });

  it("a File with a negative or fractional size, or a non-string metadata value", () => {
    expect(FileSchema.safeParse({ ...good, size: -1 }).success).toBe(false);
    expect(FileSchema.safeParse({ ...good, size: 1.5 }).success).toBe(false);
    expect(FileSchema.safeParse({ ...good, metadata: { "sys:x": 1 } }).success).toBe(false);
  });

  it("an envelope without code, or with a string code", () => {
    expect(EnvelopeSchema.safeParse({ msg: "", data: 1 }).success).toBe(false);
    expect(EnvelopeSchema.safeParse({ code: "0", msg: "" }).success).toBe(false);
  });

  it("a success envelope with a non-zero code", () => {
    expect(successOf(PingSchema).safeParse({ code: 40016, msg: "", data: "x" }).success).toBe(
      false,
    );
  });

  it("a 40081 without aggregated_error", () => {
    expect(BatchErrorEnvelopeSchema.safeParse({ code: 40081, msg: "x" }).success).toBe(false);
  });

  it("an upload session whose expires is in milliseconds or a date string", () => {
    const s = {
      session_id: "s",
      chunk_size: 0,
      expires: 1784600000000,
      uri: "cloudreve://my/a",
      callback_secret: "x",
    };
    expect(UploadSessionSchema.safeParse(s).success).toBe(false);
    expect(UploadSessionSchema.safeParse({ ...s, expires: "2026-07-15T10:00:00Z" }).success).toBe(
      false,
    );
    expect(UploadSessionSchema.safeParse({ ...s, expires: 1784600000 }).success).toBe(true);
  });

  it("a file url reply without expires, or with urls as strings", () => {
    expect(FileUrlResponseSchema.safeParse({ urls: [{ url: "u" }] }).success).toBe(false);
    expect(FileUrlResponseSchema.safeParse({ urls: ["u"], expires: null }).success).toBe(false);
  });

  it("a listing without props or with a non-base64 capability", () => {
    const base = { files: [], parent: ROOT_PARENT, pagination: { page: 0, page_size: 1 } };
    expect(ListResponseSchema.safeParse(base).success).toBe(false);
    expect(
      ListResponseSchema.safeParse({ ...base, props: { capability: "w8ed-Q", max_page_size: 1 } })
        .success,
    ).toBe(false);
  });

  it("a lock conflict without owner.application.type", () => {
    expect(
      LockConflictDetailSchema.safeParse({ path: "", owner: { application: {} }, type: 0 }).success,
    ).toBe(false);
  });

  it("a capacity with a string total", () => {
    expect(CapacitySchema.safeParse({ total: "1", used: 0 }).success).toBe(false);
  });
});

// -----------------------------------------------------------------------------------------------
// (d) Bitsets.

describe("bitset", () => {
  it('"w8edAQ==" (4.18 my) decodes to exactly the my-filesystem bits', () => {
    expect(decodeBitset(FilesystemCapability.my).bits()).toEqual([
      0, 1, 6, 7, 8, 9, 10, 14, 15, 16, 18, 19, 20, 23, 24,
    ]);
  });

  it('"AMIK" (trash) decodes to {9,14,15,17,19}', () => {
    expect(decodeBitset(FilesystemCapability.trash).bits()).toEqual([9, 14, 15, 17, 19]);
  });

  it('"39/9" (seed) decodes without throwing', () => {
    const b = decodeBitset("39/9");
    expect(b.bytes).toEqual(new Uint8Array([0xdf, 0xdf, 0xfd]));
    expect(b.has(NavCapability.LIST_CHILDREN)).toBe(true);
  });

  it("has() checks each named navigator bit LSB first", () => {
    const my = decodeBitset("w8edAQ==");
    for (const bit of [
      NavCapability.CREATE_FILE,
      NavCapability.RENAME_FILE,
      NavCapability.UPLOAD_FILE,
      NavCapability.DOWNLOAD_FILE,
      NavCapability.UPDATE_METADATA,
      NavCapability.LIST_CHILDREN,
      NavCapability.DELETE_FILE,
      NavCapability.LOCK_FILE,
      NavCapability.SOFT_DELETE,
      NavCapability.INFO,
    ]) {
      expect(my.has(bit), String(bit)).toBe(true);
    }
    expect(my.has(NavCapability.RESTORE)).toBe(false);
    expect(my.has(2)).toBe(false);
    expect(my.has(1000)).toBe(false);
    expect(my.has(-1)).toBe(false);
  });

  it("the other filesystems' strings match §8.1", () => {
    expect(decodeBitset(FilesystemCapability.share).bits()).toEqual([7, 9, 10, 15, 19, 20, 23, 24]);
    expect(decodeBitset(FilesystemCapability.shared_with_me).bits()).toEqual([7, 9, 23]);
  });

  it("group bits of the seed's admin and anonymous groups", () => {
    expect(decodeBitset("/X8B").has(GroupPermission.WEBDAV)).toBe(true);
    expect(decodeBitset("gg==").bits()).toEqual([
      GroupPermission.IS_ANONYMOUS,
      GroupPermission.SHARE_DOWNLOAD,
    ]);
  });

  it("empty, unpadded and invalid input", () => {
    expect(decodeBitset("").bits()).toEqual([]);
    expect(decodeBitset("AQ").bits()).toEqual([0]);
    expect(() => decodeBitset("w8ed-Q==")).toThrow(TypeError);
    expect(() => decodeBitset("A")).toThrow(TypeError);
  });
});

// -----------------------------------------------------------------------------------------------
// (e) Timestamps.

describe("timestampToEpochMs", () => {
  it("truncates 7 fraction digits to ms and keeps the +08:00 offset", () => {
    expect(timestampToEpochMs("2025-03-23T17:05:43.7517532+08:00")).toBe(
      Date.UTC(2025, 2, 23, 9, 5, 43, 751),
    );
  });

  it("does not round up into the next second", () => {
    expect(timestampToEpochMs("2025-01-02T15:04:05.999999999Z")).toBe(
      Date.UTC(2025, 0, 2, 15, 4, 5, 999),
    );
  });

  it("handles Z without a fraction", () => {
    expect(timestampToEpochMs("2025-01-02T15:04:05Z")).toBe(Date.UTC(2025, 0, 2, 15, 4, 5));
  });

  it("handles Go's zero time (year 1, not 1901)", () => {
    expect(timestampToEpochMs("0001-01-01T00:00:00Z")).toBe(-62135596800000);
  });

  it("handles negative offsets and short fractions", () => {
    expect(timestampToEpochMs("2025-01-01T20:30:00.5-05:30")).toBe(
      Date.UTC(2025, 0, 2, 2, 0, 0, 500),
    );
  });

  it("rejects malformed or impossible timestamps", () => {
    for (const bad of [
      "2025-01-02 15:04:05Z",
      "2025-01-02T15:04:05",
      "2025-02-31T00:00:00Z",
      "2025-01-02T24:00:00Z",
      "2025-01-02T15:04:05.1234567890Z",
      "",
    ]) {
      expect(() => timestampToEpochMs(bad), bad).toThrow(RangeError);
    }
    expect(TimestampSchema.safeParse("2025-01-02T15:04:05+0800").success).toBe(false);
  });
});
