// The lease on a webhook endpoint (migration 012), in the store: one holder
// at a time, taken over only once it runs out, and every write of the
// endpoint's delivery state refused to a sender that no longer holds it.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../src/store/db.js";
import { advanceEndpoint, endpointFailed, ensureEndpoints, releaseEndpointLease, renewEndpointLease, takeEndpointLease } from "../src/store/webhooks.js";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { eventually, sleep } from "./support/wait.js";
import { Receiver, newSecret } from "./support/webhook-receiver.js";

let t: TestServer;
let pool: pg.Pool;

beforeAll(async () => {
  t = await startTestServer();
  pool = createPool({ url: t.databaseUrl, schema: t.schema, pooler: "none" }, 2);
});
afterAll(async () => {
  await pool?.end();
  await closeWithin(t);
});

describe("an endpoint's lease", () => {
  it("has one holder; another takes it only once it runs out, and the old holder's writes then change nothing", async () => {
    await ensureEndpoints(pool, ["leased"]);
    const first = await takeEndpointLease(pool, "leased", "server-a", 60_000);
    expect(first).toMatchObject({ name: "leased", attempts: 0 });
    expect(await takeEndpointLease(pool, "leased", "server-b", 60_000)).toBeUndefined();
    expect(await renewEndpointLease(pool, "leased", "server-a", 60_000)).toBe(true);
    expect(await advanceEndpoint(pool, "leased", "server-a", first!.cursor, false)).toBe(true);
    expect(await advanceEndpoint(pool, "leased", "server-b", first!.cursor, false)).toBe(false);

    // The holder stops renewing: the lease runs out, and b takes it.
    await t.db.query("UPDATE webhook_endpoints SET lease_expires_at = now() - interval '1 second' WHERE name = 'leased'");
    expect(await takeEndpointLease(pool, "leased", "server-b", 60_000)).toBeDefined();
    expect(await renewEndpointLease(pool, "leased", "server-a", 60_000)).toBe(false);
    expect(await advanceEndpoint(pool, "leased", "server-a", "999999", true)).toBe(false);
    expect(await endpointFailed(pool, "leased", "server-a", 1000, "late")).toBeUndefined();
    const { rows } = await t.db.query("SELECT cursor::text, attempts, lease_holder FROM webhook_endpoints WHERE name = 'leased'");
    expect(rows[0]).toEqual({ cursor: first!.cursor, attempts: 0, lease_holder: "server-b" });

    // Given back, it is free at once.
    await releaseEndpointLease(pool, "leased", "server-b");
    expect(await takeEndpointLease(pool, "leased", "server-a", 60_000)).toBeDefined();
  });
});

describe("a sender whose lease is taken from it", () => {
  it("cuts its request in flight, sends nothing more, and carries on once the lease is free again", { timeout: 60_000 }, async () => {
    const secret = newSecret();
    const receiver = await Receiver.start(secret);
    const dir = await mkdtemp(path.join(tmpdir(), "actionq-lease-"));
    const file = path.join(dir, "webhooks.yaml");
    await writeFile(
      file,
      `endpoints:\n  - { name: taken, url: "${receiver.url("/taken")}", secret: "${secret}", events: [approval_requested], timeout: 60s }\n`,
    );
    const server = await startTestServer({ ACTIONQ_WEBHOOKS_FILE: file, ACTIONQ_POLL_INTERVAL_SECONDS: "0.2" });
    try {
      receiver.answer("/taken", () => "hang");
      await server.grpc.unary("EnqueueAction", { actionType: "lease_taken", riskLevel: "RISK_LEVEL_GUARDED", createdBy: "agent:bot" });
      await eventually(() => receiver.hanging === 1 || undefined, "the request held open");
      // Another holder, as if this server had been cut off for longer than its lease.
      await server.db.query("UPDATE webhook_endpoints SET lease_holder = 'intruder', lease_expires_at = now() + interval '1 hour' WHERE name = 'taken'");
      // The next renewal (every 3.3 s) finds the lease gone and cuts the
      // request; the bound only has to stay under the endpoint's 60 s timeout,
      // which would otherwise end it.
      await eventually(() => receiver.hanging === 0 || undefined, "the request cut", 20_000);
      const sent = receiver.all("/taken").length;
      await sleep(1000);
      expect(receiver.all("/taken")).toHaveLength(sent);

      receiver.answer("/taken", () => 204);
      await server.db.query("UPDATE webhook_endpoints SET lease_holder = NULL, lease_expires_at = NULL WHERE name = 'taken'");
      await eventually(() => receiver.delivered("/taken").length === 1 || undefined, "the notification delivered under the lease taken again", 20_000);
      const { rows } = await server.db.query("SELECT lease_holder FROM webhook_endpoints WHERE name = 'taken'");
      expect(rows[0].lease_holder).toMatch(/:\d+:/);
      expect(new Set(receiver.all("/taken").map((r) => r.id)).size).toBe(1);
    } finally {
      await closeWithin(server);
      await receiver.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
