// Change windows and break-glass. The window arithmetic is a pure function
// of the policy and an instant (src/policy/windows.ts), so it is tested at
// chosen instants, across window boundaries and the DST changes of
// Europe/Berlin and America/New_York, through the real policy parser. The
// server is tested over the wire with windows placed around the real now:
// a held action stays out of ClaimAction and of an open stream while its
// window is closed and reaches that stream the moment the window opens,
// with the sweeper and the backstop poll an hour away.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePolicy } from "../src/policy/policy.js";
import { closedIntervals, closedWindowFor, windowStates } from "../src/policy/windows.js";
import { runActionctl } from "./support/actionctl.js";
import { bearer, principal, removeAuthDirs, writeAuthFile } from "./support/auth.js";
import { type TestServer, closeWithin, grpcError, startTestServer } from "./support/harness.js";
import { enqueuedPolicy, removePolicyDirs, rewritePolicy, unique, writePolicy } from "./support/safety.js";
import { cancelAfterEach, isClaim, openClaimStream, waitingFor } from "./support/streams.js";
import { requireBuiltCli } from "./support/processes.js";
import { sleep } from "./support/wait.js";
import { STATUS, type WireAction, claimNext, enqueue, errorInfoOf, expectRefused, fromStruct, getAction, messageOf, millis } from "./support/wire.js";

const at = (iso: string) => new Date(iso);
const windowsOf = (yaml: string) => parsePolicy(yaml, "test-policy.yaml").policy.windows;

const WEEKEND = `
windows:
  - name: weekend-freeze
    effect: hold_claims
    time_zone: Europe/Berlin
    recurring:
      - { from: "Fri 16:00", to: "Mon 08:00" }
`;

