// Authorization over the wire (issue 6): one server with an auth file, and
// every RPC of ActionQueueService called by every principal of the matrix
// (one per role, a second worker and approver, a scoped principal, no
// credential, an unknown token) on its own resource, someone else's, and one
// outside the scope. The expected code of each cell comes from the rows in
// authz-table.ts, which follow the spec's role table; a refused call must
// leave the database as it was. Then the rules the matrix cannot show on its
// own: self-approval, quorums of principals, claim holders, scopes that
// narrow filters, reflection and health.
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";
import { type Outcome, type Principal, OK, bearer, healthCheck, outcomeOf, principal, reflectionList, removeAuthDirs, writeAuthFile } from "./support/auth.js";
import {
  CALLERS,
  type Caller,
  type CellKit,
  type Claimed,
  ELSEWHERE,
  type Expected,
  type Named,
  PRINCIPALS,
  type Place,
  type Prepared,
  ROWS,
  type Row,
  SCOPED_PROJECT,
  SCOPED_TYPES,
  type Variant,
  type Who,
  expectedOutcomes,
  holdsRole,
  matches,
} from "./support/authz-table.js";
import { type TestServer, snapshot, startTestServer } from "./support/harness.js";
import { STATUS, type WireAction, type WireClaim } from "./support/wire.js";

/** A second scoped principal, for the scope rules on their own. */
const SOLO = principal("team:solo", ["producer", "worker", "approver", "viewer", "operator"], { projects: ["solo"], actionTypes: ["solo_a", "solo_b"] });
/** Scoped on one axis each, for the pause rules. */
const TYPES_ONLY = principal("team:solo-types", ["operator"], { actionTypes: ["solo_a"] });
const PROJECTS_ONLY = principal("team:solo-projects", ["operator"], { projects: ["solo"] });
const UNKNOWN_TOKEN = randomBytes(32).toString("base64url");

let t: TestServer;

beforeAll(async () => {
  const file = await writeAuthFile([...Object.values(PRINCIPALS), SOLO, TYPES_ONLY, PROJECTS_ONLY]);
  t = await startTestServer({
    ACTIONQ_AUTH_FILE: file,
    ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
    ACTIONQ_HEARTBEAT_SECONDS: "0.5",
    ACTIONQ_RATE_LIMIT_PER_HOUR: "1000000",
  });
});

afterAll(async () => {
  await t?.close();
  await removeAuthDirs();
});

function tokenOf(who: Who | Principal): string | undefined {
  if (typeof who !== "string") return who.tokens[0];
  if (who === "none") return undefined;
  if (who === "unknown") return UNKNOWN_TOKEN;
  return PRINCIPALS[who].tokens[0];
}

function callerFor(who: Who | Principal): Caller {
  const token = tokenOf(who);
  const name = typeof who !== "string" ? who.name : who === "none" || who === "unknown" ? undefined : PRINCIPALS[who].name;
  return {
    name,
    unary: (method, request) => t.grpc.unary(method, request, bearer(token)),
    stream: (method, request) => t.grpc.stream(method, request, bearer(token)),
  };
}

// ---------------------------------------------------------------------------
// The matrix runner

let scopedTypesUsed = 0;
let cellCounter = 0;
const cellsChecked: { row: string; variant: string; who: Who; expected: string; got: string }[] = [];

const describeExpected = (e: Expected) => (e.code === "OK" ? "OK" : `${e.code} ${e.reason}${e.field ? ` (field ${e.field})` : ""}`);
const describeGot = (o: Outcome) =>
  o.code === "OK" ? "OK" : `${o.code} ${o.reason ?? "(no ErrorInfo)"} ${JSON.stringify(o.metadata ?? {})}${o.message ? `: ${o.message}` : ""}`;

