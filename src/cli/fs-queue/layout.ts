// The filesystem queue of actionq's first design: one JSON document per
// action in the directory of its state, and a history.log beside them. Here:
// the directories, the status words of that system, and the document in both
// directions (an actionq Action to a document, a document to ImportedAction).
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type Action, ActionStatus, RiskLevel } from "../../../gen/actionq/v1/action_pb.js";
import type { ImportedAction } from "../../../gen/actionq/v1/action_queue_service_pb.js";

export const DIRECTORIES = ["pending", "approved", "running", "completed", "failed", "rejected"] as const;
export type Directory = (typeof DIRECTORIES)[number];

/** The old system's status words: its directories, and `cancelled`, which
 * it kept in rejected/. */
export type OldStatus = Directory | "cancelled";

export const HISTORY_FILE = "history.log";

const STATUS_TO_OLD: Partial<Record<ActionStatus, OldStatus>> = {
  [ActionStatus.PENDING]: "pending",
  [ActionStatus.APPROVED]: "approved",
  [ActionStatus.CLAIMED]: "running",
  [ActionStatus.COMPLETED]: "completed",
  [ActionStatus.FAILED]: "failed",
  [ActionStatus.REJECTED]: "rejected",
  [ActionStatus.CANCELLED]: "cancelled",
};

export const OLD_TO_STATUS: Record<OldStatus, ActionStatus> = {
  pending: ActionStatus.PENDING,
  approved: ActionStatus.APPROVED,
  running: ActionStatus.CLAIMED,
  completed: ActionStatus.COMPLETED,
  failed: ActionStatus.FAILED,
  rejected: ActionStatus.REJECTED,
  cancelled: ActionStatus.CANCELLED,
};

export function oldStatus(status: ActionStatus): OldStatus {
  const old = STATUS_TO_OLD[status];
  if (!old) throw new Error(`action status ${status} has no directory`);
  return old;
}

export function directoryOf(status: OldStatus): Directory {
  return status === "cancelled" ? "rejected" : status;
}

/** How far along a copy is, to pick among duplicates: the finished
 * directories are all the end. */
export function progress(directory: Directory): number {
  return { pending: 0, approved: 1, running: 2, completed: 3, failed: 3, rejected: 3 }[directory];
}

const RISK_WORDS = ["safe", "guarded", "dangerous"] as const;
const RISK_TO_WIRE: Record<(typeof RISK_WORDS)[number], RiskLevel> = { safe: RiskLevel.SAFE, guarded: RiskLevel.GUARDED, dangerous: RiskLevel.DANGEROUS };

/** The seed's document, its keys in the seed's order (export writes them so,
 * so that tools diffing the old files see no churn). */
export interface ActionDocument {
  action_id: string;
  created_at: number;
  proposed_by: string;
  correlation_id: string | null;
  node: string | null;
  service: string | null;
  action_type: string;
  risk_level: string;
  confidence: number | null;
  approval_required: boolean;
  autonomous_eligible: boolean;
  status: OldStatus;
  payload: JsonObject;
  rollback_reference: string | null;
  [key: string]: JsonValue;
}

/** Epoch seconds with microseconds, as the old system wrote `time.time()`. */
export function epochSeconds(timestamp: Timestamp | undefined): number {
  if (!timestamp) return 0;
  const micros = timestamp.seconds * 1_000_000n + BigInt(Math.floor(timestamp.nanos / 1000));
  return Number(micros) / 1e6;
}

/** The inverse of epochSeconds, exact to the microsecond for any time of
 * this era (a double holds 2^53 microseconds, some 285 years). */
export function timestampOfEpoch(seconds: number): Timestamp {
  const micros = BigInt(Math.round(seconds * 1e6));
  let whole = micros / 1_000_000n;
  let rest = micros % 1_000_000n;
  if (rest < 0n) {
    whole -= 1n;
    rest += 1_000_000n;
  }
  return { seconds: whole, nanos: Number(rest) * 1000 } as Timestamp;
}

export function documentOf(action: Action): ActionDocument {
  const risk = RISK_WORDS[action.riskLevel - 1] ?? "safe";
  return {
    action_id: action.externalId,
    created_at: epochSeconds(action.createTime),
    proposed_by: action.createdBy,
    correlation_id: action.correlationId || null,
    node: action.node || null,
    service: action.service || null,
    action_type: action.actionType,
    risk_level: risk,
    confidence: action.confidence ?? null,
    approval_required: action.approvalRequired,
    autonomous_eligible: action.autonomousEligible,
    status: oldStatus(action.status),
    payload: action.payload ?? {},
    rollback_reference: action.rollbackRef || null,
  };
}

/** What export writes: two-space JSON and a final newline, as the old
 * system's `json.dump(..., indent=2)` files were diffed by people. */
export function documentText(document: ActionDocument): string {
  return `${JSON.stringify(document, null, 2)}\n`;
}

