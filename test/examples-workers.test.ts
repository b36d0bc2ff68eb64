// The worker examples run as their READMEs say, against a real server: the
// TypeScript one compiled by `npm run build` (node dist/examples/worker.js)
// and the Python one on Debian's grpcio. Each completes an action it claims
// in cleartext without authentication and over TLS with a bearer token,
// taking both from actionctl's environment variables. A refused credential
// stops each at once with one line and exit status 3; a server that is not
// there yet is waited for.
//
// The Python half is skipped, with the reason, when python3-grpcio and the
// stub generators are missing (see test/python-worker.test.ts).
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import type { Client } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Action, ActionStatus } from "../gen/actionq/v1/action_pb.js";
import type { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";
import { type Principal, principal } from "./support/auth.js";
import {
  ExampleProcess,
  type SecureServer,
  generatePythonStubs,
  killExamples,
  pythonExample,
  pythonSkipReason,
  startSecureServer,
} from "./support/examples.js";
import { type TestServer, startTestServer } from "./support/harness.js";
import { freePort, packageRoot } from "./support/processes.js";
import { eventually } from "./support/wait.js";

const TS_WORKER = path.join(packageRoot, "dist", "examples", "worker.js");
const EXIT_REFUSED = 3;

const workerPrincipal: Principal = principal("svc:example-worker", ["worker"]);
const viewerPrincipal: Principal = principal("svc:example-viewer", ["viewer"]);
/** A human producer: agents and scripts are rate limited. */
const producer: Principal = principal("human:example-producer", ["producer", "viewer"]);

const pythonSkip = pythonSkipReason();
if (pythonSkip) console.warn(`test/examples-workers.test.ts: skipping the Python worker example: ${pythonSkip}`);

let plain: TestServer;
let secure: SecureServer;
let genDir: string | undefined;
const extraServers: TestServer[] = [];

beforeAll(async () => {
  if (!existsSync(TS_WORKER)) throw new Error(`${TS_WORKER} is missing: run npm run build`);
  plain = await startTestServer();
  secure = await startSecureServer([workerPrincipal, viewerPrincipal, producer]);
  if (!pythonSkip) genDir = await generatePythonStubs();
});

afterEach(killExamples);

afterAll(async () => {
  await plain?.close();
  await secure?.close();
  for (const server of extraServers) await server.close();
  if (genDir) await rm(genDir, { recursive: true, force: true });
});

type Api = Client<typeof ActionQueueService>;

/** One worker example, started with an environment. */
interface Example {
  name: string;
  skip: string | undefined;
  /** What it logs each time it fails to reach the server, if it does. */
  reconnectLog?: RegExp;
  start(env: Record<string, string>, actionType: string): ExampleProcess;
}

const examples: Example[] = [
  {
    name: "the TypeScript worker (node dist/examples/worker.js)",
    skip: undefined,
    reconnectLog: /^stream ended: .*ECONNREFUSED.*; reconnecting in \d+ ms$/gm,
    start: (env) => new ExampleProcess(process.execPath, [TS_WORKER], { env }),
  },
  {
    name: "the Python worker (examples/python-worker/worker.py)",
    skip: pythonSkip,
    start: (env, actionType) => pythonExample("worker.py", ["--type", actionType, "--lease", "10"], genDir!, env),
  },
];

const uniqueType = (prefix: string) => `${prefix}_${Math.random().toString(16).slice(2, 10)}`;

/** Waits until the action is COMPLETED, failing early if the worker dies. */
async function completedBy(run: ExampleProcess, client: Api, action: Action): Promise<Action> {
  try {
    const done = await eventually(
      async () => {
        if (!run.alive) throw new Error(`the worker exited (${run.child.exitCode ?? run.child.signalCode}) first`);
        const current = (await client.getAction({ id: action.id })).action!;
        return current.status === ActionStatus.COMPLETED ? current : undefined;
      },
      `action ${action.id} to be COMPLETED`,
      30_000,
      100,
    );
    return done!;
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${run.output()}`);
  }
}

for (const example of examples) {
  describe.skipIf(example.skip !== undefined)(example.skip ? `${example.name} (skipped: ${example.skip})` : example.name, () => {
    it("completes an action it claims from a cleartext server without authentication, under its own name", async () => {
      const actionType = uniqueType("plain");
      const run = example.start({ ACTIONQ_ADDR: plain.address }, actionType);
      const action = (await plain.client.enqueueAction({ actionType, createdBy: "human:alice" })).action!;
      const done = await completedBy(run, plain.client, action);
      expect(done.claimedBy).toMatch(/^(worker:example|python:.+)-\d+$/);
      expect(await run.stop(), run.output()).toEqual({ code: 0, signal: null });
    });

    it("completes an action it claims over TLS with a bearer token, named by the server after its principal", async () => {
      const actionType = uniqueType("tls");
      const run = example.start(secure.clientEnv(workerPrincipal), actionType);
      const client = secure.client(producer);
      const action = (await client.enqueueAction({ actionType })).action!;
      expect(action.createdBy).toBe(producer.name);
      const done = await completedBy(run, client, action);
      expect(done.claimedBy).toBe(workerPrincipal.name);
      const { events } = await client.getAction({ id: action.id });
      expect(events.filter((e) => e.eventType === "action_completed").map((e) => e.actor)).toEqual([workerPrincipal.name]);
      expect(await run.stop(), run.output()).toEqual({ code: 0, signal: null });
    });

    it("stops at once with exit status 3 and one line naming ACTIONQ_TOKEN when the token is unknown", async () => {
      const run = example.start(secure.clientEnv({ tokens: ["not-a-known-token"] }), uniqueType("bad"));
      expect(await run.exitWithin(15_000), run.output()).toEqual({ code: EXIT_REFUSED, signal: null });
      expect(run.lastErrorLine()).toMatch(
        /^worker(\.py)?: https:\/\/127\.0\.0\.1:\d+ refused the worker: UNAUTHENTICATED UNAUTHENTICATED: the bearer token is not known .*; set ACTIONQ_TOKEN \(or a client certificate\) to a credential the server's auth file lists$/,
      );
      expect(run.stderr).not.toMatch(/reconnect/i);
    });

    it("stops at once with exit status 3 on PERMISSION_DENIED when the principal lacks the worker role", async () => {
      const run = example.start(secure.clientEnv(viewerPrincipal), uniqueType("viewer"));
      expect(await run.exitWithin(15_000), run.output()).toEqual({ code: EXIT_REFUSED, signal: null });
      expect(run.lastErrorLine()).toMatch(
        /refused the worker: PERMISSION_DENIED ROLE_REQUIRED: svc:example-viewer may not call StreamClaims.*; the principal lacks a role/,
      );
      expect(run.stderr).not.toMatch(/reconnect/i);
    });

    it("says, naming ACTIONQ_TLS_CA, that it cannot reach a TLS server whose certificate it does not trust, and keeps trying", async () => {
      const env = secure.clientEnv(workerPrincipal);
      delete env.ACTIONQ_TLS_CA;
      const run = example.start(env, uniqueType("untrusted"));
      await eventually(() => !run.alive || /ACTIONQ_TLS_CA/.test(run.stderr), "a line naming ACTIONQ_TLS_CA", 20_000, 50);
      expect(run.alive, run.output()).toBe(true);
      expect(run.stderr).toMatch(/ACTIONQ_TLS_CA/);
    });

    it("keeps waiting while nothing listens (UNAVAILABLE), then completes an action once a server comes up", async () => {
      const port = await freePort();
      const actionType = uniqueType("late");
      const run = example.start({ ACTIONQ_ADDR: `127.0.0.1:${port}` }, actionType);
      // Python's wait_for_ready waits quietly; the TypeScript worker says so
      // each time, with a growing delay. Either way it must still be there
      // after two seconds of nothing.
      if (example.reconnectLog) {
        const reconnects = () => run.stderr.match(example.reconnectLog!)?.length ?? 0;
        await eventually(() => !run.alive || reconnects() >= 2, "two reconnection attempts", 20_000, 50);
      }
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(run.alive, run.output()).toBe(true);
      const late = await startTestServer({ ACTIONQ_LISTEN: `127.0.0.1:${port}` });
      extraServers.push(late);
      const action = (await late.client.enqueueAction({ actionType, createdBy: "human:alice" })).action!;
      await completedBy(run, late.client, action);
      expect(await run.stop(), run.output()).toEqual({ code: 0, signal: null });
    });
  });
}
