// The authorization matrix of the security spec (issue 6), as data: the
// principals, and one row per RPC (two for RejectAction and EmitEvent, whose
// role depends on the request) with the role the spec's table names and the
// variants of the call that the identity, claim-holder and scope rules tell
// apart. The expected outcome of every cell is derived from these rows and
// nothing else (see `expectedOutcomes`), so a reviewer can check the rows
// against the spec line by line. authz.test.ts runs every row for every
// principal over the wire.
import type * as grpc from "@grpc/grpc-js";
import { expect } from "vitest";
import { type Outcome, type Principal, type Role, OK, outcomeOf, outcomeOfItem, firstMessage, principal } from "./auth.js";
import type { WireAction, WireClaim, WireEvent } from "./wire.js";

// ---------------------------------------------------------------------------
// Principals

/** Types the scoped principal may touch: one per cell that needs one, so
 * that cells running together never claim each other's actions. */
export const SCOPED_TYPES = Array.from({ length: 200 }, (_, i) => `payments_${String(i).padStart(3, "0")}`);
export const SCOPED_PROJECT = "payments";
/** A project no scoped principal has. */
export const ELSEWHERE = "elsewhere";

export const PRINCIPALS = {
  producer: principal("app:producer", ["producer"]),
  worker: principal("app:worker", ["worker"]),
  worker2: principal("app:worker-2", ["worker"]),
  approver: principal("human:approver", ["approver"]),
  approver2: principal("human:approver-2", ["approver"]),
  operator: principal("human:operator", ["operator"]),
  viewer: principal("human:viewer", ["viewer"]),
  admin: principal("human:admin", ["admin"]),
  scoped: principal("team:payments", ["producer", "worker", "approver", "viewer", "operator"], { projects: [SCOPED_PROJECT], actionTypes: SCOPED_TYPES }),
} satisfies Record<string, Principal>;

export type Named = keyof typeof PRINCIPALS;
/** Every caller of the matrix: the principals, no credential at all, and a
 * bearer token the auth file does not know. */
export type Who = Named | "none" | "unknown";
export const CALLERS: Who[] = [...(Object.keys(PRINCIPALS) as Named[]), "none", "unknown"];

export const isScoped = (p: Principal) => Boolean(p.projects || p.actionTypes);
export const holdsRole = (p: Principal, roles: Role[]) => p.roles.includes("admin") || roles.some((role) => p.roles.includes(role));

// ---------------------------------------------------------------------------
// What a cell does

/** One caller's credentials on the grpc-js client. */
export interface Caller {
  /** The principal's name; undefined for "none" and "unknown". */
  name: string | undefined;
  unary<T = Record<string, unknown>>(method: string, request: Record<string, unknown>): Promise<T>;
  stream(method: string, request: Record<string, unknown>): grpc.ClientReadableStream<Record<string, unknown>>;
}

/** Where a cell puts an action: a project and fresh action types. */
export interface Place {
  project: string;
  newType(): string;
}

export type WrittenEvent = Pick<WireEvent, "id" | "actionId" | "eventType" | "actor">;

export interface Claimed {
  action: WireAction;
  claimToken: string;
}

/** What a cell's preparation may use; every action it makes belongs to the
 * cell (the runner fingerprints them to prove a refusal changed nothing). */
export interface CellKit {
  caller: Caller;
  as(who: Named): Caller;
  /** In the caller's scope (any project for an unscoped caller). */
  home: Place;
  /** Outside every scope. */
  elsewhere: Place;
  /** Who holds "the caller's own" claim: the caller when it may claim, else app:worker. */
  ownHolder: Named;
  /** Another worker principal. */
  otherHolder: Named;
  pending(place: Place, extra?: Record<string, unknown>): Promise<WireAction>;
  approved(place: Place, extra?: Record<string, unknown>): Promise<WireAction>;
  claimed(place: Place, holder: Named, extra?: Record<string, unknown>): Promise<Claimed>;
  failed(place: Place): Promise<WireAction>;
  completed(place: Place, rollbackRef: string): Promise<WireAction>;
  /** A pause scope value that belongs to the cell (resumed after it). */
  pauseScope(kind: "ACTION_TYPE" | "PROJECT" | "ALL" | "AUTO_APPROVAL", value?: string): { kind: string; value: string };
  /** Marks an id as the cell's. */
  track(id: string): void;
  /** Events about the cell's actions written after the call started. */
  eventsWritten(): Promise<WrittenEvent[]>;
  db: { query<R>(sql: string, params?: unknown[]): Promise<{ rows: R[] }> };
}

export interface Prepared {
  call(): Promise<Outcome>;
  /** Extra checks after a call that succeeded as expected. */
  verify?(): Promise<void>;
}

/** How a principal holding the row's role fares with this variant. */
export type Rule =
  | { kind: "ok" }
  | { kind: "identity"; field: string }
  | { kind: "not-claim-holder" }
  /** The resource or filter is outside a scoped principal's scope. */
  | { kind: "scoped-refused" }
  /** Someone else's schedule: only its owner or an admin may, and with
   * `operatorMay` an operator too. */
  | { kind: "not-owner"; operatorMay: boolean }
  /** A request field that needs a second role as well (ImportActions'
   * trust_approvals: operator), refused with `reason` without it; within
   * it, as scopedRefused. */
  | { kind: "also-needs-role"; role: Role; reason: string };

