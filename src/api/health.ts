// grpc.health.v1.Health: SERVING while the database answers and the server
// is not shutting down. "" stands for the whole server.
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";

export class HealthState {
  private status = Status.SERVING;
  private readonly watchers = new Set<() => void>();

  constructor(readonly services: string[]) {}

  get current(): Status {
    return this.status;
  }

  set(serving: boolean): void {
    const next = serving ? Status.SERVING : Status.NOT_SERVING;
    if (next === this.status) return;
    this.status = next;
    for (const wake of this.watchers) wake();
  }

  knows(service: string): boolean {
    return service === "" || this.services.includes(service);
  }

  /** Resolves at the next change, or when the signal aborts. */
  changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        this.watchers.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.watchers.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

export function registerHealthService(router: ConnectRouter, state: HealthState, shutdown: AbortSignal): void {
  router.service(Health, {
    check(req) {
      if (!state.knows(req.service)) throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      return { status: state.current };
    },
    async *watch(req, ctx) {
      const signal = AbortSignal.any([ctx.signal, shutdown]);
      if (!state.knows(req.service)) {
        yield { status: Status.SERVICE_UNKNOWN };
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
        return;
      }
      let last: Status | undefined;
      while (!signal.aborted) {
        if (state.current !== last) {
          last = state.current;
          yield { status: last };
        }
        await state.changed(signal);
      }
      // Tell the watcher the server is going away before the stream ends.
      if (shutdown.aborted && last !== Status.NOT_SERVING && !ctx.signal.aborted) yield { status: Status.NOT_SERVING };
    },
  });
}
