// A server stream costs memory for as long as its client does not read:
// connect-node waits for the socket to drain before it asks a stream for
// its next message, so a stalled client holds the stream, its claims or its
// place in the event tail. A stream that has waited on its client longer
// than ACTIONQ_SLOW_CONSUMER_SECONDS is reset with ENHANCE_YOUR_CALM, which
// gRPC clients report as RESOURCE_EXHAUSTED; the stream's end releases what
// it held, as any disconnect does.
import http2 from "node:http2";
import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { type NodeRequest, kNodeRequest, remoteAddress } from "./peer.js";

interface OpenStream {
  raw: NodeRequest;
  method: string;
  /** performance.now() when the stream handed over a message that is not
   * written yet; 0 while it is not waiting on its client. */
  waitingSince: number;
}

export class SlowConsumers {
  private readonly open = new Set<OpenStream>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly log: Logger,
    private readonly metrics: { onSlowConsumerCut(method: string): void },
  ) {}

  /** Watches every server stream's writes. */
  interceptor(): Interceptor {
    return (next) => async (req) => {
      const res = await next(req);
      const raw = req.contextValues.get(kNodeRequest);
      if (!res.stream || !raw) return res;
      const entry: OpenStream = { raw, method: req.method.name, waitingSince: 0 };
      const messages = res.message;
      const watch = (add: boolean) => this.watch(entry, add);
      return {
        ...res,
        message: (async function* () {
          watch(true);
          try {
            for await (const message of messages) {
              entry.waitingSince = performance.now();
              yield message;
              entry.waitingSince = 0;
            }
          } finally {
            watch(false);
          }
        })(),
      };
    };
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private watch(entry: OpenStream, add: boolean): void {
    if (add) {
      this.open.add(entry);
      this.timer ??= setInterval(() => this.check(), Math.max(100, Math.min(1000, this.timeoutMs / 4)));
      this.timer.unref();
    } else {
      this.open.delete(entry);
      if (this.open.size === 0) this.stop();
    }
  }

  private check(): void {
    const now = performance.now();
    for (const entry of this.open) {
      if (entry.waitingSince === 0 || now - entry.waitingSince < this.timeoutMs) continue;
      this.open.delete(entry);
      this.metrics.onSlowConsumerCut(entry.method);
      this.log.warn(
        { method: entry.method, remote: remoteAddress(entry.raw), waitedMs: Math.round(now - entry.waitingSince) },
        "client stopped reading its stream; resetting it (ACTIONQ_SLOW_CONSUMER_SECONDS)",
      );
      if ("stream" in entry.raw) entry.raw.stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      else entry.raw.socket.destroy();
    }
    if (this.open.size === 0) this.stop();
  }
}