export interface Variant {
  name: string;
  rule: Rule;
  /** Touches state every cell shares (pauses of everything, the sweeper, the
   * policy, events without an action): run alone, checked against the
   * whole database. */
  global?: boolean;
  prepare(kit: CellKit): Promise<Prepared>;
}

export interface Row {
  rpc: string;
  label: string;
  roles: Role[];
  /** "unscoped principals only" in the spec's scope section. */
  unscopedOnly?: boolean;
  variants: Variant[];
}

const ok: Rule = { kind: "ok" };
const identity = (field: string): Rule => ({ kind: "identity", field });
const notClaimHolder: Rule = { kind: "not-claim-holder" };
const scopedRefused: Rule = { kind: "scoped-refused" };

export const SOMEONE_ELSE = "human:someone-else";

// ---------------------------------------------------------------------------
// Expectations, from the rows alone

export interface Expected {
  code: Outcome["code"];
  reason?: string;
  /** IDENTITY_MISMATCH: the ErrorInfo's field (a batch item may prefix it). */
  field?: string;
}

/** The outcomes the spec allows for one cell (more than one only where the
 * spec does not order two checks that both apply). */
export function expectedOutcomes(row: Row, variant: Variant, who: Who): Expected[] {
  if (who === "none" || who === "unknown") return [{ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" }];
  const p = PRINCIPALS[who];
  if (!holdsRole(p, row.roles)) return [{ code: "PERMISSION_DENIED", reason: "ROLE_REQUIRED" }];
  const outOfScope: Expected = { code: "PERMISSION_DENIED", reason: "OUT_OF_SCOPE" };
  const refusedForScope = row.unscopedOnly && isScoped(p);
  switch (variant.rule.kind) {
    case "ok":
      return [refusedForScope ? outOfScope : OK];
    case "identity": {
      const mismatch: Expected = { code: "PERMISSION_DENIED", reason: "IDENTITY_MISMATCH", field: variant.rule.field };
      // The spec does not say whether scope or identity is checked first.
      return refusedForScope ? [mismatch, outOfScope] : [mismatch];
    }
    case "not-claim-holder":
      return [{ code: "PERMISSION_DENIED", reason: "NOT_CLAIM_HOLDER" }];
    case "scoped-refused":
      return [isScoped(p) ? outOfScope : OK];
    case "not-owner": {
      const may = p.roles.includes("admin") || (variant.rule.operatorMay && p.roles.includes("operator"));
      return [may ? OK : { code: "PERMISSION_DENIED", reason: "NOT_SCHEDULE_OWNER" }];
    }
    case "also-needs-role": {
      if (!holdsRole(p, [variant.rule.role])) return [{ code: "PERMISSION_DENIED", reason: variant.rule.reason }];
      return [isScoped(p) ? outOfScope : OK];
    }
  }
}

/** Whether `got` is `expected`, ErrorInfo metadata included. */
export function matches(row: Row, who: Who, expected: Expected, got: Outcome): boolean {
  if (got.code !== expected.code) return false;
  if (expected.code === "OK") return true;
  if (got.reason !== expected.reason) return false;
  const metadata = got.metadata ?? {};
  if (expected.reason === "ROLE_REQUIRED") {
    const roles = (metadata.roles ?? "").split(",").map((r) => r.trim());
    return (metadata.method ?? "").includes(row.rpc) && row.roles.every((role) => roles.includes(role));
  }
  if (expected.reason === "IDENTITY_MISMATCH") {
    return (metadata.field ?? "").endsWith(expected.field!) && metadata.principal === PRINCIPALS[who as Named].name;
  }
  return true;
}

// ---------------------------------------------------------------------------
// The rows

const unary = (kit: CellKit, method: string, request: Record<string, unknown>) => outcomeOf(kit.caller.unary(method, request));

/** A batch call whose single item carries the outcome when the call itself succeeds. */
async function batchItem(kit: CellKit, method: string, request: Record<string, unknown>): Promise<Outcome> {
  try {
    const response = await kit.caller.unary<{
      results: { error?: { code: number; reason: string; metadata: Record<string, string>; message: string } | null }[];
    }>(method, request);
    expect(response.results).toHaveLength(1);
    return outcomeOfItem(response.results[0]!);
  } catch (error) {
    return outcomeOf(Promise.reject(error));
  }
}

async function actionRow(kit: CellKit, id: string): Promise<Record<string, unknown>> {
  const { rows } = await kit.db.query<Record<string, unknown>>("SELECT * FROM actions WHERE id = $1", [id]);
  return rows[0]!;
}

/** Every event the call wrote about the cell's actions names the caller,
 * apart from the policy's own decisions. */
async function eventsByCaller(kit: CellKit, atLeast = 1): Promise<void> {
  const events = (await kit.eventsWritten()).filter((e) => !e.actor.startsWith("policy:"));
  expect(events.length, "events written by the call").toBeGreaterThanOrEqual(atLeast);
  for (const event of events) expect(event.actor, `${event.eventType} actor`).toBe(kit.caller.name);
}

function enqueueVariants(call: (kit: CellKit, request: Record<string, unknown>) => Promise<Outcome>): Variant[] {
  const fresh = (_kit: CellKit, place: Place, createdBy: string) => ({ actionType: place.newType(), project: place.project, createdBy, correlationId: "" });
  const checkProducer = (kit: CellKit, type: string) => async () => {
    const { rows } = await kit.db.query<{ id: string; created_by: string }>("SELECT id::text, created_by FROM actions WHERE action_type = $1", [type]);
    expect(rows).toHaveLength(1);
    kit.track(rows[0]!.id);
    expect(rows[0]!.created_by).toBe(kit.caller.name);
    await eventsByCaller(kit);
  };
  return [
    {
      name: "created_by left empty: filled with the principal",
      rule: ok,
      async prepare(kit) {
        const request = fresh(kit, kit.home, "");
        return { call: () => call(kit, request), verify: checkProducer(kit, request.actionType) };
      },
    },
    {
      name: "created_by names the principal",
      rule: ok,
      async prepare(kit) {
        const request = fresh(kit, kit.home, kit.caller.name ?? "app:nobody");
        return { call: () => call(kit, request), verify: checkProducer(kit, request.actionType) };
      },
    },
    {
      name: "created_by names someone else",
      rule: identity("created_by"),
      async prepare(kit) {
        const request = fresh(kit, kit.home, SOMEONE_ELSE);
        return { call: () => call(kit, request) };
      },
    },
    {
      name: "project outside the scope",
      rule: scopedRefused,
      async prepare(kit) {
        const request = fresh(kit, kit.elsewhere, "");
        return { call: () => call(kit, request), verify: checkProducer(kit, request.actionType) };
      },
    },
  ];
}

/** ImportActions: actions have no project there, so a principal scoped to
 * projects may import none; the actor is an identity field; keeping the
 * other system's approvals needs the operator role too. */
function importVariants(): Variant[] {
  const imported = (kit: CellKit, status: string) => ({
    externalId: `${kit.home.newType()}-there`,
    status,
    createTime: { seconds: "1620000000", nanos: 0 },
    createdBy: "supervisor",
    actionType: kit.home.newType(),
  });
  const call = (kit: CellKit, request: Record<string, unknown>) => batchItem(kit, "ImportActions", request);
  const checkImported = (kit: CellKit, actionType: string, status: string, approvedBy: string | null) => async () => {
    const { rows } = await kit.db.query<{ id: string; status: string; created_by: string; approved_by: string | null }>(
      "SELECT id::text, status, created_by, approved_by FROM actions WHERE action_type = $1",
      [actionType],
    );
    expect(rows).toHaveLength(1);
    kit.track(rows[0]!.id);
    expect(rows[0]).toMatchObject({ status, created_by: "supervisor", approved_by: approvedBy });
    await eventsByCaller(kit);
  };
  return [
    {
      name: "actor left empty: filled with the principal",
      rule: scopedRefused,
      async prepare(kit) {
        const item = imported(kit, "ACTION_STATUS_PENDING");
        return { call: () => call(kit, { actions: [item], actor: "" }), verify: checkImported(kit, item.actionType, "pending", null) };
      },
    },
    {
      name: "actor names someone else",
      rule: identity("actor"),
      async prepare(kit) {
        return { call: () => call(kit, { actions: [imported(kit, "ACTION_STATUS_PENDING")], actor: SOMEONE_ELSE }) };
      },
    },
    {
      name: "trust_approvals for an APPROVED action",
      rule: { kind: "also-needs-role", role: "operator", reason: "TRUST_NEEDS_OPERATOR" },
      async prepare(kit) {
        const item = imported(kit, "ACTION_STATUS_APPROVED");
        return {
          call: () => call(kit, { actions: [item], trustApprovals: true }),
          verify: checkImported(kit, item.actionType, "approved", kit.caller.name ?? null),
        };
      },
    },
  ];
}

/** The three variants of a by-id call with an identity field: left empty,
 * naming someone else, and on an action outside the scope. */
function byIdVariants(
  field: string,
  resource: (kit: CellKit, place: Place) => Promise<WireAction>,
  call: (kit: CellKit, action: WireAction, who: string) => Promise<Outcome>,
  verify: (kit: CellKit, action: WireAction) => Promise<void> = async (kit) => eventsByCaller(kit),
): Variant[] {
  return [
    {
      name: `${field} left empty: filled with the principal`,
      rule: ok,
      async prepare(kit) {
        const action = await resource(kit, kit.home);
        return { call: () => call(kit, action, ""), verify: () => verify(kit, action) };
      },
    },
    {
      name: `${field} names someone else`,
      rule: identity(field),
      async prepare(kit) {
        const action = await resource(kit, kit.home);
        return { call: () => call(kit, action, SOMEONE_ELSE) };
      },
    },
    {
      name: "an action outside the scope",
      rule: scopedRefused,
      async prepare(kit) {
        const action = await resource(kit, kit.elsewhere);
        return { call: () => call(kit, action, ""), verify: () => verify(kit, action) };
      },
    },
  ];
}

/** The caller's own claim, and another worker principal's claim used with
 * its right token. */
function claimHolderVariants(
  call: (kit: CellKit, claim: Claimed) => Promise<Outcome>,
  verify: (kit: CellKit, claim: Claimed) => Promise<void> = async (kit) => eventsByCaller(kit, 0),
): Variant[] {
  return [
    {
      name: "the principal's own claim",
      rule: ok,
      async prepare(kit) {
        const claim = await kit.claimed(kit.home, kit.ownHolder);
        return { call: () => call(kit, claim), verify: () => verify(kit, claim) };
      },
    },
    {
      name: "another principal's claim, with its right token",
      rule: notClaimHolder,
      async prepare(kit) {
        const claim = await kit.claimed(kit.home, kit.otherHolder);
        return { call: () => call(kit, claim) };
      },
    },
  ];
}

/** ClaimAction and StreamClaims: worker left empty, naming someone else, and
 * a filter outside the scope. `take` runs the call and, when it succeeds,
 * the claim it made (or null). */
function claimVariants(take: (kit: CellKit, request: Record<string, unknown>) => Promise<{ outcome: Outcome; claim: Claimed | null }>): Variant[] {
  const claimedByCaller = async (kit: CellKit, claim: Claimed | null, action: WireAction) => {
    expect(claim?.action.id, "the call claimed the cell's action").toBe(action.id);
    expect((await actionRow(kit, action.id)).claimed_by).toBe(kit.caller.name);
    await eventsByCaller(kit);
  };
  const variant = (name: string, rule: Rule, place: "home" | "elsewhere", worker: "empty" | "other"): Variant => ({
    name,
    rule,
    async prepare(kit) {
      const action = await kit.approved(kit[place]);
      let claim: Claimed | null = null;
      // For the scoped principal the projects filter stays empty at home: an empty filter becomes its scope.
      const request = {
        worker: worker === "empty" ? "" : SOMEONE_ELSE,
        actionTypes: [action.actionType],
        projects: place === "home" && kit.home.project === SCOPED_PROJECT ? [] : [action.project],
      };
      return {
        async call() {
          const result = await take(kit, request);
          claim = result.claim;
          return result.outcome;
        },
        verify: () => claimedByCaller(kit, claim, action),
      };
    },
  });
  return [
    variant("worker left empty: filled with the principal", ok, "home", "empty"),
    variant("worker names someone else", identity("worker"), "home", "other"),
    variant("a filter outside the scope", scopedRefused, "elsewhere", "empty"),
  ];
}

function pauseVariants(method: "PauseClaims" | "ResumeClaims"): Variant[] {
  const variant = (name: string, rule: Rule, scope: (kit: CellKit) => { kind: string; value: string }, actor: "empty" | "other", global = false): Variant => ({
    name,
    rule,
    global,
    async prepare(kit) {
      const pauseScope = scope(kit);
      if (method === "ResumeClaims")
        await kit.as("admin").unary("PauseClaims", { scope: pauseScope, actor: PRINCIPALS.admin.name, reason: "set up for ResumeClaims" });
      return {
        call: () => unary(kit, method, { scope: pauseScope, actor: actor === "empty" ? "" : SOMEONE_ELSE, reason: "matrix" }),
        async verify() {
          const kind = pauseScope.kind.replace("PAUSE_KIND_", "").toLowerCase();
          const { rows } = await kit.db.query<{ paused_by: string }>("SELECT paused_by FROM pauses WHERE kind = $1 AND value = $2", [kind, pauseScope.value]);
          if (method === "PauseClaims") expect(rows.map((r) => r.paused_by)).toEqual([kit.caller.name]);
          else expect(rows).toEqual([]);
          await eventsByCaller(kit);
        },
      };
    },
  });
  // The scoped principal is limited by projects and by action_types: the spec
  // allows ACTION_TYPE only to a principal limited by action_types alone, and
  // PROJECT only to one limited by projects alone (a pause of a type reaches
  // every project, and of a project every type), so it may pause neither.
  // Principals scoped on one axis are in authz.test.ts.
  return [
    variant("ACTION_TYPE of a type in scope, actor left empty", scopedRefused, (kit) => kit.pauseScope("ACTION_TYPE", kit.home.newType()), "empty"),
    variant("actor names someone else", identity("actor"), (kit) => kit.pauseScope("ACTION_TYPE", kit.home.newType()), "other"),
    variant("PROJECT outside the scope", scopedRefused, (kit) => kit.pauseScope("PROJECT", `${ELSEWHERE}-${kit.elsewhere.newType()}`), "empty"),
    variant("ALL", scopedRefused, (kit) => kit.pauseScope("ALL"), "empty", true),
    variant("AUTO_APPROVAL", scopedRefused, (kit) => kit.pauseScope("AUTO_APPROVAL"), "empty", true),
  ];
}

function eventReadVariants(read: (kit: CellKit, request: Record<string, unknown>) => Promise<Outcome>): Variant[] {
  return [
    {
      name: "action_id of an action in scope",
      rule: ok,
      async prepare(kit) {
        const action = await kit.pending(kit.home);
        return { call: () => read(kit, { actionId: action.id }) };
      },
    },
    {
      name: "no action_id",
      rule: scopedRefused,
      async prepare(kit) {
        return { call: () => read(kit, {}) };
      },
    },
    {
      name: "action_id of an action outside the scope",
      rule: scopedRefused,
      async prepare(kit) {
        const action = await kit.pending(kit.elsewhere);
        return { call: () => read(kit, { actionId: action.id }) };
      },
    },
  ];
}

/** The outcome of a server stream by its first accepted message; `whileOpen`
 * runs on that message before the stream is cancelled. */
async function streamOutcome(
  kit: CellKit,
  method: string,
  request: Record<string, unknown>,
  accept: (m: Record<string, unknown>) => boolean,
  whileOpen: (m: Record<string, unknown>) => Promise<void> = async () => {},
): Promise<{ outcome: Outcome; message: Record<string, unknown> | null }> {
  const stream = kit.caller.stream(method, request);
  try {
    const first = await firstMessage(stream, accept);
    if ("error" in first) return { outcome: first.error, message: null };
    await whileOpen(first.message);
    return { outcome: OK, message: first.message };
  } finally {
    stream.cancel();
  }
}

export const ROWS: Row[] = [
  { rpc: "EnqueueAction", label: "EnqueueAction", roles: ["producer"], variants: enqueueVariants((kit, r) => unary(kit, "EnqueueAction", r)) },
  {
    rpc: "EnqueueActions",
    label: "EnqueueActions",
    roles: ["producer"],
    variants: enqueueVariants((kit, r) => batchItem(kit, "EnqueueActions", { requests: [r] })),
  },
  { rpc: "ImportActions", label: "ImportActions", roles: ["producer"], variants: importVariants() },
  {
    rpc: "GetAction",
    label: "GetAction",
    roles: ["viewer"],
    variants: [
      {
        name: "an action in scope",
        rule: ok,
        prepare: async (kit) => ((a) => ({ call: () => unary(kit, "GetAction", { id: a.id }) }))(await kit.pending(kit.home)),
      },
      {
        name: "an action outside the scope",
        rule: scopedRefused,
        prepare: async (kit) => ((a) => ({ call: () => unary(kit, "GetAction", { id: a.id }) }))(await kit.pending(kit.elsewhere)),
      },
    ],
  },
  {
    rpc: "ListActions",
    label: "ListActions",
    roles: ["viewer"],
    variants: [
      { name: "no filter", rule: ok, prepare: async (kit) => ({ call: () => unary(kit, "ListActions", { pageSize: 5 }) }) },
      {
        name: "a project filter outside the scope",
        rule: scopedRefused,
        prepare: async (kit) => ({ call: () => unary(kit, "ListActions", { projects: [ELSEWHERE], pageSize: 5 }) }),
      },
    ],
  },
  {
    rpc: "ApproveAction",
    label: "ApproveAction",
    roles: ["approver"],
    variants: byIdVariants(
      "approver",
      (kit, place) => kit.pending(place),
      (kit, action, approver) => unary(kit, "ApproveAction", { id: action.id, approver, note: "matrix" }),
      async (kit, action) => {
        expect((await actionRow(kit, action.id)).approved_by).toBe(kit.caller.name);
        await eventsByCaller(kit);
      },
    ),
  },
  {
    rpc: "RejectAction",
    label: "RejectAction without claim_token (a PENDING action)",
    roles: ["approver"],
    variants: byIdVariants(
      "actor",
      (kit, place) => kit.pending(place),
      (kit, action, actor) => unary(kit, "RejectAction", { id: action.id, actor, reason: "matrix" }),
    ),
  },
  {
    rpc: "RejectAction",
    label: "RejectAction with claim_token (a CLAIMED action)",
    roles: ["worker"],
    variants: [
      ...claimHolderVariants(
        (kit, claim) => unary(kit, "RejectAction", { id: claim.action.id, actor: "", reason: "matrix", claimToken: claim.claimToken }),
        async (kit) => eventsByCaller(kit),
      ),
      {
        name: "actor names someone else, on the principal's own claim",
        rule: identity("actor"),
        async prepare(kit) {
          const claim = await kit.claimed(kit.home, kit.ownHolder);
          return { call: () => unary(kit, "RejectAction", { id: claim.action.id, actor: SOMEONE_ELSE, reason: "matrix", claimToken: claim.claimToken }) };
        },
      },
    ],
  },
  {
    rpc: "CancelAction",
    label: "CancelAction",
    roles: ["operator"],
    variants: byIdVariants(
      "actor",
      (kit, place) => kit.pending(place),
      (kit, action, actor) => unary(kit, "CancelAction", { id: action.id, actor, reason: "matrix" }),
    ),
  },
  {
    rpc: "ClaimAction",
    label: "ClaimAction",
    roles: ["worker"],
    variants: claimVariants(async (kit, request) => {
      try {
        const response = await kit.caller.unary<{ claim: WireClaim | null }>("ClaimAction", request);
        return { outcome: OK, claim: response.claim ?? null };
      } catch (error) {
        return { outcome: await outcomeOf(Promise.reject(error)), claim: null };
      }
    }),
  },
  {
    rpc: "StreamClaims",
    label: "StreamClaims",
    roles: ["worker"],
    variants: claimVariants(async (kit, request) => {
      // Acknowledged before the stream closes, so that closing it releases nothing.
      const { outcome, message } = await streamOutcome(
        kit,
        "StreamClaims",
        { ...request, maxInFlight: 1 },
        (m) => m.kind === "claim",
        async (m) => {
          const claim = m.claim as WireClaim;
          await kit.caller.unary("AckClaim", { id: claim.action.id, claimToken: claim.claimToken }).catch(() => {});
        },
      );
      return { outcome, claim: (message?.claim as WireClaim | undefined) ?? null };
    }),
  },
  {
    rpc: "AckClaim",
    label: "AckClaim",
    roles: ["worker"],
    variants: claimHolderVariants((kit, claim) => unary(kit, "AckClaim", { id: claim.action.id, claimToken: claim.claimToken })),
  },
  {
    rpc: "ExtendClaim",
    label: "ExtendClaim",
    roles: ["worker"],
    variants: claimHolderVariants((kit, claim) =>
      unary(kit, "ExtendClaim", { id: claim.action.id, claimToken: claim.claimToken, leaseDuration: { seconds: 600 } }),
    ),
  },
  {
    rpc: "CompleteAction",
    label: "CompleteAction",
    roles: ["worker"],
    variants: claimHolderVariants(
      (kit, claim) => unary(kit, "CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "matrix" }),
      async (kit) => eventsByCaller(kit),
    ),
  },
  {
    rpc: "CompleteActions",
    label: "CompleteActions",
    roles: ["worker"],
    variants: claimHolderVariants(
      (kit, claim) => batchItem(kit, "CompleteActions", { requests: [{ id: claim.action.id, claimToken: claim.claimToken, resultRef: "matrix" }] }),
      async (kit) => eventsByCaller(kit),
    ),
  },
  {
    rpc: "FailAction",
    label: "FailAction",
    roles: ["worker"],
    variants: claimHolderVariants(
      (kit, claim) => unary(kit, "FailAction", { id: claim.action.id, claimToken: claim.claimToken, reason: "matrix" }),
      async (kit) => eventsByCaller(kit),
    ),
  },
  {
    rpc: "RetryAction",
    label: "RetryAction",
    roles: ["operator"],
    variants: byIdVariants(
      "actor",
      (kit, place) => kit.failed(place),
      (kit, action, actor) => unary(kit, "RetryAction", { id: action.id, actor, reason: "matrix" }),
    ),
  },
  {
    rpc: "BreakGlass",
    label: "BreakGlass",
    roles: ["operator"],
    variants: byIdVariants(
      "actor",
      (kit, place) => kit.approved(place),
      (kit, action, actor) => unary(kit, "BreakGlass", { id: action.id, actor, reason: "matrix" }),
      async (kit, action) => {
        expect((await actionRow(kit, action.id)).break_glass_by).toBe(kit.caller.name);
        await eventsByCaller(kit);
      },
    ),
  },
  {
    rpc: "RollbackAction",
    label: "RollbackAction",
    roles: ["producer", "operator"],
    variants: byIdVariants(
      "actor",
      (kit, place) => kit.completed(place, place.newType()),
      (kit, action, actor) => unary(kit, "RollbackAction", { id: action.id, actor, reason: "matrix" }),
      async (kit, action) => {
        const { rows } = await kit.db.query<{ id: string; created_by: string }>("SELECT id::text, created_by FROM actions WHERE parent_id = $1", [action.id]);
        expect(rows.map((r) => r.created_by)).toEqual([kit.caller.name]);
        await eventsByCaller(kit);
      },
    ),
  },
  {
    rpc: "SweepClaims",
    label: "SweepClaims",
    roles: ["operator"],
    unscopedOnly: true,
    variants: [
      { name: "actor left empty", rule: ok, global: true, prepare: async (kit) => ({ call: () => unary(kit, "SweepClaims", { actor: "" }) }) },
      {
        name: "actor names someone else",
        rule: identity("actor"),
        global: true,
        prepare: async (kit) => ({ call: () => unary(kit, "SweepClaims", { actor: SOMEONE_ELSE }) }),
      },
    ],
  },
  { rpc: "ListEvents", label: "ListEvents", roles: ["viewer"], variants: eventReadVariants((kit, r) => unary(kit, "ListEvents", { ...r, pageSize: 5 })) },
  {
    rpc: "WatchEvents",
    label: "WatchEvents",
    roles: ["viewer"],
    variants: eventReadVariants(async (kit, r) => (await streamOutcome(kit, "WatchEvents", r, () => true)).outcome),
  },
  {
    rpc: "EmitEvent",
    label: "EmitEvent with event_type action_progress",
    roles: ["worker"],
    variants: [
      ...claimHolderVariants(
        (kit, claim) => unary(kit, "EmitEvent", { eventType: "action_progress", actor: "", actionId: claim.action.id, claimToken: claim.claimToken }),
        async (kit) => eventsByCaller(kit),
      ),
      {
        name: "actor names someone else, on the principal's own claim",
        rule: identity("actor"),
        async prepare(kit) {
          const claim = await kit.claimed(kit.home, kit.ownHolder);
          return {
            call: () => unary(kit, "EmitEvent", { eventType: "action_progress", actor: SOMEONE_ELSE, actionId: claim.action.id, claimToken: claim.claimToken }),
          };
        },
      },
    ],
  },
  {
    rpc: "EmitEvent",
    label: "EmitEvent with another event_type (coordinator_cycle)",
    roles: ["operator"],
    variants: [
      ...byIdVariants(
        "actor",
        (kit, place) => kit.pending(place),
        (kit, action, actor) => unary(kit, "EmitEvent", { eventType: "coordinator_cycle", actor, actionId: action.id }),
      ),
      {
        name: "without action_id (unscoped principals only)",
        rule: scopedRefused,
        global: true,
        prepare: async (kit) => ({ call: () => unary(kit, "EmitEvent", { eventType: "coordinator_cycle", actor: "" }), verify: () => eventsByCaller(kit) }),
      },
    ],
  },
  { rpc: "PauseClaims", label: "PauseClaims", roles: ["operator"], variants: pauseVariants("PauseClaims") },
  { rpc: "ResumeClaims", label: "ResumeClaims", roles: ["operator"], variants: pauseVariants("ResumeClaims") },
  {
    rpc: "GetQueueStats",
    label: "GetQueueStats",
    roles: ["viewer"],
    unscopedOnly: true,
    variants: [{ name: "(no fields)", rule: ok, prepare: async (kit) => ({ call: () => unary(kit, "GetQueueStats", {}) }) }],
  },
  {
    rpc: "GetPolicy",
    label: "GetPolicy",
    roles: ["viewer"],
    variants: [{ name: "(no fields)", rule: ok, prepare: async (kit) => ({ call: () => unary(kit, "GetPolicy", {}) }) }],
  },
  {
    rpc: "GetCaller",
    label: "GetCaller",
    roles: ["producer", "worker", "approver", "operator", "viewer"],
    variants: [{ name: "(no fields)", rule: ok, prepare: async (kit) => ({ call: () => unary(kit, "GetCaller", {}) }) }],
  },
  {
    rpc: "ReloadPolicy",
    label: "ReloadPolicy",
    roles: ["operator"],
    unscopedOnly: true,
    variants: [
      { name: "actor left empty", rule: ok, global: true, prepare: async (kit) => ({ call: () => unary(kit, "ReloadPolicy", { actor: "" }) }) },
      {
        name: "actor names someone else",
        rule: identity("actor"),
        global: true,
        prepare: async (kit) => ({ call: () => unary(kit, "ReloadPolicy", { actor: SOMEONE_ELSE }) }),
      },
    ],
  },
  ...scheduleRows(),
];

// ---------------------------------------------------------------------------
// Schedules

/** A schedule owned by `owner`, written straight to the database so that any
 * caller can own one (whatever roles it has); its clock never ticks during
 * the matrix. */
async function scheduleOf(kit: CellKit, place: Place, owner: string | undefined): Promise<string> {
  const actionType = place.newType();
  const id = `s-${actionType}`;
  await kit.db.query(
    `INSERT INTO schedules (id, template, project, cron, time_zone, anchor_time, overlap_policy, catch_up_ms, owner, next_tick_time)
     VALUES ($1, $2::jsonb, $3, '0 0 1 1 *', 'UTC', now(), 'skip', 60000, $4, '2099-01-01T00:00:00Z')`,
    [id, JSON.stringify({ actionType, project: place.project }), place.project, owner ?? PRINCIPALS.producer.name],
  );
  return id;
}

const scheduleTemplate = (place: Place) => {
  const actionType = place.newType();
  return { id: `s-${actionType}`, template: { actionType, project: place.project }, cron: "0 0 1 1 *" };
};

async function scheduleOwner(kit: CellKit, id: string): Promise<string | undefined> {
  const { rows } = await kit.db.query<{ owner: string }>("SELECT owner FROM schedules WHERE id = $1 AND deleted_at IS NULL", [id]);
  return rows[0]?.owner;
}

/** A change to an existing schedule: on the caller's own, with the
 * identity field naming someone else, and on someone else's. */
function scheduleChangeVariants(
  call: (kit: CellKit, id: string, actor: string) => Promise<Outcome>,
  operatorMay: boolean,
  verify: (kit: CellKit, id: string) => Promise<void>,
): Variant[] {
  return [
    {
      name: "the caller's own schedule, actor left empty",
      rule: ok,
      async prepare(kit) {
        const id = await scheduleOf(kit, kit.home, kit.caller.name);
        return { call: () => call(kit, id, ""), verify: () => verify(kit, id) };
      },
    },
    {
      name: "actor names someone else",
      rule: identity("actor"),
      async prepare(kit) {
        const id = await scheduleOf(kit, kit.home, kit.caller.name);
        return { call: () => call(kit, id, SOMEONE_ELSE) };
      },
    },
    {
      name: "someone else's schedule",
      rule: { kind: "not-owner", operatorMay },
      async prepare(kit) {
        const id = await scheduleOf(kit, kit.home, SOMEONE_ELSE);
        return { call: () => call(kit, id, ""), verify: () => verify(kit, id) };
      },
    },
  ];
}

function scheduleRows(): Row[] {
  const revision = (expected: string) => async (kit: CellKit, id: string) => {
    const { rows } = await kit.db.query<{ revision: string }>("SELECT revision::text FROM schedules WHERE id = $1", [id]);
    expect(rows.map((r) => r.revision)).toEqual([expected]);
  };
  return [
    {
      rpc: "CreateSchedule",
      label: "CreateSchedule",
      roles: ["producer"],
      variants: [
        {
          name: "owner left empty: the principal owns it",
          rule: ok,
          async prepare(kit) {
            const schedule = scheduleTemplate(kit.home);
            return {
              call: () => unary(kit, "CreateSchedule", { schedule, owner: "" }),
              verify: async () => expect(await scheduleOwner(kit, schedule.id)).toBe(kit.caller.name),
            };
          },
        },
        {
          name: "owner names someone else",
          rule: identity("owner"),
          async prepare(kit) {
            const schedule = scheduleTemplate(kit.home);
            return { call: () => unary(kit, "CreateSchedule", { schedule, owner: SOMEONE_ELSE }) };
          },
        },
        {
          name: "a template outside the scope",
          rule: scopedRefused,
          async prepare(kit) {
            const schedule = scheduleTemplate(kit.elsewhere);
            return {
              call: () => unary(kit, "CreateSchedule", { schedule, owner: "" }),
              verify: async () => expect(await scheduleOwner(kit, schedule.id)).toBe(kit.caller.name),
            };
          },
        },
      ],
    },
    {
      rpc: "UpdateSchedule",
      label: "UpdateSchedule",
      roles: ["producer"],
      variants: [
        ...scheduleChangeVariants(
          (kit, id, actor) =>
            unary(kit, "UpdateSchedule", { schedule: { id, template: { actionType: id.slice(2), project: kit.home.project }, cron: "0 0 2 1 *" }, actor }),
          false,
          revision("2"),
        ),
        {
          name: "the caller's own schedule, a template outside the scope",
          rule: scopedRefused,
          async prepare(kit) {
            const id = await scheduleOf(kit, kit.home, kit.caller.name);
            const template = { actionType: kit.elsewhere.newType(), project: kit.elsewhere.project };
            return {
              call: () => unary(kit, "UpdateSchedule", { schedule: { id, template, cron: "0 0 2 1 *" }, actor: "" }),
              verify: () => revision("2")(kit, id),
            };
          },
        },
      ],
    },
    {
      rpc: "PauseSchedule",
      label: "PauseSchedule",
      roles: ["producer", "operator"],
      variants: scheduleChangeVariants((kit, id, actor) => unary(kit, "PauseSchedule", { id, reason: "matrix", actor }), true, revision("2")),
    },
    {
      rpc: "ResumeSchedule",
      label: "ResumeSchedule",
      roles: ["producer", "operator"],
      variants: scheduleChangeVariants(
        async (kit, id, actor) => {
          await kit.db.query("UPDATE schedules SET paused = true, next_tick_time = NULL WHERE id = $1", [id]);
          return unary(kit, "ResumeSchedule", { id, reason: "matrix", actor });
        },
        true,
        revision("2"),
      ),
    },
    {
      rpc: "DeleteSchedule",
      label: "DeleteSchedule",
      roles: ["producer", "operator"],
      variants: scheduleChangeVariants(
        (kit, id, actor) => unary(kit, "DeleteSchedule", { id, reason: "matrix", actor }),
        true,
        async (kit, id) => expect(await scheduleOwner(kit, id)).toBeUndefined(),
      ),
    },
    {
      rpc: "BackfillSchedule",
      label: "BackfillSchedule",
      roles: ["producer"],
      variants: scheduleChangeVariants(
        (kit, id, actor) =>
          unary(kit, "BackfillSchedule", { id, startTime: { seconds: "1600000000", nanos: 0 }, endTime: { seconds: "1600003600", nanos: 0 }, actor }),
        false,
        async () => {},
      ),
    },
    {
      rpc: "GetSchedule",
      label: "GetSchedule",
      roles: ["viewer"],
      variants: [
        {
          name: "a schedule in scope",
          rule: ok,
          prepare: async (kit) => {
            const id = await scheduleOf(kit, kit.home, undefined);
            return { call: () => unary(kit, "GetSchedule", { id }) };
          },
        },
        {
          name: "a schedule outside the scope",
          rule: scopedRefused,
          prepare: async (kit) => {
            const id = await scheduleOf(kit, kit.elsewhere, undefined);
            return { call: () => unary(kit, "GetSchedule", { id }) };
          },
        },
      ],
    },
    {
      rpc: "ListSchedules",
      label: "ListSchedules",
      roles: ["viewer"],
      variants: [
        { name: "(no filter)", rule: ok, prepare: async (kit) => ({ call: () => unary(kit, "ListSchedules", { pageSize: 5 }) }) },
        {
          name: "a project outside the scope",
          rule: scopedRefused,
          prepare: async (kit) => ({ call: () => unary(kit, "ListSchedules", { project: kit.elsewhere.project, pageSize: 5 }) }),
        },
      ],
    },
  ];
}
