/**
 * The emulated sites of every storage policy (and relay), for suites that run the same checks
 * on each, and where each policy's upload bytes go. `POLICIES=a,b` keeps some policies only.
 */
import { EMULATED_POLICIES, type PolicyType } from "../../src/emulator/storage/index.js";
import { R, type EmulatorStats } from "./control.js";

export interface Site {
  name: string;
  policy: PolicyType;
  relay: boolean;
}

const only = process.env.POLICIES?.split(",").map((s) => s.trim());

export const SITES = (
  [
    ...EMULATED_POLICIES.map((policy) => ({ name: policy, policy, relay: false })),
    { name: "s3 with relay", policy: "s3", relay: true },
  ] as Site[]
).filter((s) => !only || only.includes(s.policy));

export interface PartRequest {
  origin: "api" | "storage";
  key: string;
}

/** The request that carries an upload session's bytes: where it goes, what it is counted as. */
export function partRequest(site: Site): PartRequest {
  if (site.policy === "local" || site.relay) return { origin: "api", key: R.chunk };
  if (site.policy === "remote") return { origin: "storage", key: "POST chunk" };
  if (site.policy === "upyun") return { origin: "storage", key: "POST form" };
  return { origin: "storage", key: "PUT part" };
}

/** How many such requests an upload session of `size` bytes makes in `chunk`-byte parts. */
export function partsFor(site: Site, size: number, chunk: number): number {
  if (site.relay || site.policy === "upyun") return 1;
  return Math.max(1, Math.ceil(size / chunk));
}

export const countOf = (s: EmulatorStats, part: PartRequest) =>
  (part.origin === "api" ? s.requests[part.key] : s.storage?.requests[part.key]) ?? 0;
