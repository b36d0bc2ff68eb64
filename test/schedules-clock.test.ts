// The schedule clock on its own, with injected times: cron in a time zone
// through the 2026 daylight-saving changes of Europe/Berlin (spring gap on
// 29 March, 02:00 -> 03:00; fall overlap on 25 October, 03:00 -> 02:00)
// and America/New_York (8 March and 1 November), fixed intervals, bounds,
// and the cron expressions and zones that are refused.
import { Cron } from "croner";
import { describe, expect, it } from "vitest";
import { Clock, cronProblem, isKnownZone } from "../src/schedule/clock.js";

const iso = (dates: Date[]) => dates.map((d) => d.toISOString().replace(".000Z", "Z"));
const ticks = (cron: string, timeZone: string, from: string, to: string) => iso(new Clock({ cron, timeZone }).between(new Date(from), new Date(to), 1000));

describe("the schedule clock", () => {
  it("runs a daily wall time inside the spring-forward gap once, at the first instant after the gap", () => {
    // 02:30 does not exist in Berlin on 29 March: 03:00 CEST is 01:00Z.
    expect(ticks("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", "2026-03-31T00:00:00Z")).toEqual([
      "2026-03-28T01:30:00Z",
      "2026-03-29T01:00:00Z",
      "2026-03-30T00:30:00Z",
    ]);
    expect(ticks("30 2 * * *", "America/New_York", "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z")).toEqual([
      "2026-03-07T07:30:00Z",
      "2026-03-08T07:00:00Z",
      "2026-03-09T06:30:00Z",
    ]);
  });

  it("runs several wall times of one gap once, at the end of the gap", () => {
    // 02:00, 02:15, 02:30 and 02:45 all fall in the gap.
    expect(ticks("*/15 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", "2026-03-29T12:00:00Z")).toEqual(["2026-03-29T01:00:00Z"]);
  });

  it("runs a wall time that happens twice once, at its first occurrence", () => {
    // 02:30 on 25 October Berlin is 00:30Z (CEST) and 01:30Z (CET).
    expect(ticks("30 2 * * *", "Europe/Berlin", "2026-10-23T12:00:00Z", "2026-10-27T00:00:00Z")).toEqual([
      "2026-10-24T00:30:00Z",
      "2026-10-25T00:30:00Z",
      "2026-10-26T01:30:00Z",
    ]);
    // 01:00 and 01:30 in New York on 1 November: EDT only.
    expect(ticks("*/30 1 * * *", "America/New_York", "2026-11-01T04:00:00Z", "2026-11-01T08:00:00Z")).toEqual(["2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z"]);
  });

  it("gives frequent expressions no second pass through the repeated hour", () => {
    expect(ticks("0 * * * *", "Europe/Berlin", "2026-10-24T22:30:00Z", "2026-10-25T03:30:00Z")).toEqual([
      "2026-10-24T23:00:00Z",
      "2026-10-25T00:00:00Z",
      "2026-10-25T02:00:00Z",
      "2026-10-25T03:00:00Z",
    ]);
  });

  it("counts from an injected now, and answers the same whatever the now inside a repeated hour", () => {
    const clock = new Clock({ cron: "30 2 * * *", timeZone: "Europe/Berlin" });
    // A now in the second 02:xx of 25 October: 02:30 has run already.
    expect(iso([clock.next(new Date("2026-10-25T01:10:00Z"))!])).toEqual(["2026-10-26T01:30:00Z"]);
    expect(iso([clock.next(new Date("2026-10-25T00:10:00Z"))!])).toEqual(["2026-10-25T00:30:00Z"]);
    // The first instant after the gap is a tick; a moment later it is past.
    expect(iso([clock.next(new Date("2026-03-29T01:00:00Z"))!])).toEqual(["2026-03-29T01:00:00Z"]);
    expect(iso([clock.after(new Date("2026-03-29T01:00:00Z"))!])).toEqual(["2026-03-30T00:30:00Z"]);
    expect(iso(clock.upcoming(new Date("2026-03-28T12:00:00Z"), 2))).toEqual(["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]);
  });

  it("reads six fields with seconds first", () => {
    expect(ticks("*/20 * * * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")).toEqual([
      "2026-01-01T00:00:00Z",
      "2026-01-01T00:00:20Z",
      "2026-01-01T00:00:40Z",
    ]);
  });

  it("counts fixed intervals from their anchor, unmoved by time zones, within start and end", () => {
    const anchor = new Date("2026-10-25T00:00:00.250Z");
    const clock = new Clock({ intervalMs: 3_600_000, anchor }, { start: anchor, end: new Date("2026-10-25T04:00:00Z") });
    expect(iso(clock.between(new Date("2026-10-24T00:00:00Z"), new Date("2026-10-26T00:00:00Z"), 100))).toEqual([
      "2026-10-25T00:00:00.250Z",
      "2026-10-25T01:00:00.250Z",
      "2026-10-25T02:00:00.250Z",
      "2026-10-25T03:00:00.250Z",
    ]);
    expect(clock.count(new Date("2026-10-25T00:30:00Z"), new Date("2026-10-26T00:00:00Z"), 10)).toEqual({ count: 3, capped: false });
    expect(clock.next(new Date("2026-10-25T03:30:00Z"))).toBeNull();
  });

  it("counts cron ticks up to a cap", () => {
    const clock = new Clock({ cron: "* * * * * *", timeZone: "UTC" });
    expect(clock.count(new Date("2026-01-01T00:00:00Z"), new Date("2026-01-01T00:00:10Z"), 100)).toEqual({ count: 10, capped: false });
    expect(clock.count(new Date("2026-01-01T00:00:00Z"), new Date("2026-01-02T00:00:00Z"), 100)).toEqual({ count: 100, capped: true });
  });

  it("refuses cron expressions that are malformed or never match, and unknown zones", () => {
    expect(cronProblem("0 3 * * *")).toBeUndefined();
    expect(cronProblem("0 0 3 * * MON")).toBeUndefined();
    expect(cronProblem("61 * * * *")).toBeDefined();
    expect(cronProblem("* * *")).toMatch(/five fields/);
    expect(cronProblem("* * * * * * *")).toMatch(/five fields/);
    expect(cronProblem("")).toMatch(/five fields/);
    expect(cronProblem("0 0 30 2 *")).toBeDefined();
    expect(isKnownZone("Europe/Berlin")).toBe(true);
    expect(isKnownZone("UTC")).toBe(true);
    expect(isKnownZone("Mars/Olympus_Mons")).toBe(false);
  });

  // Why clock.ts maps wall times itself: croner's own answers depend on
  // the expression's shape. If an upgrade changes these, the mapping may
  // be simplified; clock.ts's results above must not change.
  it("upstream: croner skips a stepped hour inside the gap and repeats it inside the overlap", () => {
    const run = (cron: string, timeZone: string, from: string, n: number) => {
      const c = new Cron(cron, { timezone: timeZone, paused: true });
      const out: Date[] = [];
      for (let d: Date | null = new Date(from); out.length < n && d; ) {
        d = c.nextRun(d);
        if (d) out.push(d);
      }
      return iso(out);
    };
    expect(run("*/15 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 1)).toEqual(["2026-03-30T00:00:00Z"]);
    expect(run("*/30 1 * * *", "America/New_York", "2026-11-01T04:00:00Z", 4)).toEqual([
      "2026-11-01T05:00:00Z",
      "2026-11-01T05:30:00Z",
      "2026-11-01T06:00:00Z",
      "2026-11-01T06:30:00Z",
    ]);
  });
});
