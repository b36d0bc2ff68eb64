// `actionctl schedule ...`: recurring actions. A schedule is a template
// (the flags of `add`) and a clock (--cron or --every, in a time zone);
// the server enqueues one action per tick in the owner's name. Each
// subcommand is one RPC, except `update`, which reads the schedule first
// so that flags left out keep their value and a concurrent change is
// refused (expected_revision).
import { create } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { type Command, Option } from "commander";
import {
  BackfillScheduleResponseSchema,
  CreateScheduleResponseSchema,
  DeleteScheduleResponseSchema,
  EnqueueActionRequestSchema,
  GetScheduleResponseSchema,
  ListSchedulesResponseSchema,
  PauseScheduleResponseSchema,
  ResumeScheduleResponseSchema,
  type Schedule,
  SchedulePolicyOverlap,
  UpdateScheduleResponseSchema,
} from "../../gen/actionq/v1/action_queue_service_pb.js";
import { IDENTITY_NOTE, UNARY, client, mode, run } from "./context.js";
import { EXIT } from "./errors.js";
import { messageJson, note, print } from "./output.js";
import * as parse from "./parse.js";
import { scheduleFields, scheduleView, schedulesTable, ticksTable } from "./schedule-views.js";
import { type TemplateInit, type TemplateOptions, templateFields, templateOptions } from "./template.js";

/** Schedule fields as a plain object, to spread over a current schedule. */
type ScheduleInit = Partial<Omit<Schedule, "$typeName" | "$unknown" | "template">> & { template?: TemplateInit };

interface ClockOptions extends TemplateOptions {
  cron?: string;
  every?: Duration;
  timeZone?: string;
  start?: Timestamp;
  /** false: --no-end, run forever. */
  end?: Timestamp | false;
  jitter?: Duration;
  overlap?: SchedulePolicyOverlap;
  catchUp?: Duration;
  description?: string;
}

const scheduleIdArgument = ["<id>", "the schedule id, such as nightly-diagnostics"] as const;

/** The clock and policy flags of `create` and `update`, after the template's. */
function clockOptions(command: Command, { update }: { update: boolean }): Command {
  const keep = update ? "; left out, it stays as it is" : "";
  command
    .option("--cron <expression>", `tick on this cron expression, five fields or six with seconds first, such as "0 3 * * *"${keep}`)
    .option("--every <duration>", `tick at this fixed interval, such as 30s, 15m or 24h${keep}`, parse.duration)
    .option("--time-zone <zone>", "IANA time zone the cron fields are read in, such as Europe/Berlin (default UTC)")
    .option("--start <time>", "no tick before this time: RFC 3339 or a duration from now (default: from creation)", (value: string) => parse.instant(value))
    .option("--end <time>", "no tick at or after this time: RFC 3339 or a duration from now (default: forever)", (value: string) => parse.instant(value));
  if (update) command.option("--no-end", "tick forever again");
  return command
    .option("--jitter <duration>", "delay each tick's action by a random time up to this, such as 30s (at most the interval)", parse.duration)
    .addOption(
      new Option(
        "--overlap <policy>",
        `what a tick does while an earlier tick's action is unfinished: ${parse.overlap.names.join(", ")} (default skip)`,
      ).argParser(parse.overlap.parse),
    )
    .option("--catch-up <duration>", "after the scheduler was down, enqueue missed ticks younger than this (default 1m; 0s skips them all)", parse.duration)
    .option("--description <text>", "a note for the people reading the schedule");
}

/** The clock the flags give, or undefined when neither was given. */
function clockOf(command: Command, o: ClockOptions): Schedule["clock"] | undefined {
  if (o.cron !== undefined && o.every !== undefined)
    command.error("error: give one of --cron and --every, not both", { exitCode: EXIT.usage, code: "actionctl.clock" });
  if (o.cron !== undefined) return { case: "cron", value: o.cron };
  if (o.every !== undefined) return { case: "interval", value: o.every };
  return undefined;
}

/** The schedule's own fields the flags set (the clock apart); left out when not given. */
function settingsOf(o: ClockOptions): Partial<ScheduleInit> {
  const settings: Partial<ScheduleInit> = {
    timeZone: o.timeZone,
    startTime: o.start,
    endTime: o.end === false ? undefined : o.end,
    jitter: o.jitter,
    overlapPolicy: o.overlap,
    catchUpWindow: o.catchUp,
    description: o.description,
  };
  const given = Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined));
  // --no-end: no end time, laid over the one in force.
  return o.end === false ? { ...given, endTime: undefined } : given;
}

