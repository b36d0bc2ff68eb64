// Schedules: recurring actions. The handlers check the request, the
// owner and the template, and call the schedules store (changes) or the
// ticks (backfill); the scheduler loop itself is in src/schedule/.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { invalidField } from "../../errors.js";
import { clockOf } from "../../store/schedules.js";
import { overlapFromWire, scheduleId, scheduleSpecFromWire, scheduleToWire, tickToWire, timeFromWire } from "../schedule-convert.js";
import * as check from "../validate.js";
import type { Handlers, Kit } from "./kit.js";

/** How many of a schedule's ticks GetSchedule shows. */
const RECENT_TICKS = 20;
const UPCOMING_TICKS = 5;

function pageToken(afterId: string, project: string): string {
  return Buffer.from(JSON.stringify({ after: afterId, project })).toString("base64url");
}

function afterFromToken(token: string, project: string): string {
  if (token === "") return "";
  try {
    const body = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { after?: unknown; project?: unknown };
    if (typeof body.after === "string" && body.project === project) return body.after;
  } catch {
    // Reported below, like any other token that is not ours.
  }
  throw invalidField("page_token", "is not a token returned by ListSchedules for this filter; start again without a page_token");
}

export function scheduling(
  kit: Kit,
): Handlers<
  "createSchedule" | "updateSchedule" | "pauseSchedule" | "resumeSchedule" | "deleteSchedule" | "getSchedule" | "listSchedules" | "backfillSchedule"
> {
  const { deps, bound, accessOf } = kit;
  const { schedules, templates, ticks } = deps;
  return {
    async createSchedule(req, ctx) {
      const access = accessOf(ctx);
      const owner = access.identity("owner", req.owner);
      const spec = scheduleSpecFromWire(req.schedule);
      const { json, project } = templates.check(req.schedule?.template, owner, (p, t) => access.allowNew(p, t));
      const row = await schedules.create({ ...spec, template: json, project }, owner);
      return { schedule: scheduleToWire(row, undefined) };
    },
    async updateSchedule(req, ctx) {
      const access = accessOf(ctx);
      const actor = access.identity("actor", req.actor);
      const spec = scheduleSpecFromWire(req.schedule);
      const current = await schedules.find(spec.id);
      const ownerOnly = (row: { id: string; owner: string }) => access.allowScheduleChange(row.id, row.owner, false);
      if (current) ownerOnly(current);
      // The actions stay the owner's: the template is checked for the owner.
      const { json, project } = templates.check(req.schedule?.template, current?.owner ?? actor, (p, t) => access.allowNew(p, t));
      const expected = req.expectedRevision === 0n ? null : req.expectedRevision.toString();
      const row = await schedules.update({ ...spec, template: json, project }, expected, actor, ownerOnly);
      return { schedule: scheduleToWire(row, await schedules.lastTick(row.key)) };
    },
    async pauseSchedule(req, ctx) {
      const access = accessOf(ctx);
      const id = scheduleId("id", req.id);
      const reason = bound.text("reason", req.reason, true);
      const actor = access.identity("actor", req.actor);
      const { schedule, changed } = await schedules.pause(id, reason, actor, (row) => access.allowScheduleChange(id, row.owner, true));
      return { schedule: scheduleToWire(schedule, await schedules.lastTick(schedule.key)), changed };
    },
    async resumeSchedule(req, ctx) {
      const access = accessOf(ctx);
      const id = scheduleId("id", req.id);
      const reason = bound.text("reason", req.reason);
      const actor = access.identity("actor", req.actor);
      const { schedule, changed } = await schedules.resume(id, reason, actor, (row) => access.allowScheduleChange(id, row.owner, true));
      return { schedule: scheduleToWire(schedule, await schedules.lastTick(schedule.key)), changed };
    },
    async deleteSchedule(req, ctx) {
      const access = accessOf(ctx);
      const id = scheduleId("id", req.id);
      const reason = bound.text("reason", req.reason);
      const actor = access.identity("actor", req.actor);
      const schedule = await schedules.delete(id, reason, actor, (row) => access.allowScheduleChange(id, row.owner, true));
      return { schedule: scheduleToWire(schedule, await schedules.lastTick(schedule.key)) };
    },
    async getSchedule(req, ctx) {
      const id = scheduleId("id", req.id);
      const { schedule, ticks: recent } = await schedules.get(id, RECENT_TICKS);
      // A scoped principal sees the schedules whose actions it could see.
      accessOf(ctx).allowNew(schedule.project, String(schedule.template.actionType ?? ""));
      return {
        schedule: scheduleToWire(schedule, recent[0]),
        recentTicks: recent.map(tickToWire),
        upcomingTickTimes: clockOf(schedule)
          .upcoming(new Date(), UPCOMING_TICKS)
          .map((tick) => timestampFromDate(tick)),
      };
    },
    async listSchedules(req, ctx) {
      const project = req.project === "" ? "" : check.name("project", req.project);
      const scope = accessOf(ctx).narrow({ actionTypes: [], projects: project === "" ? [] : [project] });
      const limit = bound.pageSize("page_size", req.pageSize, 50);
      const after = afterFromToken(req.pageToken, project);
      const rows = await schedules.list(scope.projects, after, limit + 1);
      const page = rows.slice(0, limit);
      return {
        // A principal scoped by action type sees only those types' schedules.
        schedules: page
          .filter(({ schedule }) => scope.actionTypes.length === 0 || scope.actionTypes.includes(String(schedule.template.actionType ?? "")))
          .map(({ schedule, last }) => scheduleToWire(schedule, last)),
        nextPageToken: rows.length > limit ? pageToken(page.at(-1)!.schedule.id, project) : "",
      };
    },
    async backfillSchedule(req, ctx) {
      const access = accessOf(ctx);
      const id = scheduleId("id", req.id);
      const start = timeFromWire("start_time", req.startTime, true)!;
      const end = timeFromWire("end_time", req.endTime, true)!;
      if (end <= start) throw invalidField("end_time", "must be after start_time: the interval is empty");
      const policy = overlapFromWire("overlap_policy", req.overlapPolicy, "allow_all");
      access.identity("actor", req.actor);
      const done = await ticks.backfill(id, start, end, policy, deps.config.limits.batch, (row) => access.allowScheduleChange(id, row.owner, false));
      return { ticks: done.map(tickToWire) };
    },
  };
}
