// pino JSON lines on stdout; `pretty` for a terminal.
import pino, { type Logger } from "pino";

export type { Logger };

export function createLogger(level: string, options: { pretty?: boolean; name?: string } = {}): Logger {
  if (options.pretty) {
    return pino({
      level,
      name: options.name ?? "actionq",
      transport: { target: "pino-pretty", options: { colorize: true, translateTime: "SYS:HH:MM:ss.l" } },
    });
  }
  return pino({ level, name: options.name ?? "actionq" });
}
