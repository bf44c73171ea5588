import { paramError } from "./errors.js";

/**
 * Request binding as gin does it for Cloudreve's services: a wrong JSON type is
 * "JSON marshall error", a missing required field "<Field> cannot be empty" (the Go field
 * name), everything else "Parameter error". All are 40001 without a correlation id.
 */
type Body = Record<string, unknown>;

export function optString(body: Body, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw paramError("JSON marshall error");
  return v;
}

export function reqString(body: Body, key: string, field: string): string {
  const v = optString(body, key);
  if (!v) throw paramError(`${field} cannot be empty`);
  return v;
}

export function optBool(body: Body, key: string): boolean {
  const v = body[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw paramError("JSON marshall error");
  return v;
}

export function optInt(body: Body, key: string): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) throw paramError("JSON marshall error");
  return v;
}

export function reqStrings(body: Body, key: string, field: string): string[] {
  const v = body[key];
  if (v === undefined || v === null) throw paramError(`${field} cannot be empty`);
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) {
    throw paramError("JSON marshall error");
  }
  if (v.length === 0) throw paramError(`${field} too short`);
  return v as string[];
}

export function optObject(body: Body, key: string): Record<string, unknown> | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw paramError("JSON marshall error");
  return v as Record<string, unknown>;
}

/** Query integers: absent → undefined; not an integer → Parameter error. */
export function queryInt(query: URLSearchParams, key: string): number | undefined {
  const v = query.get(key);
  if (v === null || v === "") return undefined;
  if (!/^-?\d+$/.test(v)) throw paramError();
  return Number(v);
}
