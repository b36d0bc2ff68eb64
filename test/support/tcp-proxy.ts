// A TCP proxy for tests of broken networks, on loopback: it forwards bytes
// between a client and a target until told to misbehave. `blackhole()`
// makes every open connection go silent in both directions without a FIN
// or RST (a cut cable, a NAT that forgot the flow); an idle timeout does the
// same, or closes the connection, once a connection carried nothing for a
// while (a load balancer's idle timeout). New connections are forwarded
// normally either way, so a client that notices can reconnect.
import net from "node:net";

export type IdleAction = "close" | "blackhole";

export interface ProxyOptions {
  /** Cut a connection that carried no byte in either direction for this long. */
  idleTimeoutMs?: number;
  idleAction?: IdleAction;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  lastActivity: number;
  silent: boolean;
}

export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private readonly sweep: NodeJS.Timeout | undefined;
  /** Connections accepted, silenced (blackhole or idle) and closed for idleness. */
  readonly stats = { accepted: 0, silenced: 0, idleClosed: 0, idleSilenced: 0 };

  private constructor(
    private readonly server: net.Server,
    private targetPort: number,
    private readonly options: ProxyOptions,
  ) {
    if (options.idleTimeoutMs) {
      this.sweep = setInterval(() => this.cutIdle(), Math.max(10, Math.floor(options.idleTimeoutMs / 5)));
      this.sweep.unref();
    }
  }

  static async start(targetPort: number, options: ProxyOptions = {}): Promise<TcpProxy> {
    const server = net.createServer();
    const proxy = new TcpProxy(server, targetPort, options);
    server.on("connection", (client) => proxy.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get openConnections(): number {
    return this.pairs.size;
  }

  /** Where new connections go (a restarted server on another port). */
  retarget(port: number): void {
    this.targetPort = port;
  }

  /** Closes every open connection at once (both sockets destroyed, as a
   * restarted middlebox would); new ones are still accepted unless
   * refuse() says otherwise. Returns how many were cut. */
  cut(): number {
    const count = this.pairs.size;
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
    return count;
  }

  /** The local ports of the connections to the target, as the target
   * sees them (pg_stat_activity.client_port). */
  upstreamPorts(): number[] {
    return [...this.pairs].flatMap((pair) => (pair.upstream.localPort === undefined ? [] : [pair.upstream.localPort]));
  }

  /** While on, a new connection is closed as soon as it is accepted. */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  private refusing = false;

  /** Every open connection stops forwarding, silently; sockets stay open. */
  blackhole(): number {
    let count = 0;
    for (const pair of this.pairs) {
      if (!pair.silent) {
        pair.silent = true;
        count++;
      }
    }
    this.stats.silenced += count;
    return count;
  }

  private accept(client: net.Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    this.stats.accepted++;
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    const pair: Pair = { client, upstream, lastActivity: Date.now(), silent: false };
    this.pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const forward = (from: net.Socket, to: net.Socket) => {
      from.on("data", (chunk: Buffer) => {
        // A silent connection swallows everything: no byte, no FIN, no RST.
        if (pair.silent) return;
        pair.lastActivity = Date.now();
        to.write(chunk);
      });
      from.on("end", () => {
        if (!pair.silent) to.end();
      });
      from.on("close", () => {
        if (!pair.silent) to.destroy();
        this.forget(pair);
      });
      from.on("error", () => {});
    };
    forward(client, upstream);
    forward(upstream, client);
  }

  private forget(pair: Pair): void {
    if (pair.client.destroyed && pair.upstream.destroyed) this.pairs.delete(pair);
  }

  private cutIdle(): void {
    const { idleTimeoutMs, idleAction = "close" } = this.options;
    if (!idleTimeoutMs) return;
    const before = Date.now() - idleTimeoutMs;
    for (const pair of this.pairs) {
      if (pair.silent || pair.lastActivity > before) continue;
      if (idleAction === "close") {
        this.stats.idleClosed++;
        pair.client.destroy();
        pair.upstream.destroy();
      } else {
        this.stats.idleSilenced++;
        this.stats.silenced++;
        pair.silent = true;
      }
    }
  }

  /** Stops listening and destroys every connection, silent or not. */
  async close(): Promise<void> {
    clearInterval(this.sweep);
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