describe("window arithmetic at injected instants", () => {
  it("a weekly span is closed from Friday 16:00 to Monday 08:00 Berlin time, and open on either side", () => {
    const windows = windowsOf(WEEKEND);
    // 2026-12-04 is a Friday; Berlin is UTC+1 in December.
    expect(windowStates(windows, at("2026-12-04T14:59:59Z"))[0]).toMatchObject({ closed: false, nextChange: at("2026-12-04T15:00:00Z") });
    expect(windowStates(windows, at("2026-12-04T15:00:00Z"))[0]).toMatchObject({ closed: true, nextChange: at("2026-12-07T07:00:00Z") });
    expect(windowStates(windows, at("2026-12-07T06:59:59Z"))[0]).toMatchObject({ closed: true, nextChange: at("2026-12-07T07:00:00Z") });
    expect(windowStates(windows, at("2026-12-07T07:00:00Z"))[0]).toMatchObject({ closed: false, nextChange: at("2026-12-11T15:00:00Z") });
  });

  it("the weekend in which Berlin springs forward is an hour shorter; the one in which it falls back an hour longer", () => {
    const windows = windowsOf(WEEKEND);
    // 2026-03-29 and 2026-10-25 are the Sundays of the changes.
    const spring = closedIntervals(windows, at("2026-03-28T00:00:00Z"), at("2026-03-28T00:00:01Z"));
    expect(spring.map((i) => [i.start.toISOString(), i.end.toISOString()])).toEqual([["2026-03-27T15:00:00.000Z", "2026-03-30T06:00:00.000Z"]]);
    const autumn = closedIntervals(windows, at("2026-10-24T00:00:00Z"), at("2026-10-24T00:00:01Z"));
    expect(autumn.map((i) => [i.start.toISOString(), i.end.toISOString()])).toEqual([["2026-10-23T14:00:00.000Z", "2026-10-26T07:00:00.000Z"]]);
    expect(spring[0]!.end.getTime() - spring[0]!.start.getTime()).toBe(63 * 3600_000);
    expect(autumn[0]!.end.getTime() - autumn[0]!.start.getTime()).toBe(65 * 3600_000);
  });

  it("a bound that does not exist (spring forward) is the same clock time after the jump; one that exists twice (fall back) is its second occurrence", () => {
    const berlin = windowsOf(`
windows:
  - name: night
    effect: hold_claims
    time_zone: Europe/Berlin
    recurring: [{ from: "01:00", to: "02:30" }]
`);
    // 2026-03-29 02:30 does not exist in Berlin: it is 03:30 CEST (01:30Z).
    expect(closedIntervals(berlin, at("2026-03-29T00:30:00Z"), at("2026-03-29T00:30:01Z")).map((i) => [i.start.toISOString(), i.end.toISOString()])).toEqual([
      ["2026-03-29T00:00:00.000Z", "2026-03-29T01:30:00.000Z"],
    ]);
    expect(windowStates(berlin, at("2026-03-29T01:29:59Z"))[0]!.closed).toBe(true);
    expect(windowStates(berlin, at("2026-03-29T01:30:00Z"))[0]!.closed).toBe(false);
    // 2026-10-25 02:30 happens twice: the second one, CET (01:30Z). 01:00
    // happens once (CEST, 23:00Z the day before).
    expect(closedIntervals(berlin, at("2026-10-25T00:00:00Z"), at("2026-10-25T00:00:01Z")).map((i) => [i.start.toISOString(), i.end.toISOString()])).toEqual([
      ["2026-10-24T23:00:00.000Z", "2026-10-25T01:30:00.000Z"],
    ]);

    const newYork = windowsOf(`
windows:
  - name: early
    effect: stop_auto_approval
    time_zone: America/New_York
    recurring: [{ from: "Sun 02:30", to: "Sun 05:00" }]
`);
    // 2026-03-08: 02:30 does not exist in New York; it is 03:30 EDT (07:30Z).
    expect(closedIntervals(newYork, at("2026-03-08T08:00:00Z"), at("2026-03-08T08:00:01Z")).map((i) => [i.start.toISOString(), i.end.toISOString()])).toEqual([
      ["2026-03-08T07:30:00.000Z", "2026-03-08T09:00:00.000Z"],
    ]);
    // 2026-11-01: 02:30 exists once (EST), after 01:00-01:59 came twice.
    expect(closedIntervals(newYork, at("2026-11-01T08:00:00Z"), at("2026-11-01T08:00:01Z")).map((i) => [i.start.toISOString(), i.end.toISOString()])).toEqual([
      ["2026-11-01T07:30:00.000Z", "2026-11-01T10:00:00.000Z"],
    ]);
  });

  it("a daily span past midnight, one-off intervals in local time and with an offset, and the matchers", () => {
    const windows = windowsOf(`
windows:
  - name: nights
    effect: stop_auto_approval
    time_zone: America/New_York
    action_types: ["redeploy_*"]
    recurring: [{ from: "22:00", to: "06:00" }]
  - name: holidays
    effect: hold_claims
    time_zone: Europe/Berlin
    projects: [shop]
    risk_levels: [guarded, dangerous]
    once:
      - { from: "2026-12-24T00:00", to: "2026-12-27T00:00" }
      - { from: "2026-12-31T12:00:00Z", to: "2027-01-01T12:00:00+01:00" }
`);
    const redeploy = { actionType: "redeploy_service", project: "any", riskLevel: "guarded" as const };
    // 23:00 EST on 2026-12-07 is 04:00Z on the 8th; it opens at 06:00 EST.
    expect(closedWindowFor(windows, "stop_auto_approval", redeploy, at("2026-12-08T04:00:00Z"))).toEqual({ name: "nights", until: at("2026-12-08T11:00:00Z") });
    expect(closedWindowFor(windows, "stop_auto_approval", redeploy, at("2026-12-08T11:00:00Z"))).toBeNull();
    expect(closedWindowFor(windows, "stop_auto_approval", { ...redeploy, actionType: "drain_node" }, at("2026-12-08T04:00:00Z"))).toBeNull();

    const shop = { actionType: "x", project: "shop", riskLevel: "guarded" as const };
    expect(closedWindowFor(windows, "hold_claims", shop, at("2026-12-23T22:59:59Z"))).toBeNull();
    expect(closedWindowFor(windows, "hold_claims", shop, at("2026-12-23T23:00:00Z"))).toEqual({ name: "holidays", until: at("2026-12-26T23:00:00Z") });
    expect(closedWindowFor(windows, "hold_claims", { ...shop, riskLevel: "safe" }, at("2026-12-25T00:00:00Z"))).toBeNull();
    expect(closedWindowFor(windows, "hold_claims", { ...shop, project: "blog" }, at("2026-12-25T00:00:00Z"))).toBeNull();
    expect(closedWindowFor(windows, "hold_claims", shop, at("2026-12-31T12:00:00Z"))).toEqual({ name: "holidays", until: at("2027-01-01T11:00:00Z") });
  });

  it.for([
    ["a time zone that is not IANA", "time_zone: Mars/Olympus_Mons\n    recurring: [{ from: '10:00', to: '11:00' }]", "windows[0].time_zone"],
    ["an unknown effect", "time_zone: UTC\n    recurring: [{ from: '10:00', to: '11:00' }]\n    effect2: x", "windows[0]"],
    ["a span hour past 23", "time_zone: UTC\n    recurring: [{ from: 'Fri 25:00', to: 'Mon 08:00' }]", "windows[0].recurring[0].from"],
    ["a weekly start with a daily end", "time_zone: UTC\n    recurring: [{ from: 'Fri 16:00', to: '08:00' }]", "windows[0].recurring[0].to"],
    ["a one-off that ends before it starts", "time_zone: UTC\n    once: [{ from: '2026-12-27T00:00', to: '2026-12-24T00:00' }]", "windows[0].once[0].to"],
    ["a one-off that is not a time", "time_zone: UTC\n    once: [{ from: 'Christmas', to: '2026-12-24T00:00' }]", "windows[0].once[0].from"],
    ["neither spans nor intervals", "time_zone: UTC", "windows[0].recurring"],
  ])("refuses %s, naming the key", ([, body, key]) => {
    const yaml = `windows:\n  - name: w\n    effect: hold_claims\n    ${body}\n`;
    expect(() => parsePolicy(yaml, "bad.yaml")).toThrow(key);
  });

  it("refuses two windows with one name, and names the second", () => {
    const yaml =
      "windows:\n  - { name: w, effect: hold_claims, time_zone: UTC, recurring: [{ from: '10:00', to: '11:00' }] }\n  - { name: w, effect: hold_claims, time_zone: UTC, recurring: [{ from: '12:00', to: '13:00' }] }\n";
    expect(() => parsePolicy(yaml, "bad.yaml")).toThrow("windows[1].name");
  });

  it("a policy without windows keeps the version it had before windows existed", () => {
    expect(parsePolicy("name: same\nmode: standard\n", "a.yaml").version).toBe(parsePolicy("name: same\nmode: standard\nwindows: []\n", "b.yaml").version);
  });
});