/** The kit one cell prepares with, and the fingerprint of what it owns. */
function makeKit(who: Who, global: boolean) {
  const tag = `c${++cellCounter}`;
  const ids = new Set<string>();
  const types = new Set<string>();
  const pauses: { kind: string; value: string }[] = [];
  let n = 0;
  let startEventId = "0";
  const caller = callerFor(who);
  const scoped = who === "scoped";
  const home: Place = scoped
    ? {
        project: SCOPED_PROJECT,
        newType() {
          const type = SCOPED_TYPES[scopedTypesUsed++];
          if (!type) throw new Error("SCOPED_TYPES is too short for the matrix");
          types.add(type);
          return type;
        },
      }
    : {
        project: "matrix",
        newType() {
          const type = `m_${tag}_${n++}`;
          types.add(type);
          return type;
        },
      };
  const elsewhere: Place = {
    project: ELSEWHERE,
    newType() {
      const type = `m_${tag}_x${n++}`;
      types.add(type);
      return type;
    },
  };
  const producer = callerFor("producer");
  const enqueue = async (place: Place, extra: Record<string, unknown>): Promise<WireAction> => {
    const { action } = await producer.unary<{ action: WireAction }>("EnqueueAction", {
      actionType: place.newType(),
      project: place.project,
      createdBy: PRINCIPALS.producer.name,
      correlationId: tag,
      ...extra,
    });
    ids.add(action.id);
    return action;
  };
  const claimAs = async (place: Place, holder: Named, extra: Record<string, unknown> = {}): Promise<Claimed> => {
    const action = await enqueue(place, extra);
    expect(action.status).toBe(STATUS.approved);
    const { claim } = await callerFor(holder).unary<{ claim: WireClaim | null }>("ClaimAction", {
      worker: PRINCIPALS[holder].name,
      actionTypes: [action.actionType],
      projects: [action.project],
    });
    expect(claim?.action.id, "set-up claim").toBe(action.id);
    return { action: claim!.action, claimToken: claim!.claimToken };
  };
  /** The cell's actions, with their ids and types as parameters $ids and $types. */
  const actionSet = (ids: string, types: string) =>
    `SELECT id FROM actions WHERE id = ANY(${ids}::bigint[]) OR parent_id = ANY(${ids}::bigint[]) OR action_type = ANY(${types}::text[])`;
  const params = () => [[...ids], [...types]];
  const pauseValues = () => pauses.map((p) => p.value).filter((v) => v !== "");

  const kit: CellKit = {
    caller,
    as: callerFor,
    home,
    elsewhere,
    ownHolder: who !== "none" && who !== "unknown" && holdsRole(PRINCIPALS[who], ["worker"]) ? who : "worker",
    otherHolder: who === "worker" ? "worker2" : "worker",
    pending: (place, extra = {}) => enqueue(place, { approvalRequired: true, ...extra }),
    async approved(place, extra = {}) {
      const action = await enqueue(place, extra);
      expect(action.status).toBe(STATUS.approved);
      return action;
    },
    claimed: claimAs,
    async failed(place) {
      const claim = await claimAs(place, "worker");
      await callerFor("worker").unary("FailAction", { id: claim.action.id, claimToken: claim.claimToken, reason: "set up as FAILED" });
      return claim.action;
    },
    async completed(place, rollbackRef) {
      const claim = await claimAs(place, "worker", { rollbackRef });
      types.add(rollbackRef);
      await callerFor("worker").unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "set up as COMPLETED" });
      return claim.action;
    },
    pauseScope(kind, value = "") {
      const scope = { kind: `PAUSE_KIND_${kind}`, value };
      pauses.push({ kind: kind.toLowerCase(), value });
      return scope;
    },
    track: (id) => ids.add(id),
    async eventsWritten() {
      const { rows } = await t.db.query<{ id: string; event_type: string; actor: string; action_id: string | null }>(
        global
          ? "SELECT id::text, event_type, actor, action_id::text FROM events WHERE id > $1 ORDER BY id"
          : `SELECT id::text, event_type, actor, action_id::text FROM events
             WHERE id > $1 AND (action_id IN (${actionSet("$2", "$3")}) OR (action_id IS NULL AND payload->'scope'->>'value' = ANY($4::text[])))
             ORDER BY id`,
        global ? [startEventId] : [startEventId, ...params(), pauseValues()],
      );
      return rows.map((r) => ({ id: r.id, actionId: r.action_id ?? "0", eventType: r.event_type, actor: r.actor }));
    },
    db: t.db,
  };

  return {
    kit,
    /** Everything the cell owns (the whole database for a global cell). */
    async fingerprint(): Promise<string> {
      if (global) {
        const { rows } = await t.db.query("SELECT coalesce(string_agg(p::text, '|' ORDER BY kind, value), '') AS p FROM pauses p");
        return (await snapshot(t.db)) + rows[0].p;
      }
      const { rows } = await t.db.query(
        `WITH mine AS (${actionSet("$1", "$2")})
         SELECT (SELECT coalesce(md5(string_agg(a::text, '|' ORDER BY a.id)), '') FROM actions a WHERE a.id IN (SELECT id FROM mine)) AS actions,
                (SELECT coalesce(md5(string_agg(e::text, '|' ORDER BY e.id)), '') FROM events e WHERE e.action_id IN (SELECT id FROM mine)) AS events,
                (SELECT count(*) FROM events e WHERE e.action_id IN (SELECT id FROM mine)) AS event_count,
                (SELECT count(*) FROM events e WHERE e.action_id IS NULL AND e.payload->'scope'->>'value' = ANY($3::text[])) AS pause_events,
                (SELECT coalesce(string_agg(p::text, '|' ORDER BY kind, value), '') FROM pauses p WHERE p.value = ANY($3::text[])) AS pauses`,
        [...params(), pauseValues()],
      );
      return JSON.stringify(rows[0]);
    },
    async markStart(): Promise<void> {
      const { rows } = await t.db.query<{ id: string }>("SELECT coalesce(max(id), 0)::text AS id FROM events");
      startEventId = rows[0]!.id;
    },
    /** Lifts the pauses the cell made or meant to lift. */
    async cleanup(): Promise<void> {
      for (const pause of pauses) {
        const { rows } = await t.db.query("SELECT 1 FROM pauses WHERE kind = $1 AND value = $2", [pause.kind, pause.value]);
        if (rows.length > 0) {
          await callerFor("admin").unary("ResumeClaims", {
            scope: { kind: `PAUSE_KIND_${pause.kind.toUpperCase()}`, value: pause.value },
            actor: PRINCIPALS.admin.name,
            reason: "matrix clean-up",
          });
        }
      }
    },
  };
}

