import { ApiError, Code, errors, paramError } from "../errors.js";
import type { FsEvent } from "../events.js";
import { RAW, type Ctx, type Router } from "../http.js";
import type { FileNode, User } from "../model.js";
import type { EmulatorState } from "../state.js";
import { parseUri } from "../uri.js";
import { requireUser } from "./account.js";

/** `GET /file/events` (§5.12, service/explorer/events.go): server-sent change events. */
export function registerEventRoute(router: Router, state: EmulatorState): void {
  // Before 4.11 the route does not exist: gin's plain 404.
  if (state.settings.events === "absent") return;
  router.add("GET", "/api/v4/file/events", (ctx) => streamEvents(state, ctx));
}

/** What Go's fmt.Sprint(nil) writes as the data of subscribed, resumed and keep-alive. */
const NIL = "<nil>";

const HEX_UUID = /^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

/** gofrs/uuid v4 FromString: plain or hyphenated hex, either one in braces or after `urn:uuid:`. */
function isUuid(s: string): boolean {
  if (s.startsWith("{") && s.endsWith("}")) return HEX_UUID.test(s.slice(1, -1));
  return HEX_UUID.test(s.startsWith("urn:uuid:") ? s.slice(9) : s);
}

/** encoding/json escapes <, > and & (and U+2028, U+2029) as \u00xx, which JSON.stringify does not. */
function goJson(value: FsEvent): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * The folder a subscription watches. Cloudreve lists it first: a failure keeps its code under
 * the message "Requested uri not available".
 */
function watchedFolder(state: EmulatorState, user: User, raw: string): FileNode {
  try {
    parseUri(raw);
  } catch {
    throw new ApiError(Code.ParamErr, "Unknown uri");
  }
  try {
    const target = state.resolve(user, raw);
    // Listing a file, or a path that is not there, is 40016 (§4.3).
    if (target.fs !== "my" || target.node?.type !== 1) throw errors.pathNotExist();
    return target.node;
  } catch (err) {
    // The code of the inner error, the message of the outer one (§1.1 ErrWithDetails).
    if (err instanceof ApiError) throw new ApiError(err.code, "Requested uri not available");
    throw err;
  }
}

async function streamEvents(state: EmulatorState, ctx: Ctx) {
  const user = requireUser(ctx);
  if (state.settings.events === "disabled") {
    throw new ApiError(Code.FeatureNotEnabled, "This feature is not enabled");
  }
  const raw = ctx.query.get("uri");
  if (!raw) throw paramError("Uri cannot be empty");
  const folder = watchedFolder(state, user, raw);
  const clientId = ctx.req.headers["x-cr-client-id"];
  if (!clientId) throw new ApiError(Code.ParamErr, "Client ID is required");
  if (typeof clientId !== "string" || !isUuid(clientId)) {
    throw new ApiError(Code.ParamErr, "Invalid client ID");
  }

  const { res } = ctx;
  const { subscriber, resumed } = state.events.subscribe(folder, clientId);
  res.writeHead(200, {
    "content-type": "text/event-stream;charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  // gin-contrib/sse: no space after the colons, one frame per event.
  const send = (name: string, data: string) => {
    const frame = `event:${name}\ndata:${data}\n\n`;
    ctx.countOut(Buffer.byteLength(frame));
    res.write(frame);
  };
  send(resumed ? "resumed" : "subscribed", NIL);
  const detach = subscriber.attach((events) => {
    for (const e of events) send("event", goJson(e));
  });
  const keepAlive = setInterval(() => send("keep-alive", NIL), state.settings.eventKeepAliveMs);
  res.once("close", () => {
    clearInterval(keepAlive);
    detach();
    state.events.unsubscribe(folder, clientId);
  });
  return RAW;
}
