// One lifecycle for every part of the server, as River's services share
// one Start/Stop contract: components start in order and stop in reverse,
// and a start that fails unwinds exactly what had started, through the
// same stop() calls a shutdown makes. Constructors start nothing.
import type { Logger } from "pino";

export interface Component {
  /** For the log, when a stop fails. */
  readonly name: string;
  start(): Promise<void> | void;
  stop(): Promise<void> | void;
}

/** A component from two functions. */
export function component(name: string, start: () => Promise<void> | void, stop: () => Promise<void> | void = () => {}): Component {
  return { name, start, stop };
}

export class Lifecycle {
  private readonly started: Component[] = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  /** Starts each in order. When one fails, stops every component started so
   * far (from earlier calls too), newest first, and throws its error. */
  async start(components: readonly Component[]): Promise<void> {
    for (const part of components) {
      try {
        await part.start();
      } catch (error) {
        await this.stop();
        throw error;
      }
      this.started.push(part);
    }
  }

  /** Stops what started, newest first. A stop that fails is logged and the
   * others still run: a database left open is worse than a warning. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (let part = this.started.pop(); part; part = this.started.pop()) {
        try {
          await part.stop();
        } catch (error) {
          this.log.warn({ component: part.name, err: (error as Error).message }, "a component did not stop cleanly");
        }
      }
    })();
    return this.stopping;
  }
}
