// Small helpers for tests that speak to the server through @grpc/grpc-js:
// the shapes its plain objects come in, Struct conversion, the ErrorInfo
// carried in the status trailer, and a few calls most tests repeat.
import type * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { type DescMessage, type MessageShape, fromBinary } from "@bufbuild/protobuf";
import { AnySchema, anyUnpack } from "@bufbuild/protobuf/wkt";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type ErrorInfo, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { expect } from "vitest";
import { type TestServer, grpcError, snapshot } from "./harness.js";

/** google.protobuf.Timestamp as grpc-js gives it (int64 seconds as a string). */
export interface WireTimestamp {
  seconds: string;
  nanos: number;
}

/** google.protobuf.Struct in protobufjs object form. */
export interface WireStruct {
  fields: Record<string, WireValue>;
}

export interface WireValue {
  kind?: string;
  nullValue?: string | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: WireStruct;
  listValue?: { values: WireValue[] };
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface WireAction {
  id: string;
  actionType: string;
  project: string;
  targetRef: string;
  sourceRefs: string[];
  payload: WireStruct | null;
  priority: number;
  status: string;
  riskLevel: string;
  confidence?: number | null;
  approvalRequired: boolean;
  createdBy: string;
  correlationId: string;
  node: string;
  service: string;
  parentId: string;
  chainDepth: number;
  claimedBy: string;
  claimDeadline: WireTimestamp | null;
  attempt: number;
  resultRef: string;
  failureReason: string;
  rollbackRef: string;
  createTime: WireTimestamp | null;
  updateTime: WireTimestamp | null;
  finishTime: WireTimestamp | null;
  approvedBy: string;
  approveTime: WireTimestamp | null;
  idempotencyKey: string;
  claimTime: WireTimestamp | null;
  claimAcked: boolean;
  // Retries and scheduling.
  runAfter: WireTimestamp | null;
  maxAttempts: number;
  failures: number;
  lostDeliveries: number;
  lastError: string;
  // The safety model.
  autonomousEligible: boolean;
  approvalsRequired: number;
  approvers: string[];
  approvalExpireTime: WireTimestamp | null;
  policyVersion: string;
  supersedesId: string;
  rollbackPayload: WireStruct | null;
  rollbackOfId: string;
  // Concurrency keys.
  concurrencyKey: string;
  concurrencyLimit: number;
}

export interface WireEvent {
  id: string;
  actionId: string;
  eventType: string;
  actor: string;
  payload: WireStruct | null;
  createTime: WireTimestamp | null;
}

export interface WireClaim {
  action: WireAction;
  claimToken: string;
  ackDeadline: WireTimestamp | null;
}

export interface EnqueueResponse<A = WireAction> {
  action: A;
  created: boolean;
}

export interface ListActionsResponse {
  actions: WireAction[];
  nextPageToken: string;
}

export const STATUS = {
  pending: "ACTION_STATUS_PENDING",
  approved: "ACTION_STATUS_APPROVED",
  claimed: "ACTION_STATUS_CLAIMED",
  completed: "ACTION_STATUS_COMPLETED",
  failed: "ACTION_STATUS_FAILED",
  rejected: "ACTION_STATUS_REJECTED",
  cancelled: "ACTION_STATUS_CANCELLED",
} as const;

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A well-formed claim token that the server never issued. */
export const FOREIGN_TOKEN = "00000000-0000-4000-8000-000000000000";

export function toValue(value: Json): WireValue {
  if (value === null) return { nullValue: "NULL_VALUE" };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

export function toStruct(object: { [key: string]: Json }): WireStruct {
  return { fields: Object.fromEntries(Object.entries(object).map(([key, value]) => [key, toValue(value)])) };
}

export function fromValue(value: WireValue): Json {
  switch (value.kind) {
    case "nullValue":
      return null;
    case "numberValue":
      return value.numberValue!;
    case "stringValue":
      return value.stringValue!;
    case "boolValue":
      return value.boolValue!;
    case "listValue":
      return (value.listValue?.values ?? []).map(fromValue);
    case "structValue":
      return fromStruct(value.structValue!);
    default:
      throw new Error(`unexpected Value ${JSON.stringify(value)}`);
  }
}

export function fromStruct(struct: WireStruct | null | undefined): { [key: string]: Json } {
  if (!struct) return {};
  return Object.fromEntries(Object.entries(struct.fields ?? {}).map(([key, value]) => [key, fromValue(value)]));
}

export function millis(ts: WireTimestamp | null | undefined): number {
  if (!ts) throw new Error("timestamp is unset");
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
}

/** The google.rpc.ErrorInfo in a grpc-js error's `grpc-status-details-bin`
 * trailer (a google.rpc.Status: code = 1, message = 2, details = 3). */
export function errorInfoOf(error: grpc.ServiceError): ErrorInfo | undefined {
  return statusDetailOf(error, ErrorInfoSchema);
}

/** The first detail of one type in a grpc-js error's status details. */
export function statusDetailOf<Desc extends DescMessage>(error: grpc.ServiceError, schema: Desc): MessageShape<Desc> | undefined {
  const [bin] = error.metadata?.get("grpc-status-details-bin") ?? [];
  if (!(bin instanceof Uint8Array)) return undefined;
  const reader = new BinaryReader(bin);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 3 && wireType === WireType.LengthDelimited) {
      const detail = anyUnpack(fromBinary(AnySchema, reader.bytes()), schema);
      if (detail) return detail;
    } else {
      reader.skip(wireType);
    }
  }
  return undefined;
}

