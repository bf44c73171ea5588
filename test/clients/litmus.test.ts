import { beforeAll, describe, it } from "vitest";
import { useGateway } from "../helpers/gateway.js";
import { expectLitmusPasses, LITMUS_TIMEOUT_MS } from "./litmus.js";
import { requireTool } from "./tools.js";

describe("litmus 0.13 against the gateway", () => {
  const fx = useGateway();

  beforeAll(() => {
    requireTool("litmus", "litmus"); // missing in CI: a failure, never a skip
  });

  it(
    "passes every test of basic, copymove, props, locks and http",
    () => expectLitmusPasses(`${fx.url}/`),
    LITMUS_TIMEOUT_MS + 30_000,
  );
});
