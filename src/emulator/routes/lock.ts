import { readJson, type Ctx, type Router } from "../http.js";
import { reqStrings } from "../bind.js";
import type { EmulatorState } from "../state.js";
import { requireUser } from "./account.js";

/** Force-unlock (§5.11). */
export function registerLockRoutes(router: Router, state: EmulatorState): void {
  router.add("DELETE", "/api/v4/file/lock", (ctx) => releaseLocks(state, ctx));
}

async function releaseLocks(state: EmulatorState, ctx: Ctx) {
  requireUser(ctx);
  const body = await readJson(ctx);
  for (const token of reqStrings(body, "tokens", "Tokens")) state.locks.release(token);
  return undefined;
}
