// The transport room: everything between the socket and a handler. It owns
// the one port for HTTP/2 and HTTP/1.1, cleartext or TLS (http-server.ts);
// the Node adapter, its direct gRPC path and gRPC-Web text (node-adapter.ts,
// grpc-direct.ts, grpc-web-text.ts); header fixes and CORS; the peer (peer.ts);
// HTTP/2 keepalive (keepalive.ts); slow consumers; and which failures are the
// client's (client-faults.ts). The server starts it and stops it.
import type http from "node:http";
import type http2 from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";
import cors from "cors";
import type { Logger } from "pino";
import { withPlainGrpcMessages } from "./grpc-message.js";
import { DualProtocolServer } from "./http-server.js";
import { Sessions } from "./keepalive.js";
import { type AdapterOptions, nodeAdapter } from "./node-adapter.js";
import type { NodeRequest } from "./peer.js";
import { SlowConsumers } from "./slow-consumers.js";

type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface TransportOptions {
  listen: { host: string; port: number };
  /** Certificate and key for TLS; with `ca`, client certificates signed by
   * it are asked for (and checked by auth, not here). */
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer };
  /** The router and its options; the slow-consumer watch is added as the
   * innermost interceptor. `log` is for the adapter's own faults. */
  rpc: Omit<AdapterOptions, "log">;
  /** Serves a request that is not an RPC (the web console) and says so;
   * false hands it on to the router. */
  beside?: (req: NodeRequest, res: NodeResponse) => boolean;
  /** Browser origins allowed by CORS; none turns CORS off. */
  corsOrigins: string[];
  /** The largest request message, in bytes (ACTIONQ_MAX_MESSAGE_BYTES). */
  messageBytes: number;
  /** Between keepalive PINGs on an HTTP/2 session. */
  keepaliveMs: number;
  /** How long a server stream may wait on a client that does not read. */
  slowConsumerMs: number;
  metrics: { onSlowConsumerCut(method: string): void };
  log: Logger;
}

/** The steps of a stop that belong to other components, run at their
 * point in the transport's own. */
export interface StopSteps {
  /** How long calls in progress get once connections are asked to close. */
  graceMs: number;
  /** Once no new connection is accepted, before open ones are asked to
   * close: streams that must end first (claim streams release what they
   * hold) end here. */
  drain?: () => Promise<void> | void;
  /** When the grace period is over, before every connection is cut. */
  force?: () => void;
}

/** CORS for browsers on the allowed origins: Connect's and gRPC-Web's
 * headers, plus x-request-id. */
function corsFor(origins: string[]) {
  if (origins.length === 0) return undefined;
  return cors({
    origin: origins.includes("*") ? "*" : origins,
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, "X-Request-Id", "Authorization"],
    exposedHeaders: [...connectCors.exposedHeaders, "X-Request-Id"],
    maxAge: 7200,
  });
}

export class Transport {
  private readonly server: DualProtocolServer;
  private readonly sessions: Sessions;
  private readonly slowConsumers: SlowConsumers;

  constructor(private readonly options: TransportOptions) {
    const { log, tls } = options;
    this.slowConsumers = new SlowConsumers(options.slowConsumerMs, log.child({ component: "streams" }), options.metrics);
    const rpc = nodeAdapter({
      ...options.rpc,
      interceptors: [...(options.rpc.interceptors ?? []), this.slowConsumers.interceptor()],
      log: log.child({ component: "rpc" }),
    });
    const allowCors = corsFor(options.corsOrigins);
    const beside = options.beside;
    this.server = new DualProtocolServer(
      (req, res) => {
        if (beside?.(req, res)) return;
        if ("stream" in res) withPlainGrpcMessages(res);
        if (!allowCors) return rpc(req, res);
        allowCors(req as http.IncomingMessage, res as http.ServerResponse, () => rpc(req, res));
      },
      tls && { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: tls.ca !== undefined, rejectUnauthorized: false },
      {
        // Room for a few requests of the largest allowed size in flight on
        // one connection (Node's default, 10 MB, resets every stream of a
        // session that goes over it).
        maxSessionMemory: Math.max(32, Math.ceil((4 * options.messageBytes) / 2 ** 20)),
        // Frames for streams that already ended count as invalid, and Node
        // closes a session after 1000 of them; a client that cancels many
        // streams over a connection held for days would reach that.
        maxSessionInvalidFrames: 1_000_000,
      },
    );
    this.sessions = new Sessions(options.keepaliveMs, log);
    this.server.h2.on("session", (session) => this.sessions.add(session));
  }

  /** Listens on the configured address; resolves with the port. */
  start(): Promise<number> {
    return this.server.listen(this.options.listen.port, this.options.listen.host);
  }

  /** Replaces the certificate, key and client CA for new connections; open
   * ones keep theirs. */
  setSecureContext(files: { cert: Buffer; key: Buffer; ca?: Buffer }): void {
    this.server.setSecureContext({ cert: files.cert, key: files.key, ca: files.ca });
  }

  /** Graceful stop: refuse new connections, run `drain`, ask every
   * connection to close once its calls end, give them `graceMs`, then run
   * `force` and cut what is left. */
  async stop(steps: StopSteps): Promise<void> {
    const closed = this.server.close();
    await steps.drain?.();
    this.sessions.closeAll();
    this.server.closeIdle();
    const grace = new Promise<void>((resolve) => setTimeout(resolve, steps.graceMs).unref());
    await Promise.race([closed, grace]);
    steps.force?.();
    this.sessions.destroyAll();
    this.server.destroyAll();
    // A destroyed session does not always report 'close'; do not wait on it
    // for ever.
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    this.slowConsumers.stop();
  }
}
