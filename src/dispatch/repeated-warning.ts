// A warning that may repeat on every wakeup: while the database is away and
// the server polls several times a second, each poll fails the same way.
// The first is logged at once, then at most one every interval, saying how
// many were held back.
import type { Logger } from "pino";

export class RepeatedWarning {
  private lastAt = Number.NEGATIVE_INFINITY;
  private heldBack = 0;

  constructor(
    private readonly log: Logger,
    private readonly message: string,
    private readonly intervalMs = 10_000,
  ) {}

  warn(fields: Record<string, unknown>): void {
    const now = Date.now();
    if (now - this.lastAt < this.intervalMs) {
      this.heldBack++;
      return;
    }
    this.log.warn(this.heldBack > 0 ? { ...fields, repeats_not_logged: this.heldBack } : fields, this.message);
    this.lastAt = now;
    this.heldBack = 0;
  }
}
