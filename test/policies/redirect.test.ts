/**
 * A storage that sends reads elsewhere (a bucket's regional endpoint, a CDN) with a 307: the
 * gateway follows it, for small streamed reads and for large ones, whole and ranged.
 */
import { describe, expect, it } from "vitest";
import { resetStats, stats } from "../helpers/control.js";
import { content, dav } from "../helpers/faults.js";
import { useGateway } from "../helpers/gateway.js";

describe("reads redirected by the storage", () => {
  const fx = useGateway({ policy: "s3", storageRedirect: true }, { cacheTtlSeconds: 0 });

  it.each([
    ["a small file", 300_000],
    ["a large file (the bulk reader)", 10 * 1024 * 1024],
  ])("%s is read through the redirect, whole and ranged", async (_label, size) => {
    const path = `/redirected-${size}.bin`;
    const body = content(size, size % 97);
    expect((await dav(`${fx.url}${path}`, "PUT", { body })).status).toBe(201);
    await resetStats(fx.emu.url);
    const whole = await dav(`${fx.url}${path}`, "GET");
    expect(whole.status).toBe(200);
    expect(whole.body.equals(body)).toBe(true);
    const ranged = await dav(`${fx.url}${path}`, "GET", { headers: { range: "bytes=100-" } });
    expect(ranged.status).toBe(206);
    expect(ranged.body.equals(body.subarray(100))).toBe(true);
    // Each read: the redirect, then the object from the other origin.
    const s = (await stats(fx.emu.url)) as { storage?: { requests: Record<string, number> } };
    expect(s.storage?.requests["GET object"]).toBe(4);
  });
});
