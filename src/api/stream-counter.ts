// Per-principal caps on open streams (claim streams, watchers): one more
// than the cap is refused with RESOURCE_EXHAUSTED naming the setting.
import { ActionqError } from "../errors.js";

/** Counts open streams of one kind per principal (or client address) and
 * refuses one more than the cap. */
export class StreamCounter {
  private readonly open = new Map<string, number>();

  /** Takes a slot for `key`, or throws RESOURCE_EXHAUSTED naming the
   * setting; the returned function gives it back. */
  take(kind: string, key: string, max: number, setting: string): () => void {
    const slot = `${kind}\u0000${key}`;
    const n = this.open.get(slot) ?? 0;
    if (n >= max) {
      throw new ActionqError(
        "resource_exhausted",
        "TOO_MANY_STREAMS",
        `${key} already has ${n} ${kind} streams open on this server; at most ${max} are allowed (${setting})`,
        {
          limit: setting,
          max: String(max),
        },
      );
    }
    this.open.set(slot, n + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = (this.open.get(slot) ?? 1) - 1;
      if (left <= 0) this.open.delete(slot);
      else this.open.set(slot, left);
    };
  }
}
