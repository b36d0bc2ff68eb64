// The lease on a webhook endpoint (migration 012), in the store: one holder
// at a time, taken over only once it runs out, and every write of the
// endpoint's delivery state refused to a sender that no longer holds it.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../src/store/db.js";
import { advanceEndpoint, endpointFailed, ensureEndpoints, releaseEndpointLease, renewEndpointLease, takeEndpointLease } from "../src/store/webhooks.js";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";

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
