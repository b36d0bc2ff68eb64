// The RPC floor: the cheapest server that answers the calls the bench's
// load makes (EnqueueAction(s), StreamClaims, AckClaim, CompleteAction(s),
// GetQueueStats) over actionq's gRPC contract. It keeps its queue in memory
// and has no database, no validation, no policy and no event log. It runs
// on bare `node:http2` and encodes with the generated protobuf-es messages,
// as every protobuf-es server must, but builds them as complete typed
// literals (no `create()`), keeps the streams with room in an index
// (no scan per action) and reuses its constant headers, so that what the
// bench's clients achieve against it is the most any server with a network
// hop could give them on this machine. It is a yardstick, not a queue: it
// keeps nothing.
//
//   node dist/bench/lib/rpc-floor-server.js <port>
import http2 from "node:http2";
import { type DescMessage, type JsonObject, type MessageShape, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type Action, ActionStatus, type Claim, RiskLevel } from "../../gen/actionq/v1/action_pb.js";
import {
  type AckClaimResponse,
  AckClaimRequestSchema,
  AckClaimResponseSchema,
  type CompleteActionResponse,
  type CompleteActionResult,
  type CompleteActionsResponse,
  CompleteActionRequestSchema,
  CompleteActionResponseSchema,
  CompleteActionsRequestSchema,
  CompleteActionsResponseSchema,
  type EnqueueActionRequest,
  type EnqueueActionResponse,
  type EnqueueActionsResponse,
  EnqueueActionRequestSchema,
  EnqueueActionResponseSchema,
  EnqueueActionsRequestSchema,
  EnqueueActionsResponseSchema,
  type GetQueueStatsResponse,
  GetQueueStatsResponseSchema,
  type StreamClaimsResponse,
  StreamClaimsRequestSchema,
  StreamClaimsResponseSchema,
} from "../../gen/actionq/v1/action_queue_service_pb.js";

const SERVICE = "/actionq.v1.ActionQueueService/";
// node:http2 copies header objects before sending, so one of each serves every call.
const RESPONSE_HEADERS: http2.OutgoingHttpHeaders = { ":status": 200, "content-type": "application/grpc" };
const OK_TRAILERS: http2.OutgoingHttpHeaders = { "grpc-status": "0" };
const UNARY_OPTIONS: http2.ServerStreamResponseOptions = { waitForTrailers: true };

/** An Action with every field present: toBinary reads each field of a
 * literal and fails on a missing one, and a literal of fixed shape costs
 * a fraction of `create()`. */
function actionLiteral(
  id: bigint,
  status: ActionStatus,
  request: { actionType: string; project: string; targetRef: string; payload?: JsonObject; createdBy: string } | null,
  time: Timestamp | undefined,
): Action {
  return {
    $typeName: "actionq.v1.Action",
    id,
    actionType: request?.actionType ?? "",
    project: request?.project ?? "",
    targetRef: request?.targetRef ?? "",
    sourceRefs: [],
    payload: request?.payload,
    priority: 0,
    status,
    riskLevel: RiskLevel.UNSPECIFIED,
    confidence: undefined,
    approvalRequired: false,
    createdBy: request?.createdBy ?? "",
    correlationId: "",
    node: "",
    service: "",
    parentId: 0n,
    chainDepth: 0,
    claimedBy: "",
    claimDeadline: undefined,
    attempt: 0,
    resultRef: "",
    failureReason: "",
    rollbackRef: "",
    createTime: time,
    updateTime: time,
    finishTime: undefined,
    approvedBy: "",
    approveTime: undefined,
    idempotencyKey: "",
    claimTime: undefined,
    claimAcked: false,
    autonomousEligible: false,
    approvalsRequired: 0,
    approvers: [],
    approvalExpireTime: undefined,
    policyVersion: "",
    supersedesId: 0n,
    rollbackPayload: undefined,
    rollbackOfId: 0n,
    runAfter: undefined,
    maxAttempts: 0,
    failures: 0,
    lostDeliveries: 0,
    lastError: "",
    concurrencyKey: "",
    concurrencyLimit: 0,
    approvalRequirements: [],
    approvalsNeeded: "",
    breakGlassBy: "",
    breakGlassReason: "",
    breakGlassTime: undefined,
    scheduleId: "",
    scheduleTickTime: undefined,
    externalId: "",
  } satisfies Action;
}

