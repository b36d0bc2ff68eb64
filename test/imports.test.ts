// ImportActions over the wire: every status of the other system becomes
// what the policy and the caller's trust allow here, each action's history
// starts with action_imported carrying the document untouched, and an
// action already here (imported before, or native and exported) is never
// created twice, not even by concurrent calls.
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionStatus } from "../gen/actionq/v1/action_pb.js";
import { ImportOutcome } from "../gen/actionq/v1/action_queue_service_pb.js";
import { runActionctl } from "./support/actionctl.js";
import { principal } from "./support/auth.js";
import { type SecureServer, startSecureServer } from "./support/examples.js";
import { type TestServer, closeWithin, grpcError, snapshot, startTestServer } from "./support/harness.js";
import { RISK, eventTypes, removePolicyDirs, unique, writePolicy } from "./support/safety.js";
import { cancelAfterEach, nthClaim, openClaimStream, openOnServer } from "./support/streams.js";
import { eventually } from "./support/wait.js";
import { type Json, STATUS, type WireAction, type WireEvent, enqueue, errorInfoOf, fromStruct, getAction, millis, toStruct } from "./support/wire.js";

interface ItemError {
  code: number;
  message: string;
  reason: string;
  metadata: Record<string, string>;
}
type ImportResult =
  | { result: "ok"; ok: { action: WireAction & { externalId: string }; outcome: string; notes: string[] } }
  | { result: "error"; error: ItemError };
type Ok = Extract<ImportResult, { result: "ok" }>["ok"];

const IMPORTED = "IMPORT_OUTCOME_IMPORTED";
const ALREADY_PRESENT = "IMPORT_OUTCOME_ALREADY_PRESENT";
const CREATED_AT = Date.parse("2021-05-03T00:00:00.000Z");
const FINISHED_AT = Date.parse("2021-05-03T00:05:00.000Z");
const stamp = (ms: number) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });

let t: TestServer;
const track = cancelAfterEach();

beforeAll(async () => {
  const policy = await writePolicy({
    name: "imports",
    mode: "standard",
    action_types: { restart_db: "guarded", drop_table: "dangerous" },
    quorum: { dangerous: 2 },
  });
  // No backstop poll: an imported APPROVED action reaches a waiting stream
  // by the wakeup its commit sends, or not at all.
  t = await startTestServer({ ACTIONQ_POLICY: policy, ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_POLL_INTERVAL_SECONDS: "3600" });
});
afterAll(async () => {
  await closeWithin(t);
  await removePolicyDirs();
});

/** One document of the other system, as the CLI sends it. */
function item(fields: Record<string, unknown> = {}): Record<string, unknown> {
  const externalId = (fields.externalId as string | undefined) ?? crypto.randomUUID();
  const document: { [key: string]: Json } = { action_id: externalId, status: "whatever it said", payload: { n: 1 } };
  return {
    externalId,
    status: STATUS.pending,
    createTime: stamp(CREATED_AT),
    createdBy: "supervisor",
    correlationId: "corr-1",
    node: "node-a",
    service: "svc-a",
    actionType: unique("import_job"),
    riskLevel: RISK.safe,
    confidence: 0.9,
    payload: toStruct({ n: 1 }),
    original: toStruct(document),
    history: [`{"action_id": "${externalId}", "event": "proposed"}`, "2021-05-03T00:00:01Z free text line"],
    source: `pending/${externalId}.json`,
    ...fields,
  };
}

async function importActions(actions: Record<string, unknown>[], extra: Record<string, unknown> = {}): Promise<ImportResult[]> {
  const res = await t.grpc.unary<{ results: ImportResult[] }>("ImportActions", { actions, actor: "human:ops", ...extra });
  return res.results;
}

