// The console's words for a schedule's clock: common cron shapes read out,
// anything else left as written rather than paraphrased wrongly.
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ScheduleSchema } from "../gen/actionq/v1/action_queue_service_pb.js";
import { cronInWords, untilNextTick } from "../web/src/schedule-words.js";

describe("cronInWords", () => {
  it("reads out the common shapes", () => {
    expect(cronInWords("* * * * *")).toBe("every minute");
    expect(cronInWords("*/5 * * * *")).toBe("every 5 minutes");
    expect(cronInWords("7 * * * *")).toBe("every hour at :07");
    expect(cronInWords("0 */6 * * *")).toBe("every 6 hours at :00");
    expect(cronInWords("0 3 * * *")).toBe("every day at 03:00");
    expect(cronInWords("0 0 3 * * *")).toBe("every day at 03:00");
    expect(cronInWords("30 3 * * MON-FRI")).toBe("at 03:30 on Monday to Friday");
    expect(cronInWords("30 3 * * 1,3,5")).toBe("at 03:30 on Monday, Wednesday and Friday");
    expect(cronInWords("0 12 * * 0")).toBe("at 12:00 on Sunday");
    expect(cronInWords("0 12 1 * *")).toBe("at 12:00 on day 1 of every month");
  });

  it("leaves other shapes to the expression itself", () => {
    for (const expression of ["0 3 * 1 *", "0 3 1 * MON", "15 0 3 * * *", "0 1-5 * * *", "0 3 L * *", "nonsense", "0 3 * * MON-XYZ"]) {
      expect(cronInWords(expression), expression).toBeUndefined();
    }
  });

  it("pages read schedules again just after the soonest next tick, between 1 s and a minute", () => {
    const now = 1_000_000_000;
    const at = (ms: number) => create(ScheduleSchema, { nextTickTime: timestampFromMs(now + ms) });
    expect(untilNextTick([at(10_000), at(5_000)], now)).toBe(6_000);
    expect(untilNextTick([at(-30_000)], now)).toBe(1_000);
    expect(untilNextTick([at(3_600_000)], now)).toBe(60_000);
    expect(untilNextTick([create(ScheduleSchema)], now)).toBe(60_000);
    expect(untilNextTick([], now)).toBe(60_000);
  });
});
