// The RPC floor: a server that speaks actionq's gRPC contract for the calls
// the bench's load makes (EnqueueAction(s), StreamClaims, AckClaim,
// CompleteAction(s), GetQueueStats) and keeps its queue in memory, with no
// database, no validation, no policy and no event log. It runs on bare
// `node:http2` and the generated protobuf-es messages, the cheapest way
// Node serves gRPC, so what the bench's clients achieve against it is the
// most any server with a network hop could give them on this machine.
// It is a yardstick for the bench, not a queue: it keeps nothing.
//
//   node dist/bench/lib/rpc-floor-server.js <port>
import http2 from "node:http2";
import { type DescMessage, type MessageShape, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Action, ActionSchema, ActionStatus, ClaimSchema } from "../../gen/actionq/v1/action_pb.js";
import {
  AckClaimRequestSchema,
  AckClaimResponseSchema,
  CompleteActionRequestSchema,
  CompleteActionResponseSchema,
  CompleteActionsRequestSchema,
  CompleteActionsResponseSchema,
  EnqueueActionRequestSchema,
  EnqueueActionResponseSchema,
  EnqueueActionsRequestSchema,
  EnqueueActionsResponseSchema,
  GetQueueStatsResponseSchema,
  type EnqueueActionRequest,
  StreamClaimsRequestSchema,
  StreamClaimsResponseSchema,
} from "../../gen/actionq/v1/action_queue_service_pb.js";

const SERVICE = "/actionq.v1.ActionQueueService/";

/** A claim stream: how many claims it may still take, the claims handed
 * to it in this dispatch, and where to write them (one message each, or
 * in batches when the worker asked for `max_batch`). */
interface Session {
  free: number;
  handed: Action[];
  write: (claims: Action[]) => void;
}

const waiting: Action[] = [];
const sessions: Session[] = [];
/** action id -> the session holding it, and the action. */
const holders = new Map<bigint, { session: Session; action: Action }>();
let nextId = 1n;
let rotation = 0;

function actionOf(req: EnqueueActionRequest): Action {
  const now = timestampFromMs(Date.now());
  return create(ActionSchema, {
    id: nextId++,
    actionType: req.actionType,
    project: req.project,
    targetRef: req.targetRef,
    payload: req.payload,
    createdBy: req.createdBy,
    status: ActionStatus.APPROVED,
    createTime: now,
    updateTime: now,
  });
}

/** Hands waiting actions to streams with room, round robin. */
function dispatch(): void {
  const touched = new Set<Session>();
  while (waiting.length > 0) {
    const open = sessions.filter((s) => s.free > 0);
    if (open.length === 0) break;
    const session = open[rotation++ % open.length]!;
    const action = waiting.shift()!;
    session.free--;
    holders.set(action.id, { session, action });
    session.handed.push(action);
    touched.add(session);
  }
  for (const session of touched) session.write(session.handed.splice(0));
}

function finish(id: bigint): Action {
  const held = holders.get(id);
  if (held) {
    holders.delete(id);
    held.session.free++;
  }
  return create(ActionSchema, { id, status: ActionStatus.COMPLETED });
}

function frame(schema: DescMessage, message: unknown): Buffer {
  const bytes = toBinary(schema, message as never);
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

function unary(stream: http2.ServerHttp2Stream, schema: DescMessage, message: unknown): void {
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  stream.end(frame(schema, message));
}

function handle(stream: http2.ServerHttp2Stream, method: string, body: Buffer): void {
  switch (method) {
    case "EnqueueAction": {
      const action = actionOf(decode(EnqueueActionRequestSchema, body));
      waiting.push(action);
      unary(stream, EnqueueActionResponseSchema, create(EnqueueActionResponseSchema, { action, created: true }));
      dispatch();
      return;
    }
    case "EnqueueActions": {
      const { requests } = decode(EnqueueActionsRequestSchema, body);
      const results = requests.map((req) => {
        const action = actionOf(req);
        waiting.push(action);
        return { result: { case: "ok" as const, value: create(EnqueueActionResponseSchema, { action, created: true }) } };
      });
      unary(stream, EnqueueActionsResponseSchema, create(EnqueueActionsResponseSchema, { results }));
      dispatch();
      return;
    }
    case "AckClaim": {
      const { id } = decode(AckClaimRequestSchema, body);
      unary(stream, AckClaimResponseSchema, create(AckClaimResponseSchema, { action: create(ActionSchema, { id, status: ActionStatus.CLAIMED }) }));
      return;
    }
    case "CompleteAction": {
      const { id } = decode(CompleteActionRequestSchema, body);
      unary(stream, CompleteActionResponseSchema, create(CompleteActionResponseSchema, { action: finish(id) }));
      dispatch();
      return;
    }
    case "CompleteActions": {
      const { requests } = decode(CompleteActionsRequestSchema, body);
      const results = requests.map((req) => ({ result: { case: "action" as const, value: finish(req.id) } }));
      unary(stream, CompleteActionsResponseSchema, create(CompleteActionsResponseSchema, { results }));
      dispatch();
      return;
    }
    case "GetQueueStats":
      unary(stream, GetQueueStatsResponseSchema, create(GetQueueStatsResponseSchema, {}));
      return;
    case "StreamClaims": {
      const req = decode(StreamClaimsRequestSchema, body);
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      const claimOf = (action: Action) => create(ClaimSchema, { action, claimToken: `t${action.id}` });
      const session: Session = {
        free: req.maxInFlight > 0 ? req.maxInFlight : 1,
        handed: [],
        write: (actions) => {
          if (req.maxBatch <= 0) {
            for (const action of actions)
              stream.write(frame(StreamClaimsResponseSchema, create(StreamClaimsResponseSchema, { kind: { case: "claim", value: claimOf(action) } })));
            return;
          }
          for (let start = 0; start < actions.length; start += req.maxBatch) {
            const claims = actions.slice(start, start + req.maxBatch).map(claimOf);
            stream.write(frame(StreamClaimsResponseSchema, create(StreamClaimsResponseSchema, { kind: { case: "claims", value: { claims } } })));
          }
        },
      };
      sessions.push(session);
      stream.once("close", () => {
        sessions.splice(sessions.indexOf(session), 1);
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
      return;
    }
    default:
      stream.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-status": "12", "grpc-message": `${method} is not served by the RPC floor` },
        { endStream: true },
      );
  }
}

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write("usage: rpc-floor-server.js <port>\n");
  process.exit(2);
}
const server = http2.createServer();
server.on("stream", (stream, headers) => {
  const path = String(headers[":path"] ?? "");
  const method = path.startsWith(SERVICE) ? path.slice(SERVICE.length) : "";
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  stream.on("end", () => {
    if (stream.destroyed) return;
    handle(stream, method, Buffer.concat(chunks));
  });
  stream.on("error", () => {});
});
server.listen(port, "127.0.0.1", () => process.stdout.write(`rpc floor serving on 127.0.0.1:${port}\n`));
// Claim streams never end by themselves: do not wait for them.
process.on("SIGTERM", () => process.exit(0));