function now(): Timestamp {
  const ms = Date.now();
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 } satisfies Timestamp;
}

/** A claim stream: how many claims it may still take, the claims handed
 * to it in this dispatch, and where to write them (one message each, or
 * in batches when the worker asked for `max_batch`). */
interface Session {
  free: number;
  /** Whether it is in `open`. */
  listed: boolean;
  handed: Action[];
  write: (claims: Action[]) => void;
}

/** The waiting actions, first in first out, without Array.shift's copying
 * on long queues. */
class Fifo {
  private items: Action[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(action: Action): void {
    this.items.push(action);
  }
  unshift(action: Action): void {
    if (this.head > 0) this.items[--this.head] = action;
    else this.items.unshift(action);
  }
  shift(): Action {
    const action = this.items[this.head++]!;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return action;
  }
}

const waiting = new Fifo();
/** The streams with room, in turn. */
const open: Session[] = [];
/** action id -> the session holding it, and the action. */
const holders = new Map<bigint, { session: Session; action: Action }>();
/** The sessions handed claims in the current dispatch. */
const touched: Session[] = [];
let nextId = 1n;
let cursor = 0;

function list(session: Session): void {
  if (session.listed || session.free <= 0) return;
  session.listed = true;
  open.push(session);
}

function unlist(index: number): void {
  open[index]!.listed = false;
  open.splice(index, 1);
  if (cursor > index) cursor--;
}

/** Hands waiting actions to streams with room, one each in turn. */
function dispatch(): void {
  while (waiting.length > 0 && open.length > 0) {
    if (cursor >= open.length) cursor = 0;
    const session = open[cursor]!;
    const action = waiting.shift();
    session.free--;
    holders.set(action.id, { session, action });
    if (session.handed.push(action) === 1) touched.push(session);
    if (session.free === 0) unlist(cursor);
    else cursor++;
  }
  for (const session of touched) {
    const handed = session.handed;
    session.handed = [];
    session.write(handed);
  }
  touched.length = 0;
}

function finish(id: bigint): Action {
  const held = holders.get(id);
  if (held) {
    holders.delete(id);
    held.session.free++;
    list(held.session);
  }
  return actionLiteral(id, ActionStatus.COMPLETED, null, undefined);
}

function frame<S extends DescMessage>(schema: S, message: MessageShape<S>): Buffer {
  const bytes = toBinary(schema, message);
  const out = Buffer.allocUnsafe(5 + bytes.length);
  out[0] = 0;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

function decode<S extends DescMessage>(schema: S, body: Buffer): MessageShape<S> {
  // One uncompressed message, as the bench's clients send.
  return fromBinary(schema, body.subarray(5));
}

function sendTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

function unary<S extends DescMessage>(stream: http2.ServerHttp2Stream, schema: S, message: MessageShape<S>): void {
  stream.respond(RESPONSE_HEADERS, UNARY_OPTIONS);
  stream.once("wantTrailers", sendTrailers);
  stream.end(frame(schema, message));
}

function enqueued(request: EnqueueActionRequest, time: Timestamp): EnqueueActionResponse {
  const action = actionLiteral(nextId++, ActionStatus.APPROVED, request, time);
  waiting.push(action);
  return { $typeName: "actionq.v1.EnqueueActionResponse", action, created: true } satisfies EnqueueActionResponse;
}

function claimOf(action: Action): Claim {
  return { $typeName: "actionq.v1.Claim", action, claimToken: `t${action.id}`, ackDeadline: undefined } satisfies Claim;
}

function openClaimStream(stream: http2.ServerHttp2Stream, body: Buffer): void {
  const { maxInFlight, maxBatch } = decode(StreamClaimsRequestSchema, body);
  stream.respond(RESPONSE_HEADERS);
  const session: Session = {
    free: maxInFlight > 0 ? maxInFlight : 1,
    listed: false,
    handed: [],
    write: (actions) => {
      if (maxBatch <= 0) {
        for (const action of actions)
          stream.write(
            frame(StreamClaimsResponseSchema, {
              $typeName: "actionq.v1.StreamClaimsResponse",
              kind: { case: "claim", value: claimOf(action) },
            } satisfies StreamClaimsResponse),
          );
        return;
      }
      for (let start = 0; start < actions.length; start += maxBatch) {
        const claims = (start === 0 && actions.length <= maxBatch ? actions : actions.slice(start, start + maxBatch)).map(claimOf);
        stream.write(
          frame(StreamClaimsResponseSchema, {
            $typeName: "actionq.v1.StreamClaimsResponse",
            kind: { case: "claims", value: { $typeName: "actionq.v1.ClaimBatch", claims } },
          } satisfies StreamClaimsResponse),
        );
      }
    },
  };
  list(session);
  stream.once("close", () => {
    const index = open.indexOf(session);
    if (index >= 0) unlist(index);
    session.free = 0;
    // What it held goes back to the queue, as actionq releases
    // unacknowledged claims of a closed stream.
    for (const [id, held] of holders) {
      if (held.session !== session) continue;
      holders.delete(id);
      waiting.unshift(held.action);
    }
    dispatch();
  });
  dispatch();
}

function handle(stream: http2.ServerHttp2Stream, method: string, body: Buffer): void {
  switch (method) {
    case "EnqueueAction": {
      unary(stream, EnqueueActionResponseSchema, enqueued(decode(EnqueueActionRequestSchema, body), now()));
      dispatch();
      return;
    }
    case "EnqueueActions": {
      const { requests } = decode(EnqueueActionsRequestSchema, body);
      const time = now();
      const results = requests.map((request) => ({
        $typeName: "actionq.v1.EnqueueActionResult" as const,
        result: { case: "ok" as const, value: enqueued(request, time) },
      }));
      unary(stream, EnqueueActionsResponseSchema, { $typeName: "actionq.v1.EnqueueActionsResponse", results } satisfies EnqueueActionsResponse);
      dispatch();
      return;
    }
    case "AckClaim": {
      const { id } = decode(AckClaimRequestSchema, body);
      unary(stream, AckClaimResponseSchema, {
        $typeName: "actionq.v1.AckClaimResponse",
        action: actionLiteral(id, ActionStatus.CLAIMED, null, undefined),
      } satisfies AckClaimResponse);
      return;
    }
    case "CompleteAction": {
      const { id } = decode(CompleteActionRequestSchema, body);
      unary(stream, CompleteActionResponseSchema, { $typeName: "actionq.v1.CompleteActionResponse", action: finish(id) } satisfies CompleteActionResponse);
      dispatch();
      return;
    }
    case "CompleteActions": {
      const { requests } = decode(CompleteActionsRequestSchema, body);
      const results = requests.map(
        (request) => ({ $typeName: "actionq.v1.CompleteActionResult", result: { case: "action", value: finish(request.id) } }) satisfies CompleteActionResult,
      );
      unary(stream, CompleteActionsResponseSchema, { $typeName: "actionq.v1.CompleteActionsResponse", results } satisfies CompleteActionsResponse);
      dispatch();
      return;
    }
    case "GetQueueStats":
      unary(stream, GetQueueStatsResponseSchema, EMPTY_STATS);
      return;
    case "StreamClaims":
      openClaimStream(stream, body);
      return;
    default:
      stream.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-status": "12", "grpc-message": `${method} is not served by the RPC floor` },
        { endStream: true },
      );
  }
}

const EMPTY_STATS = {
  $typeName: "actionq.v1.GetQueueStatsResponse",
  counts: [],
  claimable: 0n,
  oldestClaimableAge: undefined,
  pauses: [],
  policyVersion: "",
  heldKeys: [],
  changeWindows: undefined,
  webhooks: [],
} satisfies GetQueueStatsResponse;

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write("usage: rpc-floor-server.js <port>\n");
  process.exit(2);
}
const server = http2.createServer();
server.on("stream", (stream, headers) => {
  const path = headers[":path"] ?? "";
  const method = path.startsWith(SERVICE) ? path.slice(SERVICE.length) : "";
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  stream.on("end", () => {
    if (stream.destroyed) return;
    handle(stream, method, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
  });
  stream.on("error", () => {});
});
server.listen(port, "127.0.0.1", () => process.stdout.write(`rpc floor serving on 127.0.0.1:${port}\n`));
// Claim streams never end by themselves: do not wait for them.
process.on("SIGTERM", () => process.exit(0));
