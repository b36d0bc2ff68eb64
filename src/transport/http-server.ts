// One port for every protocol. HTTP/2 carries gRPC, gRPC-Web and Connect;
// HTTP/1.1 carries Connect and gRPC-Web, for curl and browsers. Both run in
// cleartext, or both over TLS.
// The first bytes of a connection tell them apart: an HTTP/2 connection
// opens with the preface "PRI * HTTP/2.0", and no HTTP/1.1 request does.
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export class DualProtocolServer {
  readonly h2: http2.Http2Server;
  readonly h1: http.Server;
  readonly tcp: net.Server | tls.Server;
  /** HTTP/1.1 connections and their requests in progress. Node's own
   * closeIdleConnections/closeAllConnections track only connections a
   * listening http.Server accepted; ours come through `route`, so they
   * would outlive close() and keep a restarted server's clients on the
   * old one. */
  private readonly h1Connections = new Map<net.Socket, number>();
  private closing = false;

  /** With `tlsOptions`, every connection is TLS (ALPN offers h2 and
   * http/1.1) and the protocol is told apart the same way once decrypted. */
  constructor(handler: Handler, tlsOptions?: tls.TlsOptions, h2Options: http2.ServerOptions = {}) {
    this.h2 = http2.createServer(h2Options, handler);
    this.h1 = http.createServer(handler);
    // Long-lived server streams over HTTP/1.1 (Connect streaming) must not
    // be cut by Node's default request timeout.
    this.h1.requestTimeout = 0;
    this.h1.headersTimeout = 60_000;
    this.h1.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => this.trackRequest(req.socket, res));
    this.tcp = tlsOptions
      ? tls.createServer({ ...tlsOptions, ALPNProtocols: ["h2", "http/1.1"] }, (socket) => this.route(socket))
      : net.createServer((socket) => this.route(socket));
    // A failed handshake is the client's problem; it must not reach the
    // process as an unhandled error.
    this.tcp.on("tlsClientError", () => {});
  }

  /** Replaces the certificate and key (and client CA) for new connections. */
  setSecureContext(options: tls.SecureContextOptions): void {
    if (this.tcp instanceof tls.Server) this.tcp.setSecureContext(options);
  }

  /** Reads until the first bytes decide the protocol, puts them back, and
   * hands the connection to that server. */
  private route(socket: net.Socket): void {
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const h2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (h2 && seen.length < PREFACE.length) return;
      socket.off("data", onData);
      socket.off("error", onError);
      socket.pause();
      socket.unshift(seen);
      if (h2) {
        // The HTTP/2 session reads what is buffered itself, on the next
        // tick; flowing the socket now would drop it.
        this.h2.emit("connection", socket);
      } else {
        this.h1Connections.set(socket, 0);
        socket.once("close", () => this.h1Connections.delete(socket));
        this.h1.emit("connection", socket);
        socket.resume();
      }
    };
    const onError = () => socket.destroy();
    socket.on("data", onData);
    socket.on("error", onError);
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.tcp.once("error", reject);
      this.tcp.listen(port, host, () => {
        this.tcp.off("error", reject);
        resolve((this.tcp.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting connections; resolves once every connection ended. */
  close(): Promise<void> {
    return new Promise((resolve) => this.tcp.close(() => resolve()));
  }

  /** While closing, each response ends its connection, and a connection
   * ends as soon as nothing is in progress on it. */
  private trackRequest(socket: net.Socket, res: http.ServerResponse): void {
    if (!this.h1Connections.has(socket)) return;
    this.h1Connections.set(socket, this.h1Connections.get(socket)! + 1);
    if (this.closing) res.shouldKeepAlive = false;
    res.once("close", () => {
      const inProgress = this.h1Connections.get(socket);
      if (inProgress === undefined) return;
      this.h1Connections.set(socket, inProgress - 1);
      if (this.closing && inProgress === 1) socket.end();
    });
  }

  /** Asks HTTP/1.1 keep-alive connections that are idle to go away, and
   * the others to go once their requests end. */
  closeIdle(): void {
    this.closing = true;
    for (const [socket, inProgress] of this.h1Connections) if (inProgress === 0) socket.end();
  }

  /** Ends every HTTP/1.1 connection now. */
  destroyAll(): void {
    this.closing = true;
    for (const socket of this.h1Connections.keys()) socket.destroy();
  }
}
