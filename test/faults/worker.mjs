// A small actionq worker for the fault suite, written as plain JavaScript
// so that it runs as its own process (to be killed with -9) as well as
// inside the test process. It speaks @grpc/grpc-js from the .proto files,
// holds a StreamClaims stream (reconnecting, across replicas, when it ends
// or goes quiet), acknowledges each claim before doing anything, "executes"
// it, and completes it, retrying every call with the same token until the
// server gives a definite answer. Each step is recorded, so that the test
// can count what ran, and how often.
//
// As a process: node test/faults/worker.mjs '<options as JSON>'; records are
// JSON lines on stdout.
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoDir = path.resolve(here, "..", "..", "proto");

const definition = protoLoader.loadSync("actionq/v1/action_queue_service.proto", {
  includeDirs: [protoDir],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { ActionQueueService } = grpc.loadPackageDefinition(definition).actionq.v1;

/** Codes after which a call with the same token can never succeed. */
const DEFINITE = new Set([
  grpc.status.FAILED_PRECONDITION,
  grpc.status.NOT_FOUND,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.PERMISSION_DENIED,
  grpc.status.ALREADY_EXISTS,
]);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A client with keepalive, so that a connection that went silent is noticed. */
export function createClient(address, keepaliveMs = 1000) {
  return new ActionQueueService(address, grpc.credentials.createInsecure(), {
    "grpc.keepalive_time_ms": keepaliveMs,
    "grpc.keepalive_timeout_ms": keepaliveMs,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
  });
}

export function unary(client, method, request, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    client[method](request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

function structValue(struct, key) {
  const value = struct?.fields?.[key];
  if (!value) return undefined;
  return value[value.kind];
}

export class Worker {
  /**
   * @param {object} options
   * @param {string} options.name worker name (claimed_by)
   * @param {string[]} options.addresses servers (or proxies) to use, in turn
   * @param {string[]} [options.actionTypes]
   * @param {number} [options.maxInFlight]
   * @param {number} [options.leaseSeconds]
   * @param {number} [options.workMs] how long an execution takes
   * @param {number} [options.silenceMs] reconnect when the stream was quiet this long
   * @param {number} [options.keepaliveMs] client keepalive
   * @param {number} [options.ackLimit] acknowledge only this many claims; later ones are held, never acknowledged
   * @param {boolean} [options.hang] never finish an execution (to be killed mid-action)
   * @param {(record: object) => void} options.record
   */
  constructor(options) {
    this.options = { actionTypes: [], maxInFlight: 4, leaseSeconds: 30, workMs: 20, silenceMs: 3000, keepaliveMs: 1000, hang: false, ...options };
    // JSON has no Infinity: a missing or null limit means none.
    this.options.ackLimit = options.ackLimit ?? Number.POSITIVE_INFINITY;
    this.clients = this.options.addresses.map((address) => createClient(address, this.options.keepaliveMs));
    this.next = 0;
    this.stopping = false;
    this.handlers = new Set();
    this.call = undefined;
    this.acks = 0;
    this.stats = { streams: 0, claims: 0, executed: 0, completed: 0, refused: 0, ackRefused: 0, failedOnPurpose: 0, drains: {}, retriedCalls: 0 };
  }

  record(ev, fields = {}) {
    this.options.record({ ev, worker: this.options.name, pid: process.pid, t: Date.now(), ...fields });
  }

  start() {
    this.loop = this.streamLoop();
    return this;
  }

  async streamLoop() {
    let failures = 0;
    while (!this.stopping) {
      const index = this.next++ % this.clients.length;
      const outcome = await this.oneStream(this.clients[index]);
      if (this.stopping) break;
      failures = outcome.delivered ? 0 : failures + 1;
      await sleep(outcome.drained ? 20 : Math.min(1000, 50 * 2 ** Math.min(failures, 5)));
    }
  }

  /** One StreamClaims call, until it ends, fails, or goes quiet. */
  oneStream(client) {
    return new Promise((resolve) => {
      const outcome = { delivered: false, drained: false };
      const call = client.StreamClaims({
        worker: this.options.name,
        actionTypes: this.options.actionTypes,
        maxInFlight: this.options.maxInFlight,
        leaseDuration: { seconds: this.options.leaseSeconds, nanos: 0 },
      });
      this.call = call;
      this.stats.streams++;
      let lastMessage = Date.now();
      const watchdog = setInterval(() => {
        if (Date.now() - lastMessage > this.options.silenceMs) {
          clearInterval(watchdog);
          this.record("stream_silent");
          call.cancel();
        }
      }, 250);
      let settled = false;
      const done = () => {
        if (settled) return;
        settled = true;
        clearInterval(watchdog);
        if (this.call === call) this.call = undefined;
        resolve(outcome);
      };
      call.on("data", (message) => {
        lastMessage = Date.now();
        outcome.delivered = true;
        if (message.kind === "claim") this.spawn(this.handle(client, message.claim));
        else if (message.kind === "drain") {
          outcome.drained = true;
          const cause = message.drain.cause;
          this.stats.drains[cause] = (this.stats.drains[cause] ?? 0) + 1;
          this.record("drain", { cause });
        }
      });
      call.on("error", () => {});
      call.on("status", done);
      call.on("close", done);
    });
  }

  spawn(promise) {
    this.handlers.add(promise);
    promise.finally(() => this.handlers.delete(promise));
  }

  /** Retries a call with the same request until it succeeds or fails for
   * good; returns [response] or [undefined, error]. */
  async persist(client, method, request, giveUpMs = 90_000) {
    const deadline = Date.now() + giveUpMs;
    let attempt = 0;
    for (;;) {
      // After a failure, another replica may answer where this one cannot.
      const target = attempt === 0 ? client : this.clients[(this.clients.indexOf(client) + attempt) % this.clients.length];
      try {
        return [await unary(target, method, request)];
      } catch (error) {
        if (DEFINITE.has(error.code)) return [undefined, error];
        if (Date.now() > deadline) return [undefined, error];
        attempt++;
        this.stats.retriedCalls++;
        await sleep(Math.min(1000, 50 * attempt));
      }
    }
  }

  async handle(client, claim) {
    const { action, claimToken: token } = claim;
    const id = action.id;
    this.stats.claims++;
    this.record("claim", { id, attempt: action.attempt, token });
    if (this.acks >= this.options.ackLimit) {
      this.record("held_unacked", { id, attempt: action.attempt, token });
      return;
    }
    this.acks++;
    const [acked, ackError] = await this.persist(client, "AckClaim", { id, claimToken: token });
    if (!acked) {
      this.stats.ackRefused++;
      this.record("ack_refused", { id, attempt: action.attempt, token, code: ackError.code });
      return;
    }
    this.record("start", { id, attempt: action.attempt, token });
    this.stats.executed++;
    if (this.options.hang) return new Promise(() => {});
    await sleep(this.options.workMs);
    // The execution itself ends here; reporting it may take a while longer.
    const worked = Date.now();

    // Actions marked flaky fail once, asking for a retry.
    if (structValue(action.payload, "flaky") === true && action.failures === 0) {
      const [failed, failError] = await this.persist(client, "FailAction", {
        id,
        claimToken: token,
        reason: "flaky on purpose",
        retryable: true,
        retryDelay: { seconds: 0, nanos: 200_000_000 },
      });
      this.stats.failedOnPurpose++;
      this.record(failed ? "failed" : "refused", { id, attempt: action.attempt, token, worked, code: failError?.code });
      if (!failed) this.stats.refused++;
      return;
    }
    const [completed, completeError] = await this.persist(client, "CompleteAction", {
      id,
      claimToken: token,
      resultRef: `${this.options.name}/${id}/${action.attempt}`,
    });
    if (completed) {
      this.stats.completed++;
      this.record("done", { id, attempt: action.attempt, token, worked });
    } else {
      this.stats.refused++;
      this.record("refused", { id, attempt: action.attempt, token, worked, code: completeError.code, details: completeError.details });
    }
  }

  /** Stops taking work; waits (bounded) for executions in progress. */
  async stop(timeoutMs = 30_000) {
    this.stopping = true;
    this.call?.cancel();
    await Promise.race([Promise.allSettled([...this.handlers]), sleep(timeoutMs)]);
    await Promise.race([this.loop, sleep(2000)]);
    for (const client of this.clients) client.close();
  }
}

// Run as a process: options as JSON in argv[2], records on stdout.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const options = JSON.parse(process.argv[2] ?? "{}");
  const worker = new Worker({ ...options, record: (record) => process.stdout.write(`${JSON.stringify(record)}\n`) }).start();
  process.on("SIGTERM", () => {
    void worker.stop(10_000).then(() => process.exit(0));
  });
}