/** "created: ..." then the schedule's fields, or its proto JSON. */
function printSchedule(json: Parameters<typeof print>[1]["json"], schedule: Schedule | undefined, what: string): Promise<void> {
  return print(mode(), { json, table: () => [what, ...(schedule ? scheduleFields(schedule) : [])] });
}

export function addScheduleCommands(program: Command): void {
  const schedule = program
    .command("schedule")
    .description(
      "recurring actions: create (CreateSchedule), update (UpdateSchedule), pause (PauseSchedule), resume (ResumeSchedule), delete (DeleteSchedule), list (ListSchedules), get (GetSchedule), backfill (BackfillSchedule)",
    )
    .addHelpText(
      "after",
      `
A schedule enqueues one action per tick of its clock, from a template
written with the flags of \`add\`, in its owner's name: the policy, pauses,
change windows and concurrency keys apply as to any other action.

Examples:
  actionctl schedule create nightly-diag --type collect_diagnostics \\
      --target node/7 --cron "0 3 * * *" --time-zone Europe/Berlin
  actionctl schedule create heartbeat --type ping --every 5m --overlap skip
  actionctl schedule pause nightly-diag --reason "INC-42: node 7 is down"
  actionctl schedule backfill nightly-diag --from 2026-12-01T00:00:00Z --to now`,
    );

  clockOptions(
    templateOptions(schedule.command("create").description("create a schedule (CreateSchedule): from its next tick on, one action per tick"), {
      typeRequired: true,
    }),
    {
      update: false,
    },
  )
    .argument(...scheduleIdArgument)
    .option("--owner <who>", `whose name the actions are enqueued in, such as agent:nightly ${IDENTITY_NOTE}`)
    .action(
      run(async (id: string, o: ClockOptions & { owner?: string }, command: Command) => {
        const clock = clockOf(command, o);
        if (!clock) command.error("error: give the schedule a clock: --cron <expression> or --every <duration>", { exitCode: EXIT.usage });
        const response = await client().createSchedule({ schedule: { id, template: templateFields(o), clock, ...settingsOf(o) }, owner: o.owner }, UNARY);
        await printSchedule(messageJson(CreateScheduleResponseSchema, response), response.schedule, "created");
      }),
    );

  clockOptions(
    templateOptions(
      schedule
        .command("update")
        .description("change a schedule's template, clock or policy (UpdateSchedule); flags left out keep their value, and a change made meanwhile is refused"),
      { typeRequired: false, negatable: true },
    ),
    { update: true },
  )
    .argument(...scheduleIdArgument)
    .option("--actor <who>", `who changes it, the owner or an admin ${IDENTITY_NOTE}`)
    .action(
      run(async (id: string, o: ClockOptions & { actor?: string }, command: Command) => {
        const clock = clockOf(command, o);
        const api = client();
        // Plain objects, without the messages' type names, so that the
        // flags given can be laid over the values in force.
        const { $typeName: _schedule, ...current } = (await api.getSchedule({ id }, UNARY)).schedule!;
        const { $typeName: _template, ...template } = current.template ?? create(EnqueueActionRequestSchema);
        const changed: ScheduleInit = {
          ...current,
          template: { ...template, ...templateFields(o) },
          clock: clock ?? current.clock,
          ...settingsOf(o),
        };
        const response = await api.updateSchedule({ schedule: changed, expectedRevision: current.revision, actor: o.actor }, UNARY);
        await printSchedule(
          messageJson(UpdateScheduleResponseSchema, response),
          response.schedule,
          `updated to revision ${response.schedule?.revision ?? "?"}`,
        );
      }),
    );

  schedule
    .command("pause")
    .description("pause a schedule (PauseSchedule): its ticks pass without an action, and are not caught up on resume")
    .argument(...scheduleIdArgument)
    .requiredOption("--reason <text>", "why, kept on the schedule and its event (required)")
    .option("--actor <who>", `who pauses, the owner or an operator ${IDENTITY_NOTE}`)
    .action(
      run(async (id: string, o: { reason: string; actor?: string }) => {
        const response = await client().pauseSchedule({ id, reason: o.reason, actor: o.actor }, UNARY);
        await printSchedule(
          messageJson(PauseScheduleResponseSchema, response, { changed: false }),
          response.schedule,
          response.changed ? "paused" : "already paused",
        );
      }),
    );

  schedule
    .command("resume")
    .description("resume a paused schedule from its next tick (ResumeSchedule)")
    .argument(...scheduleIdArgument)
    .option("--reason <text>", "why, kept on the event")
    .option("--actor <who>", `who resumes, the owner or an operator ${IDENTITY_NOTE}`)
    .action(
      run(async (id: string, o: { reason?: string; actor?: string }) => {
        const response = await client().resumeSchedule({ id, reason: o.reason, actor: o.actor }, UNARY);
        await printSchedule(
          messageJson(ResumeScheduleResponseSchema, response, { changed: false }),
          response.schedule,
          response.changed ? "resumed" : "was not paused",
        );
      }),
    );

  schedule
    .command("delete")
    .description("delete a schedule (DeleteSchedule): no more ticks; the actions it enqueued and its events stay")
    .argument(...scheduleIdArgument)
    .option("--reason <text>", "why, kept on the event")
    .option("--actor <who>", `who deletes it, the owner or an operator ${IDENTITY_NOTE}`)
    .action(
      run(async (id: string, o: { reason?: string; actor?: string }) => {
        const response = await client().deleteSchedule({ id, reason: o.reason, actor: o.actor }, UNARY);
        await printSchedule(messageJson(DeleteScheduleResponseSchema, response), response.schedule, "deleted; as it was:");
      }),
    );

  schedule
    .command("list")
    .alias("ls")
    .description("list schedules by id (ListSchedules)")
    .option("--project <project>", "only schedules whose template has this project")
    .option("--limit <n>", "page size (server default when unset)", parse.positive)
    .option("--page-token <token>", "next_page_token of the previous page")
    .action(
      run(async (o: { project?: string; limit?: number; pageToken?: string }) => {
        const response = await client().listSchedules({ project: o.project, pageSize: o.limit, pageToken: o.pageToken }, UNARY);
        const more = response.nextPageToken ? `more: add --page-token ${response.nextPageToken}` : "";
        const json = messageJson(ListSchedulesResponseSchema, response, { schedules: [], next_page_token: "" });
        await print(mode(), {
          json,
          records: () => json.schedules as ReturnType<typeof messageJson>[],
          table: () => [...(response.schedules.length ? schedulesTable(response.schedules) : ["no schedules"]), ...(more ? [more] : [])],
        });
        if (more && mode() === "jsonl") await note(more);
      }),
    );

  schedule
    .command("get")
    .alias("show")
    .description("one schedule, its next ticks and its recent ticks with what each became (GetSchedule)")
    .argument(...scheduleIdArgument)
    .action(
      run(async (id: string) => {
        const response = await client().getSchedule({ id }, UNARY);
        await print(mode(), {
          json: messageJson(GetScheduleResponseSchema, response, { recent_ticks: [], upcoming_tick_times: [] }),
          table: () => scheduleView(response),
        });
      }),
    );

  schedule
    .command("backfill")
    .description("enqueue the ticks of a past interval now, oldest first, once each (BackfillSchedule); works on a paused schedule")
    .argument(...scheduleIdArgument)
    .requiredOption("--from <time>", "the first tick at or after this time: RFC 3339, or a duration ago such as 6h (required)", (value: string) =>
      parse.pastInstant(value),
    )
    .requiredOption("--to <time>", "up to this time, excluded: RFC 3339, `now`, or a duration ago (required)", (value: string) => parse.pastInstant(value))
    .addOption(
      new Option(
        "--overlap <policy>",
        `overlap policy for these ticks: ${parse.overlap.names.join(", ")} (default allow-all: every tick is enqueued)`,
      ).argParser(parse.overlap.parse),
    )
    .option("--actor <who>", `who asks, the owner or an admin ${IDENTITY_NOTE}`)
    .action(
      run(async (id: string, o: { from: Timestamp; to: Timestamp; overlap?: SchedulePolicyOverlap; actor?: string }) => {
        const response = await client().backfillSchedule(
          { id, startTime: o.from, endTime: o.to, overlapPolicy: o.overlap ?? SchedulePolicyOverlap.UNSPECIFIED, actor: o.actor },
          UNARY,
        );
        const json = messageJson(BackfillScheduleResponseSchema, response, { ticks: [] });
        await print(mode(), {
          json,
          records: () => json.ticks as ReturnType<typeof messageJson>[],
          table: () =>
            response.ticks.length
              ? [`${response.ticks.length} tick${response.ticks.length === 1 ? "" : "s"}`, ...ticksTable(response.ticks)]
              : ["no ticks in that interval"],
        });
      }),
    );
}
