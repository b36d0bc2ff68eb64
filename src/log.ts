// pino JSON lines on stdout; `pretty` for a terminal.
import pino, { type Logger } from "pino";

export type { Logger };

export function createLogger(level: string, options: { pretty?: boolean; name?: string } = {}): Logger {
  if (options.pretty) {
    return pino({
      level,
      name: options.name ?? "actionq",
      // Colour only where a person reads it: escape codes in a redirected
      // file are noise.
      transport: { target: "pino-pretty", options: { colorize: Boolean(process.stdout.isTTY), translateTime: "SYS:HH:MM:ss.l" } },
    });
  }
  return pino({ level, name: options.name ?? "actionq" });
}
