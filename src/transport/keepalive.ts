// The open HTTP/2 sessions, each pinged on an interval. A connection can
// vanish without a FIN (a cut cable, a proxy dropping state); its streams
// would hold their claims until the ack deadline and never learn. A PING
// that is not answered in time closes it, which ends its streams and
// releases what they did not acknowledge. Shutdown asks every session to
// close, then destroys those still open.
import type http2 from "node:http2";
import type { Logger } from "pino";

function pingOrClose(session: http2.ServerHttp2Session, timeoutMs: number, log: Logger): void {
  if (session.closed || session.destroyed) return;
  const deadline = setTimeout(() => {
    log.info({ remote: session.socket?.remoteAddress }, "connection did not answer a keepalive PING; closing it");
    session.destroy();
  }, timeoutMs);
  deadline.unref();
  try {
    session.ping((error) => {
      clearTimeout(deadline);
      if (error && !session.destroyed) session.destroy();
    });
  } catch {
    // The session is closing already.
    clearTimeout(deadline);
  }
}

export class Sessions {
  private readonly open = new Set<http2.ServerHttp2Session>();

  constructor(
    /** Between PINGs, and how long one may go unanswered. */
    private readonly keepaliveMs: number,
    private readonly log: Logger,
  ) {}

  /** Tracks a new session and pings it until it closes. */
  add(session: http2.ServerHttp2Session): void {
    this.open.add(session);
    const keepalive = setInterval(() => pingOrClose(session, this.keepaliveMs, this.log), this.keepaliveMs);
    keepalive.unref();
    session.on("close", () => {
      clearInterval(keepalive);
      this.open.delete(session);
    });
    session.on("error", () => {});
  }

  /** Asks every session to go away once its streams end (GOAWAY). */
  closeAll(): void {
    for (const session of this.open) session.close();
  }

  /** Ends every session now, streams and all. */
  destroyAll(): void {
    for (const session of this.open) session.destroy();
  }
}