/** Runs one cell; returns what disagreed with the table, if anything. */
async function runCell(row: Row, variant: Variant, who: Who): Promise<string | undefined> {
  const label = `${row.label} | ${variant.name} | ${who}`;
  const cell = makeKit(who, Boolean(variant.global));
  try {
    let prepared: Prepared;
    try {
      prepared = await variant.prepare(cell.kit);
    } catch (error) {
      return `${label}: setting up failed: ${(error as Error).message}`;
    }
    const expected = expectedOutcomes(row, variant, who);
    const before = await cell.fingerprint();
    await cell.markStart();
    const got = await prepared.call();
    const hit = expected.find((e) => matches(row, who, e, got));
    cellsChecked.push({ row: row.label, variant: variant.name, who, expected: expected.map(describeExpected).join(" or "), got: describeGot(got) });
    if (!hit) return `${label}: expected ${expected.map(describeExpected).join(" or ")}, got ${describeGot(got)}`;
    if (hit.code !== "OK") {
      const after = await cell.fingerprint();
      if (after !== before) return `${label}: refused as expected, but the database changed`;
    } else if (prepared.verify) {
      try {
        await prepared.verify();
      } catch (error) {
        return `${label}: succeeded as expected, but ${(error as Error).message}`;
      }
    }
    return undefined;
  } finally {
    await cell.cleanup();
  }
}

const BATCH = 12;

