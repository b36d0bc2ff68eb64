// The admin port (ACTIONQ_METRICS_LISTEN): Prometheus metrics, and the two
// probes an orchestrator asks. /healthz: the process is up and not
// stopping. /readyz: it can do its work: the database answers and its
// schema has every migration this build knows.
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Metrics } from "./metrics.js";

export interface Probes {
  stopping(): boolean;
  /** Resolves to why the server is not ready, or null when it is. */
  notReady(): Promise<string | null>;
}

export class AdminServer {
  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static async start(listen: { host: string; port: number }, metrics: Metrics, probes: Probes, log: Logger): Promise<AdminServer> {
    const server = http.createServer((req, res) => {
      const reply = (status: number, type: string, body: string) => {
        res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
        res.end(body);
      };
      if (req.method !== "GET" && req.method !== "HEAD") return reply(405, "text/plain", "GET only\n");
      const path = (req.url ?? "/").split("?")[0];
      switch (path) {
        case "/metrics":
          metrics.registry.metrics().then(
            (text) => reply(200, metrics.registry.contentType, text),
            (error: unknown) => {
              log.warn({ err: (error as Error).message }, "metrics scrape failed");
              reply(500, "text/plain", "metrics unavailable\n");
            },
          );
          return;
        case "/healthz":
          return probes.stopping() ? reply(503, "text/plain", "stopping\n") : reply(200, "text/plain", "ok\n");
        case "/readyz":
          probes.notReady().then(
            (why) => (why === null ? reply(200, "text/plain", "ready\n") : reply(503, "text/plain", `not ready: ${why}\n`)),
            (error: unknown) => reply(503, "text/plain", `not ready: ${(error as Error).message}\n`),
          );
          return;
        default:
          return reply(404, "text/plain", "not found: try /metrics, /healthz or /readyz\n");
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(listen.port, listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    log.info({ address: `${listen.host}:${port}` }, "admin endpoint serving /metrics, /healthz, /readyz");
    return new AdminServer(server, port);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