/** A grpc-js error's message with the percent escapes that grpc-js leaves in
 * place undone (it decodes grpc-message with decodeURI, which keeps %3A,
 * %2C, %3B...); errors.test.ts checks that escaping separately. */
export function messageOf(error: grpc.ServiceError): string {
  try {
    return decodeURIComponent(error.details);
  } catch {
    return error.details;
  }
}

/** Waits for a grpc-js server stream to fail and returns its error. Fails if
 * the stream delivers a message other than the initial heartbeat or ends
 * cleanly first. */
export function streamError(stream: grpc.ClientReadableStream<Record<string, unknown>>, timeoutMs = 10_000): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error("the stream stayed open; an error was expected"));
    }, timeoutMs);
    stream.on("data", (message: Record<string, unknown>) => {
      if (message.kind !== "heartbeat") {
        clearTimeout(timer);
        stream.cancel();
        reject(new Error(`the stream delivered ${JSON.stringify(message)}; an error was expected`));
      }
    });
    stream.on("error", (error: grpc.ServiceError) => {
      clearTimeout(timer);
      resolve(error);
    });
    stream.on("end", () => {
      clearTimeout(timer);
      reject(new Error("the stream ended without an error"));
    });
  });
}

/** EnqueueAction through grpc-js, as `human:tester` unless the request says
 * otherwise; `A` narrows the action for a test that reads extra fields. */
export async function enqueue<A = WireAction>(t: TestServer, request: Record<string, unknown>): Promise<EnqueueResponse<A>> {
  return t.grpc.unary<EnqueueResponse<A>>("EnqueueAction", { createdBy: "human:tester", ...request });
}

export async function getAction(t: TestServer, id: string): Promise<{ action: WireAction; events: WireEvent[] }> {
  return t.grpc.unary("GetAction", { id });
}

export async function claimNext(t: TestServer, request: Record<string, unknown> = {}): Promise<WireClaim | null> {
  const res = await t.grpc.unary<{ claim: WireClaim | null }>("ClaimAction", { worker: "worker:test", ...request });
  return res.claim ?? null;
}

/** Enqueues a SAFE action of a type of its own and claims it. */
export async function enqueueAndClaim(t: TestServer, actionType: string, extra: Record<string, unknown> = {}): Promise<WireClaim> {
  const { action } = await enqueue(t, { actionType, ...extra });
  const claim = await claimNext(t, { actionTypes: [actionType] });
  if (!claim) throw new Error(`nothing to claim for ${actionType}`);
  if (claim.action.id !== action.id) throw new Error(`claimed ${claim.action.id}, expected ${action.id}`);
  return claim;
}

/** Cancels every APPROVED action, so that an unfiltered claim sees only what
 * the test enqueues next. */
export async function cancelAllApproved(t: TestServer): Promise<void> {
  for (;;) {
    const page = await t.grpc.unary<ListActionsResponse>("ListActions", { statuses: [STATUS.approved], pageSize: 1000 });
    if (page.actions.length === 0) return;
    for (const action of page.actions) {
      await t.grpc.unary("CancelAction", { id: action.id, actor: "human:cleanup", reason: "clearing the queue for a test" });
    }
  }
}

export interface Refusal {
  code: grpc.status;
  reason: string;
  /** ErrorInfo metadata.field; the message must name it too. */
  field?: string;
  /** ErrorInfo metadata.current_status; the message must name it too. */
  currentStatus?: string;
}

/** Makes a call that must be refused, checks the code, the ErrorInfo and
 * that nothing in the database changed, and returns the error. */
export async function expectRefused(t: TestServer, call: () => Promise<unknown>, expected: Refusal): Promise<grpc.ServiceError> {
  const before = await snapshot(t.db);
  const error = await grpcError(call());
  expect(await snapshot(t.db), "a refused call changes nothing").toBe(before);
  expect({ code: status[error.code], message: messageOf(error) }).toMatchObject({ code: status[expected.code] });
  const info = errorInfoOf(error);
  expect(info, `the status carries a google.rpc.ErrorInfo (${messageOf(error)})`).toBeDefined();
  expect(info!.reason).toBe(expected.reason);
  expect(info!.domain).toBe("actionq");
  if (expected.field !== undefined) {
    expect(info!.metadata.field).toBe(expected.field);
    expect(messageOf(error)).toContain(expected.field);
  }
  if (expected.currentStatus !== undefined) {
    expect(info!.metadata.current_status).toBe(expected.currentStatus);
    expect(messageOf(error)).toContain(expected.currentStatus);
  }
  return error;
}