async function importOne(fields: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<Ok> {
  const [result] = await importActions([item(fields)], extra);
  if (result!.result !== "ok") throw new Error(`refused: ${result!.error.message}`);
  return result!.ok;
}

const approve = (id: string, approver: string) => t.grpc.unary<{ action: WireAction }>("ApproveAction", { id, approver, note: "" });

describe("each status of the other system", () => {
  it("a pending action stays pending even when the policy would approve its type without a human", async () => {
    const ok = await importOne({ status: STATUS.pending, riskLevel: RISK.safe });
    expect(ok.outcome).toBe(IMPORTED);
    expect(ok.action).toMatchObject({ status: STATUS.pending, riskLevel: RISK.safe, approvalsRequired: 1, createdBy: "supervisor" });
    expect(millis(ok.action.createTime)).toBe(CREATED_AT);
    expect(ok.action.approvalExpireTime).not.toBeNull();
    const { events } = await getAction(t, ok.action.id);
    // action_enqueued, marked imported, is what approvers are notified by.
    expect(eventTypes(events)).toEqual(["action_imported", "action_enqueued"]);
    const enqueued = fromStruct(events[1]!.payload);
    expect(enqueued).toMatchObject({ status: "pending", imported: true, approvals_required: 1, policy: { decision: "needs_approval" } });
    expect(typeof enqueued.approval_expires_at).toBe("string");
  });

  it("a pending DANGEROUS action needs the policy's quorum of distinct approvers", async () => {
    const ok = await importOne({ status: STATUS.pending, actionType: "drop_table", riskLevel: RISK.dangerous });
    expect(ok.action).toMatchObject({ status: STATUS.pending, riskLevel: RISK.dangerous, approvalsRequired: 2 });
    const once = await approve(ok.action.id, "human:alice");
    expect(once.action.status).toBe(STATUS.pending);
    const twice = await approve(ok.action.id, "human:bob");
    expect(twice.action).toMatchObject({ status: STATUS.approved, approvers: ["human:alice", "human:bob"] });
  });

  it("an approved action without trust_approvals is imported pending, with a note", async () => {
    const ok = await importOne({ status: STATUS.approved });
    expect(ok.action.status).toBe(STATUS.pending);
    expect(ok.notes).toContain("approval not trusted (no trust_approvals): imported as pending");
    const { events } = await getAction(t, ok.action.id);
    expect(eventTypes(events)).toEqual(["action_imported", "action_enqueued"]);
  });

  it("an approved action with trust_approvals is approved by the caller and claimed at once by a waiting stream", async () => {
    const actionType = unique("trusted_job");
    const stream = track(openClaimStream(t, { worker: "worker:imports", actionTypes: [actionType] }));
    await eventually(() => openOnServer(t).claimStreams === 1 || undefined, "the claim stream to open");
    const ok = await importOne({ status: STATUS.approved, actionType }, { trustApprovals: true });
    expect(ok.action).toMatchObject({ status: STATUS.approved, approvedBy: "human:ops", approvalsRequired: 0 });
    const claim = await nthClaim(stream, 1, 30_000);
    expect(claim.action.id).toBe(ok.action.id);
    const { events } = await getAction(t, ok.action.id);
    expect(eventTypes(events).slice(0, 3)).toEqual(["action_imported", "action_enqueued", "action_approved"]);
    expect(events[2]!.actor).toBe("human:ops");
    expect(fromStruct(events[2]!.payload)).toEqual({ imported: true, reason: "approved in the other system; trusted by human:ops" });
  });

  it("a running action with trust_approvals is approved again, after an action_interrupted event", async () => {
    const ok = await importOne({ status: STATUS.claimed }, { trustApprovals: true });
    expect(ok.action).toMatchObject({ status: STATUS.approved, claimedBy: "", attempt: 0 });
    const { events } = await getAction(t, ok.action.id);
    expect(eventTypes(events)).toEqual(["action_imported", "action_interrupted", "action_enqueued", "action_approved"]);
    expect(fromStruct(events[0]!.payload).status_there).toBe("running");
    expect(fromStruct(events[1]!.payload)).toMatchObject({ imported: true });
  });

  it.each([
    ["completed", STATUS.completed, ""],
    ["failed", STATUS.failed, "disk full"],
    ["rejected", STATUS.rejected, "not now"],
    ["cancelled", STATUS.cancelled, "superseded there"],
  ])("a %s action keeps its create and finish times and its reason", async (_word, wireStatus, reason) => {
    const ok = await importOne({ status: wireStatus, finishTime: stamp(FINISHED_AT), failureReason: reason });
    expect(ok.action.status).toBe(wireStatus);
    expect(millis(ok.action.createTime)).toBe(CREATED_AT);
    expect(millis(ok.action.finishTime)).toBe(FINISHED_AT);
    expect(millis(ok.action.updateTime)).toBe(FINISHED_AT);
    expect(ok.action.failureReason).toBe(reason);
    // Whoever approved it there is unknown; what ran needs an approver here.
    const ran = wireStatus === STATUS.completed || wireStatus === STATUS.failed;
    expect(ok.action.approvedBy).toBe(ran ? "import:human:ops" : "");
    const { events } = await getAction(t, ok.action.id);
    expect(eventTypes(events)).toEqual(["action_imported"]);
  });

  it("a failed action without a reason says it was imported so", async () => {
    const ok = await importOne({ status: STATUS.failed });
    expect(ok.action.failureReason).toBe("imported as failed");
    expect(ok.action.finishTime).not.toBeNull();
    expect(ok.notes).toContain("no finish time given: recorded as finished now");
  });

  it("a risk level below the policy's is raised, with a note", async () => {
    const ok = await importOne({ status: STATUS.pending, actionType: "restart_db", riskLevel: RISK.safe });
    expect(ok.action.riskLevel).toBe(RISK.guarded);
    expect(ok.notes).toContain("risk level raised from safe to guarded by the policy");
  });

  it("a finished action keeps the risk level it was recorded with", async () => {
    const ok = await importOne({ status: STATUS.completed, actionType: "restart_db", riskLevel: RISK.safe });
    expect(ok.action.riskLevel).toBe(RISK.safe);
    expect(ok.notes.filter((note) => note.includes("risk level"))).toEqual([]);
  });
});

describe("times", () => {
  it("are stored to the microsecond, as PostgreSQL keeps them (the API answers in milliseconds)", async () => {
    const createTime = { seconds: "1620000000", nanos: 123_456_789 };
    const finishTime = { seconds: "1620000100", nanos: 999_999_000 };
    const ok = await importOne({ status: STATUS.completed, createTime, finishTime });
    const { rows } = await t.db.query(
      "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS created, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS finished FROM actions WHERE id = $1",
      [ok.action.id],
    );
    expect(rows[0]).toEqual({ created: "2021-05-03 00:00:00.123456", finished: "2021-05-03 00:01:40.999999" });
    expect(ok.action.createTime).toMatchObject({ seconds: "1620000000", nanos: 123_000_000 });
  });
});

describe("the action_imported event", () => {
  it("comes first and carries the document and history lines untouched", async () => {
    const document: { [key: string]: Json } = {
      action_id: "doc-1",
      created_at: 1620000000.123456,
      nested: { list: [1, "two", null, { deep: true }] },
      rollback_reference: null,
    };
    const history = ['{"timestamp": 1620000000.5, "event": "x"}', "  odd   spacing\tand tab  "];
    const ok = await importOne({ externalId: unique("doc"), original: toStruct(document), history, source: "approved/doc-1.json" });
    const { events } = await getAction(t, ok.action.id);
    const first = events[0] as WireEvent;
    expect(first).toMatchObject({ eventType: "action_imported", actor: "human:ops" });
    const payload = fromStruct(first.payload);
    expect(payload.document).toEqual(document);
    expect(payload.history).toEqual(history);
    expect(payload).toMatchObject({ source: "approved/doc-1.json", status_there: "pending" });
  });
});

describe("an action already here", () => {
  it("a second import answers ALREADY_PRESENT and writes nothing", async () => {
    const items = [item(), item({ status: STATUS.completed })];
    const first = await importActions(items);
    expect(first.map((r) => r.result === "ok" && r.ok.outcome)).toEqual([IMPORTED, IMPORTED]);
    const before = await snapshot(t.db);
    const again = await importActions(items);
    expect(await snapshot(t.db)).toBe(before);
    expect(again.map((r) => r.result === "ok" && r.ok.outcome)).toEqual([ALREADY_PRESENT, ALREADY_PRESENT]);
    expect(again.map((r) => r.result === "ok" && r.ok.action.id)).toEqual(first.map((r) => r.result === "ok" && r.ok.action.id));
  });

  it("a native action's derived external id (a UUID version 8) imported back answers ALREADY_PRESENT", async () => {
    const { action } = await enqueue(t, { actionType: unique("native"), createdBy: "human:ann" });
    const native = (await getAction(t, action.id)).action as WireAction & { externalId: string };
    expect(native.externalId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8000-8[0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(BigInt(`0x${native.externalId.slice(20, 23)}${native.externalId.slice(24)}`)).toBe(BigInt(action.id));
    const before = await snapshot(t.db);
    const ok = await importOne({ externalId: native.externalId });
    expect(await snapshot(t.db)).toBe(before);
    expect(ok).toMatchObject({ outcome: ALREADY_PRESENT, action: { id: action.id } });
  });

  it("this deployment's own derived id for an action it does not have is refused, and the other items import", async () => {
    const { action } = await enqueue(t, { actionType: unique("native"), createdBy: "human:ann" });
    const native = (await getAction(t, action.id)).action as WireAction & { externalId: string };
    // The same deployment tag, an id far beyond any action here.
    const missing = `${native.externalId.slice(0, 18)}-8fff-ffffffffffff`;
    const before = await snapshot(t.db);
    const [refused, fine] = await importActions([item({ externalId: missing }), item()]);
    expect(refused).toMatchObject({ result: "error", error: { code: 9, reason: "EXTERNAL_ID_NOT_HERE" } });
    expect(refused!.result === "error" && refused!.error.metadata).toMatchObject({ field: "actions[0].external_id", action_id: "1152921504606846975" });
    expect(fine).toMatchObject({ result: "ok", ok: { outcome: IMPORTED } });
    expect(await snapshot(t.db)).not.toBe(before);
    // Another deployment's id of the same shape is only a name.
    const foreign = `00000000-0000-8000-8000-${action.id.padStart(12, "0")}`;
    expect(await importOne({ externalId: foreign })).toMatchObject({ outcome: IMPORTED, action: { externalId: foreign } });
  });

  it("an imported action keeps the id it had there as its external id, which actionctl show prints", async () => {
    const ok = await importOne({ externalId: "not-a-uuid/at all" });
    expect(ok.action.externalId).toBe("not-a-uuid/at all");
    const shown = await runActionctl(["show", ok.action.id, "-o", "table"], { ACTIONQ_ADDR: t.address });
    expect(shown.stdout).toMatch(/^external id +not-a-uuid\/at all$/m);
    // A native action's is derived from its id: it says nothing more.
    const { action } = await enqueue(t, { actionType: unique("native"), createdBy: "human:ann" });
    const native = await runActionctl(["show", action.id, "-o", "table"], { ACTIONQ_ADDR: t.address });
    expect(native.code).toBe(0);
    expect(native.stdout).not.toContain("external id");
  });

  it("two concurrent calls with the same external id create exactly one action", async () => {
    const shared = item();
    const answers = await Promise.all(Array.from({ length: 6 }, () => importActions([shared])));
    const oks = answers.map(([r]) => (r as Extract<ImportResult, { result: "ok" }>).ok);
    expect(oks.filter((ok) => ok.outcome === IMPORTED)).toHaveLength(1);
    expect(new Set(oks.map((ok) => ok.action.id)).size).toBe(1);
    const { rows } = await t.db.query("SELECT count(*)::int AS n FROM actions WHERE external_id = $1", [shared.externalId]);
    expect(rows[0].n).toBe(1);
    const { events } = await getAction(t, oks[0]!.action.id);
    expect(eventTypes(events)).toEqual(["action_imported", "action_enqueued"]);
  });

  it("concurrent calls importing the same ids in opposite orders each create every action once", async () => {
    for (let round = 0; round < 5; round++) {
      const items = Array.from({ length: 50 }, () => item());
      const answers = await Promise.all([importActions(items), importActions([...items].reverse()), importActions(items)]);
      for (const results of answers) expect(results.every((r) => r.result === "ok")).toBe(true);
      const ids = items.map((one) => one.externalId as string);
      const { rows } = await t.db.query("SELECT count(*)::int AS n FROM actions WHERE external_id = ANY($1::text[])", [ids]);
      expect(rows[0].n).toBe(items.length);
    }
  });
});

describe("validate_only", () => {
  it("answers as the import would, with id 0, and writes nothing", async () => {
    const before = await snapshot(t.db);
    const results = await importActions([item(), item({ status: STATUS.approved }), item({ actionType: "" })], { validateOnly: true, trustApprovals: true });
    expect(await snapshot(t.db)).toBe(before);
    expect(results.map((r) => r.result)).toEqual(["ok", "ok", "error"]);
    const [pending, approved] = results as Extract<ImportResult, { result: "ok" }>[];
    expect(pending!.ok).toMatchObject({ outcome: IMPORTED, action: { id: "0", status: STATUS.pending } });
    expect(approved!.ok).toMatchObject({ outcome: IMPORTED, action: { id: "0", status: STATUS.approved } });
    const existing = await importOne();
    const [again] = await importActions([item({ externalId: existing.action.externalId })], { validateOnly: true });
    expect(again).toMatchObject({ result: "ok", ok: { outcome: ALREADY_PRESENT, action: { id: existing.action.id } } });
  });
});

describe("bad items", () => {
  it.each([
    ["external_id", { externalId: "" }],
    ["external_id", { externalId: "x".repeat(257) }],
    ["status", { status: "ACTION_STATUS_UNSPECIFIED" }],
    ["create_time", { createTime: null }],
    ["created_by", { createdBy: "" }],
    ["action_type", { actionType: "not a name" }],
    ["confidence", { confidence: 1.5 }],
    ["rollback_ref", { rollbackRef: "no spaces allowed" }],
    ["payload", { payload: toStruct({ big: "x".repeat(70_000) }) }],
    ["history[1]", { history: ["fine", "a NUL \u0000 here"] }],
    ["finish_time", { status: STATUS.pending, finishTime: stamp(FINISHED_AT) }],
    ["finish_time", { status: STATUS.completed, finishTime: stamp(CREATED_AT - 1000) }],
    ["create_time", { createTime: { seconds: "9223372036854775807", nanos: 0 } }],
    ["create_time", { createTime: { seconds: "-62135596800", nanos: 0 } }],
    ["create_time", { createTime: stamp(Date.now() + 3 * 86_400_000) }],
    ["finish_time", { status: STATUS.completed, finishTime: { seconds: "1620000000", nanos: -1 } }],
  ])("a bad %s is that item's INVALID_ARGUMENT, and the others import", async (field, bad) => {
    const results = await importActions([item(), item(bad), item()]);
    expect(results.map((r) => r.result)).toEqual(["ok", "error", "ok"]);
    const error = (results[1] as Extract<ImportResult, { result: "error" }>).error;
    expect(error).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", metadata: { field: `actions[1].${field}` } });
    expect(error.message).toContain(`actions[1]: ${field}`);
  });

  it("a batch over ACTIONQ_MAX_BATCH is refused whole", async () => {
    const before = await snapshot(t.db);
    const error = await grpcError(importActions(Array.from({ length: 1001 }, () => ({ externalId: "x" }))));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(errorInfoOf(error)?.metadata.field).toBe("actions");
    expect(await snapshot(t.db)).toBe(before);
  });
});

describe("with authentication", () => {
  const producer = principal("app:importer", ["producer"]);
  const operator = principal("human:migrator", ["producer", "operator"]);
  let secure: SecureServer;
  beforeAll(async () => {
    secure = await startSecureServer([producer, operator], { ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await secure?.close();
  });
  const approvedThere = (externalId: string) => ({
    externalId,
    status: ActionStatus.APPROVED,
    createTime: timestampFromMs(CREATED_AT),
    createdBy: "supervisor",
    actionType: unique("secure_import"),
  });

  it("trust_approvals without the operator role is PERMISSION_DENIED and writes nothing", async () => {
    const before = await snapshot(secure.t.db);
    const error = await secure
      .client(producer)
      .importActions({ actions: [approvedThere(crypto.randomUUID()), approvedThere(crypto.randomUUID())], trustApprovals: true })
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    expect(error?.code).toBe(Code.PermissionDenied);
    expect(error?.message).toContain("trust_approvals");
    expect(await snapshot(secure.t.db)).toBe(before);
  });

  it("a producer without trust imports approved actions as pending, in its own name", async () => {
    const res = await secure.client(producer).importActions({ actions: [approvedThere(crypto.randomUUID())] });
    const result = res.results[0]!.result;
    expect(result.case).toBe("ok");
    if (result.case !== "ok") return;
    expect(result.value.outcome).toBe(ImportOutcome.IMPORTED);
    expect(result.value.action?.status).toBe(ActionStatus.PENDING);
    const { rows } = await secure.t.db.query("SELECT actor FROM events WHERE action_id = $1 ORDER BY id", [String(result.value.action!.id)]);
    expect(rows.map((r) => r.actor)).toEqual(["app:importer", "app:importer"]);
  });

  it("an operator's trust_approvals keeps the approval, given by that operator", async () => {
    const res = await secure.client(operator).importActions({ actions: [approvedThere(crypto.randomUUID())], trustApprovals: true });
    const result = res.results[0]!.result;
    expect(result.case).toBe("ok");
    if (result.case !== "ok") return;
    expect(result.value.action).toMatchObject({ status: ActionStatus.APPROVED, approvedBy: "human:migrator" });
  });
});