async function runRow(row: Row): Promise<string[]> {
  const cells = row.variants.flatMap((variant) => CALLERS.map((who) => ({ variant, who })));
  const problems: string[] = [];
  const concurrent = cells.filter((c) => !c.variant.global);
  for (let i = 0; i < concurrent.length; i += BATCH) {
    const results = await Promise.all(concurrent.slice(i, i + BATCH).map((c) => runCell(row, c.variant, c.who)));
    problems.push(...results.filter((p): p is string => p !== undefined));
  }
  for (const c of cells.filter((c) => c.variant.global)) {
    const problem = await runCell(row, c.variant, c.who);
    if (problem) problems.push(problem);
  }
  return problems;
}

describe("the authorization matrix", () => {
  it("has a row for every RPC of ActionQueueService, and no row for an RPC it does not have", () => {
    const rpcs = ActionQueueService.methods.map((m) => m.name);
    expect(rpcs.length).toBeGreaterThanOrEqual(25);
    const missing = rpcs.filter((rpc) => !ROWS.some((row) => row.rpc === rpc));
    expect(missing, "RPCs without a matrix row").toEqual([]);
    expect(ROWS.map((r) => r.rpc).filter((rpc) => !rpcs.includes(rpc))).toEqual([]);
  });

  it.each(ROWS.map((row) => [row.label, row] as const))("%s: every principal, on its own, someone else's and an out-of-scope resource", async (_label, row) => {
    const problems = await runRow(row);
    expect(problems).toEqual([]);
  });

  // ACTIONQ_AUTHZ_REPORT=file.json writes every cell, expected and got, for a reviewer.
  afterAll(async () => {
    const report = process.env.ACTIONQ_AUTHZ_REPORT;
    if (report) await writeFile(report, JSON.stringify({ cells: cellsChecked.length, checked: cellsChecked }, null, 1));
  });
});

// ---------------------------------------------------------------------------
// Rules beyond the matrix

const as = callerFor;
const enqueueAs = async (who: Who | Principal, request: Record<string, unknown>) =>
  (await as(who).unary<{ action: WireAction & { approvers: string[] } }>("EnqueueAction", { createdBy: "", ...request })).action;
const uniqueType = (prefix: string) => `${prefix}_${randomBytes(4).toString("hex")}`;

async function eventsOf(id: string): Promise<{ eventType: string; actor: string }[]> {
  const { rows } = await t.db.query<{ event_type: string; actor: string }>("SELECT event_type, actor FROM events WHERE action_id = $1 ORDER BY id", [id]);
  return rows.map((r) => ({ eventType: r.event_type, actor: r.actor }));
}

async function refusedUnchanged(call: () => Promise<unknown>): Promise<Outcome> {
  const before = await snapshot(t.db);
  const outcome = await outcomeOf(call());
  expect(outcome.code, outcome.message).not.toBe("OK");
  expect(await snapshot(t.db), "a refused call changes nothing").toBe(before);
  return outcome;
}

