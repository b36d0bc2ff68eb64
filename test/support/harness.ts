// The shared test harness: a real actionq server on a fresh schema of the
// run's PostgreSQL, on a free loopback port, with the two clients polyglot
// users have (@grpc/grpc-js from the .proto files, and the generated Connect
// client) and a direct database connection for checking what was written.
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import type { Logger } from "pino";
import { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { type Config, loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/log.js";
import { ActionqServer } from "../../src/server.js";
import { databaseUrl, freshSchema, inspectionConfig, serverDatabaseUrl } from "./database.js";

export const protoDir = path.resolve(import.meta.dirname, "..", "..", "proto");

/** Environment-style overrides for the server under test. */
export type ServerEnv = Record<string, string>;

export interface TestServer {
  server: ActionqServer;
  address: string;
  schema: string;
  databaseUrl: string;
  /** The generated Connect client, over gRPC. */
  client: Client<typeof ActionQueueService>;
  /** @grpc/grpc-js, the reference gRPC client. */
  grpc: GrpcClient;
  /** A pool on the same schema, for checking the database directly. */
  db: pg.Pool;
  close(): Promise<void>;
}

/** Settings for a test server: quick timers, quiet logs, a free port. */
export function testConfig(schema: string, env: ServerEnv = {}): Config {
  const pooled = serverDatabaseUrl() !== databaseUrl();
  return loadConfig({
    ACTIONQ_URL: serverDatabaseUrl(),
    // Through PgBouncer: no session state, and LISTEN on a direct connection.
    ...(pooled ? { ACTIONQ_DATABASE_POOLER: "transaction", ACTIONQ_LISTEN_URL: databaseUrl() } : {}),
    ACTIONQ_SCHEMA: schema,
    ACTIONQ_LISTEN: "127.0.0.1:0",
    ACTIONQ_LOG_LEVEL: process.env.ACTIONQ_TEST_LOG_LEVEL ?? "silent",
    ACTIONQ_SHUTDOWN_GRACE_SECONDS: "2",
    ...env,
  });
}

/** `log`: a logger of the test's own, to read what the server says. */
export async function startTestServer(env: ServerEnv = {}, schema = freshSchema(), log?: Logger): Promise<TestServer> {
  const config = testConfig(schema, env);
  const server = await ActionqServer.start(config, log ?? createLogger(config.logLevel));
  const address = `127.0.0.1:${server.port}`;
  const client = createClient(ActionQueueService, createGrpcTransport({ baseUrl: `http://${address}` }));
  const grpcClient = new GrpcClient(address);
  const db = new pg.Pool({ ...inspectionConfig(databaseUrl(), schema), max: 4 });
  db.on("error", () => {});
  let closed = false;
  return {
    server,
    address,
    schema,
    databaseUrl: databaseUrl(),
    client,
    grpc: grpcClient,
    db,
    async close() {
      if (closed) return;
      closed = true;
      grpcClient.close();
      await server.close();
      await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await db.end();
    },
  };
}

const packageDefinition = protoLoader.loadSync("actionq/v1/action_queue_service.proto", {
  includeDirs: [protoDir],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as {
  actionq: { v1: { ActionQueueService: grpc.ServiceClientConstructor } };
};

/** A grpc-js client with promise-returning unary calls. Messages are plain
 * objects with the proto field names in lowerCamelCase, int64 as strings and
 * enums as their names, as grpc-js users see them. */
export class GrpcClient {
  readonly raw: grpc.Client & Record<string, (...args: unknown[]) => unknown>;

  constructor(address: string, credentials = grpc.credentials.createInsecure()) {
    this.raw = new loaded.actionq.v1.ActionQueueService(address, credentials) as GrpcClient["raw"];
  }

  /** Calls a unary method, e.g. unary("EnqueueAction", {...}). */
  unary<T = Record<string, unknown>>(method: string, request: Record<string, unknown>, metadata = new grpc.Metadata()): Promise<T> {
    const fn = this.raw[method];
    if (!fn) throw new Error(`no method ${method}`);
    return new Promise((resolve, reject) => {
      fn.call(this.raw, request, metadata, { deadline: Date.now() + 20_000 }, (error: grpc.ServiceError | null, response: T) => {
        if (error) reject(error);
        else resolve(response);
      });
    });
  }

  /** Opens a server stream, e.g. stream("StreamClaims", {...}). */
  stream(method: string, request: Record<string, unknown>, metadata = new grpc.Metadata()): grpc.ClientReadableStream<Record<string, unknown>> {
    const fn = this.raw[method];
    if (!fn) throw new Error(`no method ${method}`);
    return fn.call(this.raw, request, metadata) as grpc.ClientReadableStream<Record<string, unknown>>;
  }

  close(): void {
    this.raw.close();
  }
}

/** The status a grpc-js call failed with, or throws if it succeeded. */
export async function grpcError(call: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await call;
  } catch (error) {
    return error as grpc.ServiceError;
  }
  throw new Error("the call succeeded; an error was expected");
}

/** A fingerprint of everything the server stores, to prove that a refused
 * call changed nothing. */
export async function snapshot(db: pg.Pool): Promise<string> {
  const actions = await db.query("SELECT md5(coalesce(string_agg(a::text, '|' ORDER BY id), '')) AS h, count(*) AS n FROM actions a");
  const events = await db.query("SELECT md5(coalesce(string_agg(e::text, '|' ORDER BY id), '')) AS h, count(*) AS n FROM events e");
  const sequence = await db.query("SELECT last_value FROM actions_id_seq");
  return JSON.stringify([actions.rows[0], events.rows[0], sequence.rows[0]]);
}

/** Stops `first`'s server and starts another on the same address and
 * schema, as an operator's restart would, `downForMs` later. The new one's
 * close() also ends `first`'s inspection pool, and drops the schema. */
export async function restartServer(first: TestServer, env: ServerEnv = {}, downForMs = 0): Promise<TestServer> {
  await first.server.close();
  first.grpc.close();
  if (downForMs > 0) await new Promise((resolve) => setTimeout(resolve, downForMs));
  const second = await startTestServer({ ...env, ACTIONQ_LISTEN: first.address }, first.schema);
  return {
    ...second,
    async close() {
      await first.db.end();
      await second.close();
    },
  };
}

/** Closes a test server, failing (instead of hanging the run) if its
 * shutdown does not finish in time. */
export async function closeWithin(t: TestServer | undefined, timeoutMs = 15_000): Promise<void> {
  if (!t) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the server did not shut down within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([t.close(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
