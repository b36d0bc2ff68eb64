// A minimal long-lived actionq worker with the generated Connect client:
// hold a StreamClaims stream, acknowledge each claim, keep its lease alive
// while working, report the outcome, and reconnect when the stream ends.
//
//   ACTIONQ_ADDR=127.0.0.1:50051 npx tsx examples/worker.ts
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Claim } from "../gen/actionq/v1/action_pb.js";
import { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";

const address = process.env.ACTIONQ_ADDR ?? "127.0.0.1:50051";
const worker = process.env.WORKER_NAME ?? `worker:example-${process.pid}`;
const client = createClient(ActionQueueService, createGrpcTransport({ baseUrl: `http://${address}` }));
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

/** The work itself. Replace with real handlers per action type. */
async function perform(claim: Claim): Promise<string> {
  const action = claim.action!;
  console.log(`doing ${action.actionType} #${action.id} for ${action.createdBy}`, action.payload);
  await sleep(100);
  return `example://${action.actionType}/${action.id}`;
}

/** The server was unreachable, or refused the call unprocessed while going
 * away (connect-node reports that HTTP/2 REFUSED_STREAM as INTERNAL). */
function retriable(error: unknown): boolean {
  const { code, message } = ConnectError.from(error);
  return code === Code.Unavailable || message.includes("REFUSED_STREAM");
}

/** Retries a call while the server restarts: the token outlives the stream,
 * and repeating a call with it is safe. */
async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!retriable(error) || attempt === 30) throw error;
      await sleep(2000);
    }
  }
}

async function handle(claim: Claim): Promise<void> {
  const id = claim.action!.id;
  const token = claim.claimToken;
  // Extend the lease every 20 s while the work runs.
  const heartbeat = setInterval(() => {
    client.extendClaim({ id, claimToken: token, leaseDuration: { seconds: 60n } }).catch(() => {});
  }, 20_000);
  try {
    await retrying(() => client.ackClaim({ id, claimToken: token }));
    let resultRef: string;
    try {
      resultRef = await perform(claim);
    } catch (error) {
      await retrying(() => client.failAction({ id, claimToken: token, reason: String(error) }));
      return;
    }
    await retrying(() => client.completeAction({ id, claimToken: token, resultRef }));
  } catch (error) {
    // FAILED_PRECONDITION: the claim is gone (lease lost, action cancelled).
    // Otherwise the lease runs out and the action is claimed again.
    console.warn(`gave up action #${id}: ${ConnectError.from(error).message}`);
  } finally {
    clearInterval(heartbeat);
  }
}

while (!stop.signal.aborted) {
  try {
    const stream = client.streamClaims({ worker, maxInFlight: 4, leaseDuration: { seconds: 60n } }, { signal: stop.signal });
    for await (const message of stream) {
      if (message.kind.case === "claim") void handle(message.kind.value);
      if (message.kind.case === "drain") console.log(`server draining: ${message.kind.value.reason}`);
    }
  } catch (error) {
    if (stop.signal.aborted) break;
    console.warn(`stream ended: ${ConnectError.from(error).message}; reconnecting`);
  }
  await sleep(1000).catch(() => {});
}