describe("identity", () => {
  it("an empty created_by becomes the principal, on the row and on action_enqueued", async () => {
    const action = await enqueueAs("producer", { actionType: uniqueType("filled") });
    expect(action.createdBy).toBe(PRINCIPALS.producer.name);
    const { rows } = await t.db.query("SELECT created_by FROM actions WHERE id = $1", [action.id]);
    expect(rows[0].created_by).toBe(PRINCIPALS.producer.name);
    expect((await eventsOf(action.id))[0]).toEqual({ eventType: "action_enqueued", actor: PRINCIPALS.producer.name });
  });

  it("created_by naming someone else is PERMISSION_DENIED IDENTITY_MISMATCH {field, principal}, and nothing is written", async () => {
    const outcome = await refusedUnchanged(() => enqueueAs("producer", { actionType: uniqueType("mismatch"), createdBy: "human:alice" }));
    expect(outcome).toMatchObject({
      code: "PERMISSION_DENIED",
      reason: "IDENTITY_MISMATCH",
      metadata: { field: "created_by", principal: PRINCIPALS.producer.name },
    });
  });

  it("self-approval is refused whatever the roles, admin included", async () => {
    for (const who of ["admin", "scoped"] as const) {
      const project = who === "scoped" ? SCOPED_PROJECT : "identity";
      const actionType = who === "scoped" ? SCOPED_TYPES[SCOPED_TYPES.length - 1]! : uniqueType("self");
      const action = await enqueueAs(who, { actionType, project, approvalRequired: true });
      expect(action.createdBy).toBe(PRINCIPALS[who].name);
      const outcome = await refusedUnchanged(() => as(who).unary("ApproveAction", { id: action.id, approver: "" }));
      expect(outcome, who).toMatchObject({ code: "PERMISSION_DENIED", reason: "SELF_APPROVAL" });
    }
  });

  it("a DANGEROUS action's quorum counts principals: the same approver twice is DUPLICATE_APPROVAL, a second principal completes it", async () => {
    const action = await enqueueAs("producer", { actionType: uniqueType("quorum"), riskLevel: "RISK_LEVEL_DANGEROUS" });
    expect(action.status).toBe(STATUS.pending);
    await as("approver").unary("ApproveAction", { id: action.id });
    const again = await refusedUnchanged(() => as("approver").unary("ApproveAction", { id: action.id }));
    expect(again).toMatchObject({ code: "FAILED_PRECONDITION", reason: "DUPLICATE_APPROVAL" });
    const { action: approved } = await as("approver2").unary<{ action: WireAction & { approvers: string[] } }>("ApproveAction", { id: action.id });
    expect(approved.status).toBe(STATUS.approved);
    expect(approved.approvers).toEqual([PRINCIPALS.approver.name, PRINCIPALS.approver2.name]);
    expect((await eventsOf(action.id)).map((e) => e.actor)).toEqual([PRINCIPALS.producer.name, PRINCIPALS.approver.name, PRINCIPALS.approver2.name]);
  });

  it("a worker cannot complete, fail, ack, extend or report progress on another worker principal's claim, even with its token", async () => {
    const type = uniqueType("held");
    await enqueueAs("producer", { actionType: type });
    const { claim } = await as("worker").unary<{ claim: WireClaim }>("ClaimAction", { actionTypes: [type] });
    expect(claim.action.claimedBy).toBe(PRINCIPALS.worker.name);
    const { id } = claim.action;
    const token = claim.claimToken;
    for (const [method, request] of [
      ["CompleteAction", { id, claimToken: token, resultRef: "stolen" }],
      ["FailAction", { id, claimToken: token, reason: "stolen" }],
      ["AckClaim", { id, claimToken: token }],
      ["ExtendClaim", { id, claimToken: token }],
      ["RejectAction", { id, claimToken: token, reason: "stolen" }],
      ["EmitEvent", { eventType: "action_progress", actionId: id, claimToken: token }],
    ] as const) {
      const outcome = await refusedUnchanged(() => as("worker2").unary(method, request));
      expect(outcome, method).toMatchObject({ code: "PERMISSION_DENIED", reason: "NOT_CLAIM_HOLDER" });
    }
    const { rows } = await t.db.query("SELECT status, claimed_by FROM actions WHERE id = $1", [id]);
    expect(rows[0]).toEqual({ status: "claimed", claimed_by: PRINCIPALS.worker.name });
    // The holder still can.
    const done = await as("worker").unary<{ action: WireAction }>("CompleteAction", { id, claimToken: token, resultRef: "mine" });
    expect(done.action.status).toBe(STATUS.completed);
    expect((await eventsOf(id)).at(-1)).toEqual({ eventType: "action_completed", actor: PRINCIPALS.worker.name });
  });
});

