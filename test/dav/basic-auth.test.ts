/** BasicAuth: header parsing, the remembered checks and throttling by (address, user). */
import { describe, expect, it } from "vitest";
import { BasicAuth } from "../../src/dav/basic-auth.js";

const basic = (name: string, password: string) =>
  `Basic ${Buffer.from(`${name}:${password}`).toString("base64")}`;

function fixture() {
  let now = 1_000_000;
  const checks: string[] = [];
  const auth = new BasicAuth(
    async (name, password) => {
      checks.push(name);
      return password === `${name}-pw` ? name : undefined;
    },
    () => now,
  );
  return { auth, checks, advance: (ms: number) => (now += ms) };
}

describe("BasicAuth", () => {
  it("checks a header once and remembers it for a while", async () => {
    const { auth, checks, advance } = fixture();
    const header = basic("ann", "ann-pw");
    for (let i = 0; i < 5; i++)
      expect(await auth.authenticate(header, "10.0.0.1")).toEqual({ ok: true, user: "ann" });
    expect(checks).toEqual(["ann"]);
    advance(10 * 60_000);
    await auth.authenticate(header, "10.0.0.1");
    expect(checks).toEqual(["ann", "ann"]);
  });

  it("checks of the same header at once share one", async () => {
    const { auth, checks } = fixture();
    const header = basic("ann", "ann-pw");
    const all = await Promise.all(Array.from({ length: 8 }, () => auth.authenticate(header, "a")));
    expect(all.every((o) => o.ok)).toBe(true);
    expect(checks).toEqual(["ann"]);
  });

  it("signs in under the name the check gives (e.g. an email in its canonical case)", async () => {
    const auth = new BasicAuth(async (name) => name.toLowerCase());
    expect(await auth.authenticate(basic("Ann@Example.com", "pw"), "a")).toEqual({
      ok: true,
      user: "ann@example.com",
    });
  });

  it("forget() and forgetAll() make remembered users be checked again", async () => {
    const { auth, checks } = fixture();
    await auth.authenticate(basic("ann", "ann-pw"), "a");
    auth.forget("ann");
    await auth.authenticate(basic("ann", "ann-pw"), "a");
    expect(checks).toEqual(["ann", "ann"]);
    auth.forgetAll();
    await auth.authenticate(basic("ann", "ann-pw"), "a");
    expect(checks).toEqual(["ann", "ann", "ann"]);
  });

  it("refuses missing, non-Basic and malformed headers without calling the check", async () => {
    const { auth, checks } = fixture();
    for (const header of [undefined, "", "Bearer x", "Basic %%%", basic("ann", "x").slice(0, 8)])
      expect((await auth.authenticate(header, "a")).ok).toBe(false);
    expect(checks).toEqual([]);
  });

  it("10 failures throttle that address and name only, with the seconds left", async () => {
    const { auth, advance } = fixture();
    for (let i = 0; i < 10; i++)
      expect(await auth.authenticate(basic("ann", `bad${i}`), "10.0.0.1")).toEqual({
        ok: false,
        throttled: false,
      });
    advance(15_000);
    expect(await auth.authenticate(basic("ann", "ann-pw"), "10.0.0.1")).toEqual({
      ok: false,
      throttled: true,
      retryAfterSeconds: 45,
    });
    // The same user elsewhere, and another user here, are not locked out.
    expect((await auth.authenticate(basic("ann", "ann-pw"), "10.0.0.2")).ok).toBe(true);
    expect((await auth.authenticate(basic("bob", "bob-pw"), "10.0.0.1")).ok).toBe(true);
    advance(45_000);
    expect((await auth.authenticate(basic("ann", "ann-pw"), "10.0.0.1")).ok).toBe(true);
  });

  it("an address trying many names is stopped after 100 failures", async () => {
    const { auth } = fixture();
    for (let i = 0; i < 100; i++) await auth.authenticate(basic(`user${i}`, "x"), "10.0.0.9");
    const outcome = await auth.authenticate(basic("newcomer", "newcomer-pw"), "10.0.0.9");
    expect(outcome).toMatchObject({ ok: false, throttled: true });
    expect((await auth.authenticate(basic("newcomer", "newcomer-pw"), "10.0.0.8")).ok).toBe(true);
  });

  it("a check that cannot tell (the upstream is down) is not a failure", async () => {
    let down = true;
    const auth = new BasicAuth(async () => {
      if (down) throw new Error("unreachable");
      return "ann";
    });
    for (let i = 0; i < 12; i++)
      await expect(auth.authenticate(basic("ann", "pw"), "a")).rejects.toThrow("unreachable");
    down = false;
    expect((await auth.authenticate(basic("ann", "pw"), "a")).ok).toBe(true);
  });
});
