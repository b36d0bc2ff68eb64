// pino JSON lines on stdout; `pretty` for a terminal.
import pino, { type Logger } from "pino";

export type { Logger };

/** `sync`: each line is written before the call returns, for one-shot
 * commands whose result line on stdout must come after their log lines
 * (pino's default destination writes later, asynchronously). */
export function createLogger(level: string, options: { pretty?: boolean; name?: string; sync?: boolean } = {}): Logger {
  if (options.pretty) {
    return pino({
      level,
      name: options.name ?? "actionq",
      // Colour only where a person reads it: escape codes in a redirected
      // file are noise.
      transport: { target: "pino-pretty", options: { colorize: Boolean(process.stdout.isTTY), translateTime: "SYS:HH:MM:ss.l" } },
    });
  }
  const settings = { level, name: options.name ?? "actionq" };
  return options.sync ? pino(settings, pino.destination({ dest: 1, sync: true })) : pino(settings);
}