/** The ImportedAction fields a document gives (history, times of finishing
 * and the source are added by the reader). */
export type DocumentFields = Pick<
  ImportedAction,
  | "externalId"
  | "status"
  | "createTime"
  | "createdBy"
  | "correlationId"
  | "node"
  | "service"
  | "actionType"
  | "riskLevel"
  | "confidence"
  | "approvalRequired"
  | "autonomousEligible"
  | "payload"
  | "rollbackRef"
  | "original"
>;

export type Parsed = { ok: true; fields: DocumentFields; notes: string[] } | { ok: false; reason: string };

const isObject = (value: unknown): value is JsonObject => typeof value === "object" && value !== null && !Array.isArray(value);
const show = (value: unknown) => JSON.stringify(value) ?? String(value);

class Malformed extends Error {}

/** An optional string: null and absent are "". */
function optionalText(doc: JsonObject, key: string): string {
  const value = doc[key];
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw new Malformed(`${key} is ${show(value)}, not a string or null`);
  return value;
}

function requiredText(doc: JsonObject, key: string): string {
  const value = doc[key];
  if (value === undefined || value === null) throw new Malformed(`${key} is missing`);
  if (typeof value !== "string") throw new Malformed(`${key} is ${show(value)}, not a string`);
  if (value.trim() === "") throw new Malformed(`${key} is empty`);
  return value;
}

function flag(doc: JsonObject, key: string): boolean {
  const value = doc[key];
  if (value === undefined || value === null) return false;
  if (typeof value !== "boolean") throw new Malformed(`${key} is ${show(value)}, not true or false`);
  return value;
}

/** created_at: epoch seconds (the old system's), or an ISO 8601 string. */
function createdAt(doc: JsonObject): Timestamp {
  const value = doc.created_at;
  if (value === undefined || value === null) throw new Malformed("created_at is missing");
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) return timestampOfEpoch(value);
  if (typeof value === "string" && /^\d{4}-\d\d-\d\dT/.test(value) && !Number.isNaN(Date.parse(value))) return timestampOfEpoch(Date.parse(value) / 1000);
  throw new Malformed(`created_at is ${show(value)}, not epoch seconds or an ISO 8601 time`);
}

/** Reads one document found in `directory`; anything that would have to be
 * guessed is malformed, so that nothing is half-imported. */
export function parseDocument(text: string, directory: Directory): Parsed {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `not JSON (${(error as Error).message})` };
  }
  if (!isObject(doc)) return { ok: false, reason: `not a JSON object (${Array.isArray(doc) ? "an array" : doc === null ? "null" : typeof doc})` };
  try {
    const notes: string[] = [];
    const risk = doc.risk_level;
    if (risk !== undefined && risk !== null && !(typeof risk === "string" && (RISK_WORDS as readonly string[]).includes(risk)))
      throw new Malformed(`risk_level is ${show(risk)}, not safe, guarded or dangerous`);
    const confidence = doc.confidence;
    if (confidence !== undefined && confidence !== null && (typeof confidence !== "number" || !(confidence >= 0 && confidence <= 1)))
      throw new Malformed(`confidence is ${show(confidence)}, not a number from 0 to 1 or null`);
    const payload = doc.payload;
    if (payload !== undefined && payload !== null && !isObject(payload)) throw new Malformed(`payload is ${show(payload)}, not an object or null`);
    const status = doc.status;
    if (status !== undefined && status !== null && typeof status !== "string") throw new Malformed(`status is ${show(status)}, not a string`);
    // The directory is where the old system's tools looked, so it decides;
    // only a cancelled action shares rejected/ and needs its status word.
    let old: OldStatus = directory;
    if (directory === "rejected" && status === "cancelled") old = "cancelled";
    else if (typeof status === "string" && status !== directory) notes.push(`status "${status}" disagrees with ${directory}/, which decides`);
    const fields: DocumentFields = {
      externalId: requiredText(doc, "action_id"),
      status: OLD_TO_STATUS[old],
      createTime: createdAt(doc),
      createdBy: requiredText(doc, "proposed_by"),
      correlationId: optionalText(doc, "correlation_id"),
      node: optionalText(doc, "node"),
      service: optionalText(doc, "service"),
      actionType: requiredText(doc, "action_type"),
      riskLevel: typeof risk === "string" ? RISK_TO_WIRE[risk as keyof typeof RISK_TO_WIRE] : RiskLevel.UNSPECIFIED,
      confidence: typeof confidence === "number" ? confidence : undefined,
      approvalRequired: flag(doc, "approval_required"),
      autonomousEligible: flag(doc, "autonomous_eligible"),
      payload: isObject(payload) ? payload : {},
      rollbackRef: optionalText(doc, "rollback_reference"),
      original: doc,
    };
    return { ok: true, fields, notes };
  } catch (error) {
    if (error instanceof Malformed) return { ok: false, reason: error.message };
    throw error;
  }
}
