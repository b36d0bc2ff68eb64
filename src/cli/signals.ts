// How a long-running actionctl command (a follow, a claim stream) stops:
// SIGTERM ends it normally (exit 0), SIGINT as interrupted (exit 130), and
// either aborts what it is waiting on.
import { EXIT } from "./errors.js";

export interface StopSignals {
  /** Aborts on SIGINT or SIGTERM. */
  signal: AbortSignal;
  /** The exit code the signal that came asks for (0 if none came). */
  exitCode(): number;
  /** Stops listening for the signals. */
  dispose(): void;
}

export function stopOnSignals(): StopSignals {
  const stop = new AbortController();
  let exitCode: number = EXIT.ok;
  const onSigint = () => {
    exitCode = EXIT.interrupted;
    stop.abort();
  };
  const onSigterm = () => stop.abort();
  process.once("SIGINT", onSigint);
  process.once("SIGTERM", onSigterm);
  return {
    signal: stop.signal,
    exitCode: () => exitCode,
    dispose() {
      process.off("SIGINT", onSigint);
      process.off("SIGTERM", onSigterm);
    },
  };
}
