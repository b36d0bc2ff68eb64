// grpc.health.v1.Health through @grpc/grpc-js, as grpc_health_probe and
// load balancers use it: Check for the server and for each service, and
// Watch following the status until the server goes away.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, grpcError, protoDir, startTestServer } from "./support/harness.js";
import { eventually } from "./support/wait.js";

const healthDefinition = protoLoader.loadSync("grpc/health/v1/health.proto", {
  includeDirs: [protoDir],
  enums: String,
  defaults: true,
});
const HealthClient = (grpc.loadPackageDefinition(healthDefinition) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } }).grpc
  .health.v1.Health;

type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";
interface HealthCheckResponse {
  status: ServingStatus;
}

class Health {
  private readonly client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;

  constructor(address: string) {
    this.client = new HealthClient(address, grpc.credentials.createInsecure()) as Health["client"];
  }

  check(service: string): Promise<HealthCheckResponse> {
    return new Promise((resolve, reject) => {
      this.client.check!({ service }, { deadline: Date.now() + 10_000 }, (error: grpc.ServiceError | null, response: HealthCheckResponse) => {
        if (error) reject(error);
        else resolve(response);
      });
    });
  }

  /** Opens Watch and records everything it delivers. */
  watch(service: string): WatchRecorder {
    return new WatchRecorder(this.client.watch!({ service }) as grpc.ClientReadableStream<HealthCheckResponse>);
  }

  close(): void {
    this.client.close();
  }
}

class WatchRecorder {
  readonly statuses: ServingStatus[] = [];
  ended: grpc.StatusObject | undefined;
  error: grpc.ServiceError | undefined;

  constructor(readonly call: grpc.ClientReadableStream<HealthCheckResponse>) {
    call.on("data", (response: HealthCheckResponse) => this.statuses.push(response.status));
    call.on("error", (error: grpc.ServiceError) => {
      this.error = error;
    });
    call.on("status", (status: grpc.StatusObject) => {
      this.ended = status;
    });
  }
}

describe("grpc.health.v1.Health", () => {
  let t: TestServer;
  let health: Health;

  beforeAll(async () => {
    t = await startTestServer();
    health = new Health(t.address);
  });
  afterAll(async () => {
    health?.close();
    await t?.close();
  });

  it('Check answers SERVING for the whole server ("")', async () => {
    expect(await health.check("")).toEqual({ status: "SERVING" });
  });

  it("Check answers SERVING for actionq.v1.ActionQueueService", async () => {
    expect(await health.check("actionq.v1.ActionQueueService")).toEqual({ status: "SERVING" });
  });

  it("Check answers NOT_FOUND for a service the server does not have", async () => {
    const error = await grpcError(health.check("actionq.v1.NoSuchService"));
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(error.details).toContain("actionq.v1.NoSuchService");
  });

  it("Watch of an unknown service answers SERVICE_UNKNOWN and stays open", async () => {
    const watch = health.watch("actionq.v1.NoSuchService");
    try {
      await eventually(() => watch.statuses.length > 0, "the first Watch message");
      expect(watch.statuses).toEqual(["SERVICE_UNKNOWN"]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(watch.ended).toBeUndefined();
    } finally {
      watch.call.cancel();
    }
  });

  it("Watch of a known service sends SERVING at once and nothing more while nothing changes", async () => {
    const watch = health.watch("actionq.v1.ActionQueueService");
    try {
      await eventually(() => watch.statuses.length > 0, "the first Watch message");
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(watch.statuses).toEqual(["SERVING"]);
      expect(watch.ended).toBeUndefined();
    } finally {
      watch.call.cancel();
    }
    await eventually(() => watch.ended, "the cancelled Watch to end");
    expect(watch.ended?.code).toBe(grpc.status.CANCELLED);
    // The server is still fine after a watcher went away.
    expect(await health.check("")).toEqual({ status: "SERVING" });
  });

  /** A server of its own with two watchers on it, one for the whole
   * server and one for the service; closes the server and returns them. */
  async function watchThroughShutdown(): Promise<{ watches: WatchRecorder[]; closeMs: number }> {
    const dedicated = await startTestServer();
    const dedicatedHealth = new Health(dedicated.address);
    try {
      const watches = [dedicatedHealth.watch(""), dedicatedHealth.watch("actionq.v1.ActionQueueService")];
      await eventually(() => watches.every((w) => w.statuses.length > 0), "the first Watch messages");
      for (const watch of watches) expect(watch.statuses).toEqual(["SERVING"]);
      const started = performance.now();
      await dedicated.server.close();
      const closeMs = performance.now() - started;
      await eventually(() => watches.every((w) => w.ended), "every Watch stream to end", 5_000);
      return { watches, closeMs };
    } finally {
      dedicatedHealth.close();
      await dedicated.close();
    }
  }

  it("Watch delivers NOT_SERVING when the server shuts down", async () => {
    const { watches } = await watchThroughShutdown();
    for (const watch of watches) expect(watch.statuses).toEqual(["SERVING", "NOT_SERVING"]);
  });

  it("Watch streams end cleanly (status OK) on shutdown, without holding it up for the grace period", async () => {
    // The harness gives test servers a 2 s shutdown grace period; a stream
    // still open when it runs out is cut off (RST_STREAM) instead of ended.
    const { watches, closeMs } = await watchThroughShutdown();
    for (const watch of watches) {
      expect(watch.ended?.code, `${watch.ended?.details}`).toBe(grpc.status.OK);
      expect(watch.error).toBeUndefined();
    }
    expect(closeMs).toBeLessThan(1_500);
  });
});
