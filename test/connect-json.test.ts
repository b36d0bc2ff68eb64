// The Connect protocol with JSON bodies, as curl or a browser would send
// it: a typo in an enum name or a field name is refused, never dropped.
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, snapshot, startTestServer } from "./support/harness.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

/** POSTs a JSON body to a method over HTTP/2 cleartext. */
async function postJson(method: string, body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const session = http2.connect(`http://${t.address}`);
  try {
    return await new Promise((resolve, reject) => {
      const request = session.request({
        ":method": "POST",
        ":path": `/actionq.v1.ActionQueueService/${method}`,
        "content-type": "application/json",
      });
      let status = 0;
      let text = "";
      request.on("response", (headers) => (status = Number(headers[":status"])));
      request.setEncoding("utf8");
      request.on("data", (chunk: string) => (text += chunk));
      request.on("end", () => resolve({ status, json: JSON.parse(text) as Record<string, unknown> }));
      request.on("error", reject);
      request.end(body);
    });
  } finally {
    session.close();
  }
}

describe("Connect JSON", () => {
  it("enqueues and reads back an action with a JSON body", async () => {
    const created = await postJson("EnqueueAction", JSON.stringify({ actionType: "collect_diagnostics", createdBy: "human:curl", payload: { depth: 2 } }));
    expect(created.status).toBe(200);
    const action = created.json.action as { id: string; status: string; payload: unknown };
    expect(action.status).toBe("ACTION_STATUS_APPROVED");
    expect(action.payload).toEqual({ depth: 2 });
    const got = await postJson("GetAction", JSON.stringify({ id: action.id }));
    expect((got.json.action as { id: string }).id).toBe(action.id);
  });

  it("refuses a misspelled risk level instead of treating it as SAFE, and writes nothing", async () => {
    const before = await snapshot(t.db);
    const res = await postJson("EnqueueAction", JSON.stringify({ actionType: "redeploy_service", createdBy: "agent:x", riskLevel: "RISK_LEVEL_DANGEROUSS" }));
    expect(res.json.code).toBe("invalid_argument");
    expect(String(res.json.message)).toContain("RISK_LEVEL_DANGEROUSS");
    expect(await snapshot(t.db)).toBe(before);
  });

  it("refuses an unknown field and a payload that is not an object, and writes nothing", async () => {
    const before = await snapshot(t.db);
    const unknown = await postJson("EnqueueAction", JSON.stringify({ actionType: "x", createdBy: "human:curl", dryRun: true }));
    expect(unknown.json.code).toBe("invalid_argument");
    expect(String(unknown.json.message)).toContain("dryRun");
    const array = await postJson("EnqueueAction", JSON.stringify({ actionType: "x", createdBy: "human:curl", payload: [1, 2] }));
    expect(array.json.code).toBe("invalid_argument");
    expect(await snapshot(t.db)).toBe(before);
  });

  it("answers an unknown id with not_found and the ErrorInfo reason", async () => {
    const res = await postJson("GetAction", JSON.stringify({ id: "987654" }));
    expect(res.status).toBe(404);
    expect(res.json.code).toBe("not_found");
    const details = res.json.details as { type: string; debug: { reason: string } }[];
    expect(details[0]!.type).toBe("google.rpc.ErrorInfo");
    expect(details[0]!.debug.reason).toBe("ACTION_NOT_FOUND");
  });
});
