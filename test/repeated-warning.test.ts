// A warning repeated on every poll while the database is away is logged
// once, then at most once an interval with how many were held back.
import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { RepeatedWarning } from "../src/dispatch/repeated-warning.js";
import { sleep } from "./support/wait.js";

describe("a repeated warning", () => {
  it("is logged the first time, then once an interval, counting the repeats it held back", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString("utf8")) as Record<string, unknown>);
        done();
      },
    });
    const warning = new RepeatedWarning(pino({ level: "warn" }, sink), "claiming failed", 100);
    for (let i = 0; i < 5; i++) warning.warn({ err: "connection refused" });
    await sleep(150);
    warning.warn({ err: "connection refused" });
    await sleep(20);
    expect(lines.map((line) => [line.msg, line.err, line.repeats_not_logged])).toEqual([
      ["claiming failed", "connection refused", undefined],
      ["claiming failed", "connection refused", 4],
    ]);
  });
});
