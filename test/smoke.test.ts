import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startTestServer } from "./support/harness.js";

describe("smoke", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("enqueues through grpc-js and reads back through Connect", async () => {
    const res = await t.grpc.unary<{ action: { id: string; status: string } }>("EnqueueAction", { actionType: "collect_diagnostics", createdBy: "human:t" });
    expect(res.action.status).toBe("ACTION_STATUS_APPROVED");
    const got = await t.client.getAction({ id: BigInt(res.action.id) });
    expect(got.events.map((e) => e.eventType)).toEqual(["action_enqueued", "action_approved"]);
  });
});