describe("scope (team:solo: projects [solo], action_types [solo_a, solo_b])", () => {
  const solo = () => as(SOLO);

  it("enqueue: both the project and the type must be in scope, else OUT_OF_SCOPE naming the field", async () => {
    const inScope = await enqueueAs(SOLO, { actionType: "solo_a", project: "solo", approvalRequired: true });
    expect(inScope.createdBy).toBe(SOLO.name);
    const project = await refusedUnchanged(() => enqueueAs(SOLO, { actionType: "solo_a", project: "other" }));
    expect(project).toMatchObject({ code: "PERMISSION_DENIED", reason: "OUT_OF_SCOPE", metadata: { field: "project" } });
    const type = await refusedUnchanged(() => enqueueAs(SOLO, { actionType: "other_type", project: "solo" }));
    expect(type).toMatchObject({ code: "PERMISSION_DENIED", reason: "OUT_OF_SCOPE", metadata: { field: "action_type" } });
  });

  it("calls by id on an action whose type is out of scope (in a project in scope) are OUT_OF_SCOPE", async () => {
    const action = await enqueueAs("producer", { actionType: uniqueType("solo_out"), project: "solo", approvalRequired: true });
    for (const [method, request] of [
      ["GetAction", { id: action.id }],
      ["ApproveAction", { id: action.id }],
      ["RejectAction", { id: action.id, reason: "no" }],
      ["CancelAction", { id: action.id, reason: "no" }],
      ["EmitEvent", { eventType: "coordinator_cycle", actionId: action.id }],
      ["ListEvents", { actionId: action.id }],
    ] as const) {
      const outcome = await refusedUnchanged(() => solo().unary(method, request));
      expect(outcome, method).toMatchObject({ code: "PERMISSION_DENIED", reason: "OUT_OF_SCOPE" });
    }
  });

  it("ClaimAction with an empty filter claims only in scope; a filter naming a type or project outside is OUT_OF_SCOPE", async () => {
    // Out of scope and first in claim order, on both axes.
    const outType = await enqueueAs("producer", { actionType: uniqueType("solo_not"), project: "solo", priority: -100 });
    const outProject = await enqueueAs("producer", { actionType: "solo_b", project: "not-solo", priority: -100 });
    const inScope = await enqueueAs("producer", { actionType: "solo_b", project: "solo", priority: 5 });
    try {
      const first = await solo().unary<{ claim: WireClaim | null }>("ClaimAction", {});
      expect(first.claim?.action.id).toBe(inScope.id);
      expect(first.claim?.action.claimedBy).toBe(SOLO.name);
      for (const filter of [{ actionTypes: [outType.actionType] }, { projects: ["not-solo"] }, { actionTypes: ["solo_b"], projects: ["solo", "not-solo"] }]) {
        const outcome = await refusedUnchanged(() => solo().unary("ClaimAction", filter));
        expect(outcome, JSON.stringify(filter)).toMatchObject({ code: "PERMISSION_DENIED", reason: "OUT_OF_SCOPE" });
      }
      const none = await solo().unary<{ claim: WireClaim | null }>("ClaimAction", {});
      expect(none.claim ?? null).toBeNull();
    } finally {
      for (const action of [outType, outProject]) await as("admin").unary("CancelAction", { id: action.id, reason: "scope test done" });
    }
  });

  it("ListActions with an empty filter lists only what is in scope; a filter outside is OUT_OF_SCOPE", async () => {
    await enqueueAs("producer", { actionType: "solo_a", project: "not-solo", approvalRequired: true });
    await enqueueAs("producer", { actionType: uniqueType("solo_not"), project: "solo", approvalRequired: true });
    const { actions } = await solo().unary<{ actions: WireAction[] }>("ListActions", { pageSize: 1000 });
    expect(actions.length).toBeGreaterThan(0);
    for (const action of actions) {
      expect(action.project).toBe("solo");
      expect(["solo_a", "solo_b"]).toContain(action.actionType);
    }
    for (const filter of [{ projects: ["not-solo"] }, { actionTypes: ["other_type"] }]) {
      const outcome = await refusedUnchanged(() => solo().unary("ListActions", filter));
      expect(outcome, JSON.stringify(filter)).toMatchObject({ code: "PERMISSION_DENIED", reason: "OUT_OF_SCOPE" });
    }
  });

  it("PauseClaims: a principal scoped on both axes may not pause its type or its project (either would reach beyond its scope), nor ALL or AUTO_APPROVAL", async () => {
    for (const scope of [
      { kind: "PAUSE_KIND_ACTION_TYPE", value: "solo_a" },
      { kind: "PAUSE_KIND_PROJECT", value: "solo" },
      { kind: "PAUSE_KIND_ACTION_TYPE", value: "other_type" },
      { kind: "PAUSE_KIND_PROJECT", value: "not-solo" },
      { kind: "PAUSE_KIND_ALL", value: "" },
      { kind: "PAUSE_KIND_AUTO_APPROVAL", value: "" },
    ]) {
      const outcome = await refusedUnchanged(() => solo().unary("PauseClaims", { scope, reason: "scope test" }));
      expect(outcome, `${scope.kind} ${scope.value}`).toMatchObject({ code: "PERMISSION_DENIED", reason: "OUT_OF_SCOPE" });
    }
  });

  it("PauseClaims and ResumeClaims: a principal scoped by types only may pause its types, one scoped by projects only its projects", async () => {
    const cases = [
      {
        who: TYPES_ONLY,
        allowed: { kind: "PAUSE_KIND_ACTION_TYPE", value: "solo_a" },
        refused: [
          { kind: "PAUSE_KIND_ACTION_TYPE", value: "other_type" },
          { kind: "PAUSE_KIND_PROJECT", value: "solo" },
        ],
      },
      {
        who: PROJECTS_ONLY,
        allowed: { kind: "PAUSE_KIND_PROJECT", value: "solo" },
        refused: [
          { kind: "PAUSE_KIND_PROJECT", value: "not-solo" },
          { kind: "PAUSE_KIND_ACTION_TYPE", value: "solo_a" },
        ],
      },
    ];
    for (const { who, allowed, refused } of cases) {
      const { pause } = await as(who).unary<{ pause: { pausedBy: string } }>("PauseClaims", { scope: allowed, reason: "scope test" });
      expect(pause.pausedBy).toBe(who.name);
      const { pause: lifted } = await as(who).unary<{ pause: { pausedBy: string } }>("ResumeClaims", { scope: allowed, reason: "scope test" });
      expect(lifted.pausedBy).toBe(who.name);
      for (const scope of [...refused, { kind: "PAUSE_KIND_ALL", value: "" }, { kind: "PAUSE_KIND_AUTO_APPROVAL", value: "" }]) {
        const outcome = await refusedUnchanged(() => as(who).unary("PauseClaims", { scope, reason: "scope test" }));
        expect(outcome, `${who.name} ${scope.kind} ${scope.value}`).toMatchObject({ code: "PERMISSION_DENIED", reason: "OUT_OF_SCOPE" });
      }
    }
  });
});

