import { randomUUID } from "node:crypto";
import { errors, paramError } from "../errors.js";
import { decodeId, encodeId, IdType } from "../hashid.js";
import type { Ctx, Router } from "../http.js";
import { queryInt } from "../bind.js";
import { walk, type FileNode } from "../model.js";
import { Capability, type EmulatorState } from "../state.js";

const ORDER_BY = ["name", "size", "updated_at", "created_at"] as const;
type OrderBy = (typeof ORDER_BY)[number] | "id";

/** Where a listing item sits in the order: folders first, then the sort key, then id. */
interface Position {
  file: boolean;
  key: string | number;
  id: number;
}

function positionOf(node: FileNode, orderBy: OrderBy): Position {
  const key =
    orderBy === "name"
      ? node.name
      : orderBy === "size"
        ? (node.entity?.size ?? 0)
        : orderBy === "updated_at"
          ? node.updatedAt
          : orderBy === "created_at"
            ? node.createdAt
            : 0;
  return { file: node.type === 0, key, id: node.id };
}

function compare(a: Position, b: Position, desc: boolean, mixed: boolean): number {
  if (!mixed && a.file !== b.file) return a.file ? 1 : -1;
  const sign = desc ? -1 : 1;
  if (a.key !== b.key) return (a.key < b.key ? -1 : 1) * sign;
  return (a.id - b.id) * sign;
}

/**
 * The opaque cursor: base64 of JSON naming the last item returned, with the sort value under
 * `string`, `int` or `time` as the real server's token does (inventory/file_utils.go).
 */
function encodeToken(p: Position, orderBy: OrderBy): string {
  const field = orderBy === "name" ? "string" : orderBy === "size" ? "int" : "time";
  const body: Record<string, unknown> = {
    id: encodeId(p.id, p.file ? IdType.file : IdType.folder),
    start_with_file: p.file,
  };
  if (orderBy !== "id") body[field] = p.key;
  return Buffer.from(JSON.stringify(body)).toString("base64");
}

function decodeToken(token: string, orderBy: OrderBy): Position {
  try {
    const body = JSON.parse(Buffer.from(token, "base64").toString("utf8")) as Record<
      string,
      unknown
    >;
    const file = body.start_with_file === true;
    const id = decodeId(String(body.id), file ? IdType.file : IdType.folder);
    const key = orderBy === "id" ? 0 : (body.string ?? body.int ?? body.time);
    if (id === undefined || (typeof key !== "string" && typeof key !== "number"))
      throw paramError();
    return { file, key, id };
  } catch {
    throw paramError("Invalid next page token");
  }
}

/** The zero FileResponse Go writes for a listing without a parent (trash and shared_with_me roots). */
const NO_PARENT = {
  type: 0,
  id: "",
  name: "",
  created_at: "0001-01-01T00:00:00Z",
  updated_at: "0001-01-01T00:00:00Z",
  size: 0,
  metadata: null,
};

/** Search filters of uri.go SearchParameters, the subset a gateway could trigger: name and type. */
function matchesSearch(node: FileNode, search: URLSearchParams): boolean {
  const fold = search.has("case_folding");
  const names = search.getAll("name").map((n) => n.replace(/^"(.*)"$/, "$1"));
  const name = fold ? node.name.toLowerCase() : node.name;
  const hits = names.map((n) => name.includes(fold ? n.toLowerCase() : n));
  const useOr = search.has("name_op_or") || search.has("use_or");
  if (names.length > 0 && !(useOr ? hits.some(Boolean) : hits.every(Boolean))) return false;
  const type = search.get("type");
  if (type === "file" && node.type !== 0) return false;
  if (type === "folder" && node.type !== 1) return false;
  return true;
}

/** GET /file (§4). */
export function registerListingRoute(router: Router, state: EmulatorState): void {
  router.add("GET", "/api/v4/file", async (ctx: Ctx) => {
    const raw = ctx.query.get("uri");
    if (!raw) throw paramError("Uri cannot be empty");
    const page = queryInt(ctx.query, "page") ?? 0;
    let pageSize = queryInt(ctx.query, "page_size") ?? 0;
    if (page < 0 || pageSize < 0) throw paramError();
    if (pageSize === 0) pageSize = 100;
    pageSize = Math.min(pageSize, state.settings.maxPageSize);
    const requested = ctx.query.get("order_by") ?? "";
    const orderBy: OrderBy = (ORDER_BY as readonly string[]).includes(requested)
      ? (requested as OrderBy)
      : "id";
    const desc = ctx.query.get("order_direction") === "desc";

    const target = state.resolve(ctx.user, raw);
    let items: FileNode[];
    let parent: Record<string, unknown> = NO_PARENT;
    let capability: string = Capability.my;
    const search = target.uri.search;
    if (target.fs === "trash") {
      if (target.uri.elements.length > 0) throw errors.pathNotExist();
      items = [...target.owner.trash.values()];
      capability = Capability.trash;
    } else if (target.fs === "shared_with_me") {
      items = [];
      capability = Capability.shared_with_me;
    } else {
      const folder = target.node;
      if (!folder || folder.type !== 1) throw errors.pathNotExist();
      items = search
        ? [...walk(folder)].filter((n) => n !== folder && matchesSearch(n, search))
        : [...folder.children!.values()];
      parent = state.fileJson(folder);
    }

    const mixed = search !== null;
    const cursor = state.settings.pagination === "cursor" || mixed;
    const positioned = items
      .map((node) => ({ node, pos: positionOf(node, orderBy) }))
      .sort((a, b) => compare(a.pos, b.pos, desc, mixed));

    let pageItems: typeof positioned;
    const pagination: Record<string, unknown> = { page: cursor ? 0 : page, page_size: pageSize };
    if (cursor) {
      const token = ctx.query.get("next_page_token");
      let start = 0;
      if (token) {
        const after = decodeToken(token, orderBy);
        start = positioned.findIndex((p) => compare(p.pos, after, desc, mixed) > 0);
        if (start < 0) start = positioned.length;
      }
      pageItems = positioned.slice(start, start + pageSize);
      const last = pageItems.at(-1);
      if (last && start + pageSize < positioned.length) {
        pagination.next_token = encodeToken(last.pos, orderBy);
      }
      pagination.is_cursor = true;
    } else {
      pageItems = positioned.slice(page * pageSize, (page + 1) * pageSize);
      pagination.total_items = positioned.length;
    }

    const reply: Record<string, unknown> = {
      files: pageItems.map((p) => state.fileJson(p.node)),
      parent,
      pagination,
      props: {
        capability,
        max_page_size: state.settings.maxPageSize,
        order_by_options: [...ORDER_BY],
        order_direction_options: ["asc", "desc"],
      },
      context_hint: randomUUID(),
      mixed_type: mixed,
    };
    if (target.fs === "my") reply.storage_policy = state.policyJson(target.owner.policy);
    return reply;
  });
}