/** HH:MM in UTC, `minutes` from now. */
function utcClock(minutes: number): string {
  return new Date(Date.now() + minutes * 60_000).toISOString().slice(11, 16);
}

describe("change windows over the wire", () => {
  let t: TestServer;
  let policyFile: string;
  /** When the short hold_claims window opens. */
  let opensAt: number;
  const track = cancelAfterEach();
  const heldType = unique("held");
  const glassType = unique("glass");

  beforeAll(async () => {
    // Closed since an hour ago; opens some seconds after the server is up,
    // late enough that the first test still finds it closed on a slow machine.
    opensAt = Date.now() + 12_000;
    policyFile = await writePolicy(`
name: windows-e2e
windows:
  - name: short-freeze
    effect: hold_claims
    time_zone: Europe/Berlin
    action_types: ["${heldType}"]
    once: [{ from: "${new Date(Date.now() - 3600_000).toISOString()}", to: "${new Date(opensAt).toISOString()}" }]
  - name: long-freeze
    effect: hold_claims
    time_zone: UTC
    action_types: ["${glassType}*"]
    once: [{ from: "${new Date(Date.now() - 3600_000).toISOString()}", to: "${new Date(Date.now() + 3 * 3600_000).toISOString()}" }]
  - name: no-auto-approval
    effect: stop_auto_approval
    time_zone: UTC
    action_types: ["frozen_*"]
    recurring: [{ from: "${utcClock(-60)}", to: "${utcClock(60)}" }]
`);
    // No sweep and no backstop poll in this test's time: only the window's
    // own timer can wake the stream.
    t = await startTestServer({
      ACTIONQ_POLICY: policyFile,
      ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
      ACTIONQ_POLL_INTERVAL_SECONDS: "3600",
      ACTIONQ_METRICS_LISTEN: "127.0.0.1:0",
    });
  });
  afterAll(async () => {
    await closeWithin(t);
    await removePolicyDirs();
  });

  it("hold_claims keeps a matching action out of ClaimAction and an open stream while closed, and delivers it the moment the window opens", async () => {
    const held = (await enqueue(t, { actionType: heldType, project: "dev" })).action;
    const free = (await enqueue(t, { actionType: unique("free"), project: "dev" })).action;
    expect(held.status).toBe(STATUS.approved);
    const stream = track(openClaimStream(t, { worker: "w:held", actionTypes: [heldType], maxInFlight: 4 }));
    expect(await claimNext(t, { worker: "w:unary", actionTypes: [heldType] })).toBeNull();
    // Other work is not held.
    expect((await claimNext(t, { worker: "w:unary", actionTypes: [free.actionType] }))?.action.id).toBe(free.id);

    // Still closed now (or the test proves nothing).
    expect(Date.now()).toBeLessThan(opensAt - 1000);
    const view = await t.grpc.unary<{ windowHold: { windowName: string; untilTime: { seconds: string; nanos: number } } | null }>("GetAction", { id: held.id });
    expect(view.windowHold?.windowName).toBe("short-freeze");
    expect(millis(view.windowHold?.untilTime)).toBe(Math.floor(opensAt));
    const stats = await t.grpc.unary<{
      changeWindows: { enforcedPolicyVersion: string; windows: { name: string; closed: boolean; held: string; effect: string }[] };
    }>("GetQueueStats", {});
    expect(stats.changeWindows.enforcedPolicyVersion).toMatch(/^windows-e2e@/);
    expect(stats.changeWindows.windows.find((w) => w.name === "short-freeze")).toMatchObject({ closed: true, held: "1", effect: "hold_claims" });
    expect(stats.changeWindows.windows.find((w) => w.name === "no-auto-approval")).toMatchObject({ closed: true, held: "0" });
    const metrics = await (await fetch(`http://127.0.0.1:${t.server.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^actionq_window_held_actions\{window="short-freeze"\} 1$/m);
    await sleep(300);
    expect(stream.received.filter(isClaim)).toHaveLength(0);

    // No poll or sweep for an hour: only the window's timer can deliver it.
    const [claim] = await stream.atLeast(1, isClaim, "the held action, once its window opens", opensAt - Date.now() + 10_000);
    expect(claim!.kind === "claim" && claim!.claim.action.id).toBe(held.id);
    const { events } = await getAction(t, held.id);
    const claimed = events.find((e) => e.eventType === "action_claimed")!;
    expect(millis(claimed.createTime)).toBeGreaterThanOrEqual(opensAt);
    const after = await t.grpc.unary<{ windowHold: unknown }>("GetAction", { id: held.id });
    expect(after.windowHold).toBeNull();
  });

  it("stop_auto_approval makes a SAFE action wait in PENDING, naming the window in the decision", async () => {
    const frozen = (await enqueue(t, { actionType: unique("frozen"), project: "dev" })).action;
    expect(frozen.status).toBe(STATUS.pending);
    const decision = enqueuedPolicy((await getAction(t, frozen.id)).events);
    expect(decision).toMatchObject({ decision: "needs_approval", autonomous_eligible: true, window: { name: "no-auto-approval" } });
    expect(String(decision.reason)).toContain("change window no-auto-approval");
    const other = (await enqueue(t, { actionType: unique("thaw"), project: "dev" })).action;
    expect(other.status).toBe(STATUS.approved);
  });

  it("break-glass needs a reason, and a PENDING or APPROVED action", async () => {
    const action = (await enqueue(t, { actionType: `${glassType}_a`, project: "dev" })).action;
    await expectRefused(t, () => t.grpc.unary("BreakGlass", { id: action.id, actor: "human:ops", reason: "" }), {
      code: status.INVALID_ARGUMENT,
      reason: "INVALID_FIELD",
      field: "reason",
    });
    await t.grpc.unary("CancelAction", { id: action.id, actor: "human:ops", reason: "not needed" });
    await expectRefused(t, () => t.grpc.unary("BreakGlass", { id: action.id, actor: "human:ops", reason: "now" }), {
      code: status.FAILED_PRECONDITION,
      reason: "INVALID_TRANSITION",
      currentStatus: "CANCELLED",
    });
  });

  it("break-glass lets one held action be claimed inside the closed window, recorded with actor and reason", async () => {
    const glass = (await enqueue(t, { actionType: `${glassType}_b`, project: "dev" })).action;
    const still = (await enqueue(t, { actionType: `${glassType}_b`, project: "dev" })).action;
    const stream = track(openClaimStream(t, { worker: "w:glass", actionTypes: [glass.actionType], maxInFlight: 4 }));
    // The stream has looked and found nothing it may take.
    await waitingFor(t, "w:glass");
    expect(stream.received.filter(isClaim)).toHaveLength(0);

    const { action } = await t.grpc.unary<{ action: WireAction & { breakGlassBy: string; breakGlassReason: string } }>("BreakGlass", {
      id: glass.id,
      actor: "human:ops",
      reason: "the outage is worse than the freeze",
    });
    expect(action).toMatchObject({ status: STATUS.approved, breakGlassBy: "human:ops", breakGlassReason: "the outage is worse than the freeze" });
    // Delivered at once, by the commit's wakeup (no poll runs in this test).
    const [claim] = await stream.atLeast(1, isClaim, "the action glass was broken for", 10_000);
    expect(claim!.kind === "claim" && claim!.claim.action.id).toBe(glass.id);

    const events = (await getAction(t, glass.id)).events;
    const broken = events.find((e) => e.eventType === "break_glass");
    expect(broken?.actor).toBe("human:ops");
    expect(fromStruct(broken!.payload)).toEqual({ reason: "the outage is worse than the freeze", status: "approved", closed_windows: ["long-freeze"] });
    // The other action of the type stays held.
    await sleep(200);
    expect(stream.received.filter(isClaim)).toHaveLength(1);
    expect((await t.grpc.unary<{ windowHold: { windowName: string } | null }>("GetAction", { id: still.id })).windowHold?.windowName).toBe("long-freeze");
  });

  it("actionctl: show says which window holds an action, stats lists the windows, break-glass needs --reason and says what it did", async () => {
    requireBuiltCli();
    const env = { ACTIONQ_ADDR: `http://${t.address}` };
    const held = (await enqueue(t, { actionType: `${glassType}_cli`, project: "dev" })).action;
    const show = await runActionctl(["-o", "table", "show", held.id], env);
    expect((await runActionctl(["-o", "json", "show", held.id], env)).stdout).toContain('"window_name": "long-freeze"');
    expect(show.stdout).toMatch(/held\s+by change window long-freeze until \d{4}-\d{2}-\d{2}T/);
    const stats = await runActionctl(["-o", "table", "stats"], env);
    expect(stats.stdout).toContain("change windows:");
    expect(stats.stdout).toMatch(/long-freeze \(hold_claims, UTC\): CLOSED, opens \S+, holding \d+/);
    expect(stats.stdout).toMatch(/no-auto-approval \(stop_auto_approval, UTC\): CLOSED/);

    const nothing = await runActionctl(["-o", "table", "claim", "--worker", "w:cli", "--type", held.actionType], env);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/nothing to claim: \d+ approved action\(s\) held by change window long-freeze until \S+; .*break-glass/);

    const noReason = await runActionctl(["break-glass", held.id, "--actor", "human:ops"], env);
    expect(noReason.code).not.toBe(0);
    expect(noReason.stderr).toContain("--reason");
    const broken = await runActionctl(["-o", "table", "break-glass", held.id, "--actor", "human:ops", "--reason", "hotfix for incident 7"], env);
    expect({ code: broken.code, stderr: broken.stderr }).toMatchObject({ code: 0 });
    expect(broken.stdout).toContain("glass broken");
    expect(broken.stdout).toMatch(/break-glass\s+human:ops .*: hotfix for incident 7/);
    const history = await runActionctl(["-o", "table", "history", held.id], env);
    expect(history.stdout).toMatch(/break_glass\s+human:ops\s+reason hotfix for incident 7; inside closed window\(s\) long-freeze/);
  });

  it("an invalid window on reload is INVALID_ARGUMENT naming the key; the windows in force stay", async () => {
    const before = await t.grpc.unary<{ policyVersion: string }>("GetPolicy", {});
    const original = (await import("node:fs/promises")).readFile(policyFile, "utf8");
    await rewritePolicy(
      policyFile,
      "name: windows-e2e\nwindows:\n  - name: w\n    effect: hold_claims\n    time_zone: Europe/Berlln\n    recurring: [{ from: '10:00', to: '11:00' }]\n",
    );
    const error = await grpcError(t.grpc.unary("ReloadPolicy", { actor: "human:ops" }));
    expect(status[error.code]).toBe("INVALID_ARGUMENT");
    expect(messageOf(error)).toContain("windows[0].time_zone");
    expect(errorInfoOf(error)?.reason).toBe("INVALID_POLICY");
    expect((await t.grpc.unary<{ policyVersion: string }>("GetPolicy", {})).policyVersion).toBe(before.policyVersion);
    await rewritePolicy(policyFile, await original);
  });
});

describe("break-glass with authentication", () => {
  let t: TestServer;
  const operator = principal("human:operator", ["operator"]);
  const approver = principal("human:approver", ["approver", "viewer"]);
  const producer = principal("app:producer", ["producer"]);

  beforeAll(async () => {
    const policy = await writePolicy(`
windows:
  - name: freeze
    effect: hold_claims
    time_zone: UTC
    once: [{ from: "${new Date(Date.now() - 3600_000).toISOString()}", to: "${new Date(Date.now() + 3600_000).toISOString()}" }]
`);
    t = await startTestServer({ ACTIONQ_POLICY: policy, ACTIONQ_AUTH_FILE: await writeAuthFile([operator, approver, producer]) });
  });
  afterAll(async () => {
    await closeWithin(t);
    await removeAuthDirs();
    await removePolicyDirs();
  });

  it("only an operator may break glass; the event names the authenticated principal", async () => {
    const { action } = await t.grpc.unary<{ action: WireAction }>("EnqueueAction", { actionType: unique("auth"), project: "dev" }, bearer(producer.tokens[0]));
    for (const who of [approver, producer]) {
      const error = await grpcError(t.grpc.unary("BreakGlass", { id: action.id, reason: "please" }, bearer(who.tokens[0])));
      expect(status[error.code]).toBe("PERMISSION_DENIED");
      expect(errorInfoOf(error)?.reason).toBe("ROLE_REQUIRED");
    }
    const denied = await grpcError(t.grpc.unary("BreakGlass", { id: action.id, actor: "human:someone-else", reason: "please" }, bearer(operator.tokens[0])));
    expect(errorInfoOf(denied)?.reason).toBe("IDENTITY_MISMATCH");
    const { rows } = await t.db.query<{ n: string }>("SELECT count(*)::text AS n FROM events WHERE action_id = $1 AND event_type = 'break_glass'", [action.id]);
    expect(rows[0]!.n).toBe("0");

    const granted = await t.grpc.unary<{ action: { breakGlassBy: string } }>(
      "BreakGlass",
      { id: action.id, reason: "incident 42" },
      bearer(operator.tokens[0]),
    );
    expect(granted.action.breakGlassBy).toBe("human:operator");
    const { rows: events } = await t.db.query<{ actor: string; payload: { reason: string; closed_windows: string[] } }>(
      "SELECT actor, payload FROM events WHERE action_id = $1 AND event_type = 'break_glass'",
      [action.id],
    );
    expect(events).toEqual([{ actor: "human:operator", payload: { reason: "incident 42", status: "approved", closed_windows: ["freeze"] } }]);
  });
});

describe("change windows on two servers with different policies", () => {
  let a: TestServer;
  let b: TestServer;

  afterAll(async () => {
    // b shares a's schema: stop it without dropping the schema, then a.
    b?.grpc.close();
    await b?.server.close();
    await b?.db.end();
    await closeWithin(a);
    await removePolicyDirs();
  });

  it("the last server to load or reload its policy sets the windows every server enforces, and GetQueueStats says whose they are", async () => {
    const window = (name: string) => `
name: ${name}
windows:
  - { name: ${name}-freeze, effect: hold_claims, time_zone: UTC, action_types: ["${name}_*"], once: [{ from: "2020-01-01T00:00:00Z", to: "2099-01-01T00:00:00Z" }] }
`;
    const fileA = await writePolicy(window("alpha"));
    a = await startTestServer({ ACTIONQ_POLICY: fileA });
    b = await startTestServer({ ACTIONQ_POLICY: await writePolicy(window("beta")) }, a.schema);
    type Stats = { policyVersion: string; changeWindows: { enforcedPolicyVersion: string } };
    const statsA = await a.grpc.unary<Stats>("GetQueueStats", {});
    expect(statsA.policyVersion).toMatch(/^alpha@/);
    expect(statsA.changeWindows.enforcedPolicyVersion).toMatch(/^beta@/);
    // beta's windows hold on a too; alpha's no longer do.
    const beta = (await enqueue(a, { actionType: "beta_job", project: "dev" })).action;
    const alpha = (await enqueue(a, { actionType: "alpha_job", project: "dev" })).action;
    expect((await claimNext(a, { worker: "w:a", actionTypes: ["beta_job"] })) ?? null).toBeNull();
    expect((await claimNext(a, { worker: "w:a", actionTypes: ["alpha_job"] }))?.action.id).toBe(alpha.id);

    // A reload on a puts its windows in force everywhere.
    await rewritePolicy(fileA, window("alpha").replace("name: alpha\n", "name: alpha\nquorum: { dangerous: 3 }\n"));
    await a.grpc.unary("ReloadPolicy", { actor: "human:ops" });
    const after = await b.grpc.unary<Stats>("GetQueueStats", {});
    expect(after.changeWindows.enforcedPolicyVersion).toBe((await a.grpc.unary<Stats>("GetQueueStats", {})).policyVersion);
    expect((await claimNext(b, { worker: "w:b", actionTypes: ["beta_job"] }))?.action.id).toBe(beta.id);
  });
});