describe("credentials", () => {
  it.each([
    ["no authorization header", undefined],
    ["an unknown token", `Bearer ${UNKNOWN_TOKEN}`],
    ["the hash instead of the token", `Bearer ${"0".repeat(64)}`],
    ["another scheme", `Basic ${Buffer.from("app:producer:secret").toString("base64")}`],
    ["Bearer without a token", "Bearer "],
  ])("%s is UNAUTHENTICATED with reason UNAUTHENTICATED, and writes nothing", async (_name, header) => {
    const metadata = new grpc.Metadata();
    if (header !== undefined) metadata.set("authorization", header);
    const outcome = await refusedUnchanged(() => t.grpc.unary("EnqueueAction", { actionType: uniqueType("anon"), createdBy: "human:anon" }, metadata));
    expect(outcome).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
  });

  it("a missing role is PERMISSION_DENIED ROLE_REQUIRED with {method, roles}", async () => {
    const outcome = await refusedUnchanged(() => as("viewer").unary("CancelAction", { id: "1", reason: "no" }));
    expect(outcome).toMatchObject({ code: "PERMISSION_DENIED", reason: "ROLE_REQUIRED" });
    expect(outcome.metadata?.method).toContain("CancelAction");
    expect(outcome.metadata?.roles?.split(",")).toContain("operator");
  });

  it("health needs no credential", async () => {
    expect(await healthCheck(t.address)).toMatchObject({ code: "OK", status: "SERVING" });
  });

  it("server reflection needs the viewer role", async () => {
    const viewer = await reflectionList(t.address, bearer(tokenOf("viewer")));
    expect(viewer.code, viewer.message).toBe("OK");
    expect(viewer.services).toContain("actionq.v1.ActionQueueService");
    expect(await reflectionList(t.address, bearer(tokenOf("scoped")))).toMatchObject(OK);
    expect(await reflectionList(t.address, bearer(tokenOf("admin")))).toMatchObject(OK);
    expect(await reflectionList(t.address, bearer(tokenOf("producer")))).toMatchObject({ code: "PERMISSION_DENIED", reason: "ROLE_REQUIRED" });
    expect(await reflectionList(t.address, bearer(undefined))).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
    expect(await reflectionList(t.address, bearer(UNKNOWN_TOKEN))).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
  });
});

describe("schedules act in their owner's name", () => {
  /** A one-second schedule owned by `owner`, due now, written directly so
   * that its owner can be anyone. */
  async function dueSchedule(id: string, owner: string, project: string, actionType: string): Promise<void> {
    await t.db.query(
      `INSERT INTO schedules (id, template, project, interval_ms, anchor_time, overlap_policy, catch_up_ms, owner, next_tick_time)
       VALUES ($1, $2::jsonb, $3, 1000, date_trunc('second', now()), 'allow_all', 60000, $4, date_trunc('second', now()))`,
      [id, JSON.stringify({ actionType, project }), project, owner],
    );
  }

  async function firstTick(id: string): Promise<{ outcome: string; reason: string; created_by: string | null }> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { rows } = await t.db.query<{ outcome: string; reason: string; created_by: string | null }>(
        `SELECT t.outcome, t.reason, a.created_by FROM schedule_ticks t JOIN schedules s ON s.key = t.schedule_key
         LEFT JOIN actions a ON a.id = t.action_id WHERE s.id = $1 ORDER BY t.tick_time LIMIT 1`,
        [id],
      );
      if (rows[0]) {
        await t.db.query("UPDATE schedules SET paused = true, next_tick_time = NULL WHERE id = $1", [id]);
        return rows[0];
      }
      if (Date.now() > deadline) throw new Error(`no tick of ${id}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it("a tick of a producer's schedule enqueues in its name", async () => {
    await dueSchedule("owned-by-producer", PRINCIPALS.producer.name, "matrix", uniqueType("owned"));
    expect(await firstTick("owned-by-producer")).toMatchObject({ outcome: "enqueued", created_by: PRINCIPALS.producer.name });
  });

  it("an owner no longer in the auth file, no longer a producer, or out of its scope enqueues nothing: the tick fails with the reason", async () => {
    await dueSchedule("owned-by-gone", "app:gone", "matrix", uniqueType("gone"));
    await dueSchedule("owned-by-viewer", PRINCIPALS.viewer.name, "matrix", uniqueType("viewer"));
    await dueSchedule("owned-out-of-scope", PRINCIPALS.scoped.name, ELSEWHERE, uniqueType("outside"));
    expect(await firstTick("owned-by-gone")).toMatchObject({ outcome: "failed", reason: expect.stringContaining("no longer in the auth file") });
    expect(await firstTick("owned-by-viewer")).toMatchObject({ outcome: "failed", reason: expect.stringContaining("no longer has the role producer") });
    expect(await firstTick("owned-out-of-scope")).toMatchObject({ outcome: "failed", reason: expect.stringContaining("may not act on project") });
  });
});
