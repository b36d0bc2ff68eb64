// actionctl's commands that read: list and show actions, tell an action's
// history, count the queue, say who the caller is, show or reload the
// policy, and read or follow the event log.
import { type Command, Option } from "commander";
import { type ActionStatus, ActionSchema, EventSchema } from "../../gen/actionq/v1/action_pb.js";
import {
  GetActionResponseSchema,
  GetCallerResponseSchema,
  GetPolicyResponseSchema,
  GetQueueStatsResponseSchema,
  ListActionsResponseSchema,
  ReloadPolicyResponseSchema,
} from "../../gen/actionq/v1/action_queue_service_pb.js";
import { IDENTITY_NOTE, STREAM_PINGS, UNARY, client, idArgument, mode, run, target } from "./context.js";
import { type EventsOptions, followEvents, listEvents } from "./events.js";
import { historyLines } from "./history.js";
import { messageJson, note, print } from "./output.js";
import * as parse from "./parse.js";
import { EVENT_HEADER, actionFields, actionsTable, callerView, eventLine, holdLine, policyView, statsView, windowHoldLines } from "./views.js";

export function addInspectCommands(program: Command): void {
  interface ListOptions {
    status?: ActionStatus[];
    type?: string[];
    project?: string[];
    createdBy?: string;
    parent?: bigint;
    correlationId?: string;
    limit?: number;
    pageToken?: string;
  }

  program
    .command("ls")
    .description("list actions, newest first (ListActions); filters combine")
    .addOption(new Option("--status <status>", `only this status (repeatable): ${parse.status.names.join(", ")}`).argParser(parse.collect(parse.status.parse)))
    .option("--type <type>", "only this action type (repeatable)", parse.collectText)
    .option("--project <project>", "only this project (repeatable)", parse.collectText)
    .option("--created-by <who>", "only actions proposed by this producer")
    .option("--parent <id>", "only the children of this action", parse.id)
    .option("--correlation-id <id>", "only actions with this correlation id")
    .option("--limit <n>", "page size (server default 50, at most ACTIONQ_MAX_PAGE_SIZE, 1000 by default)", parse.positive)
    .option("--page-token <token>", "next_page_token of the previous page, with the same filters")
    .action(
      run(async (o: ListOptions) => {
        const response = await client().listActions(
          {
            statuses: o.status,
            actionTypes: o.type,
            projects: o.project,
            createdBy: o.createdBy,
            parentId: o.parent,
            correlationId: o.correlationId,
            pageSize: o.limit,
            pageToken: o.pageToken,
          },
          UNARY,
        );
        const more = response.nextPageToken ? `more: add --page-token ${response.nextPageToken}` : "";
        await print(mode(), {
          json: messageJson(ListActionsResponseSchema, response, { actions: [], next_page_token: "" }),
          records: () => response.actions.map((action) => messageJson(ActionSchema, action)),
          table: () => [...(response.actions.length ? actionsTable(response.actions) : ["no actions"]), ...(more ? [more] : [])],
        });
        if (more && mode() === "jsonl") await note(more);
      }),
    );

  program
    .command("show")
    .description("one action, then its whole event history (GetAction)")
    .argument(...idArgument)
    .action(
      run(async (id: bigint) => {
        const response = await client().getAction({ id }, UNARY);
        // The action first: what a reader looks for, ahead of its history.
        const json = messageJson(GetActionResponseSchema, response, { events: [] });
        await print(mode(), {
          json: {
            action: json.action!,
            events: json.events!,
            ...(json.concurrency_hold ? { concurrency_hold: json.concurrency_hold } : {}),
            ...(json.window_hold ? { window_hold: json.window_hold } : {}),
          },
          table: () => [
            ...actionFields(response.action!, true),
            ...holdLine(response.concurrencyHold),
            ...windowHoldLines(response.windowHold),
            "",
            EVENT_HEADER,
            ...response.events.map(eventLine),
          ],
        });
      }),
    );

  program
    .command("history")
    .description("the story of one action for people: the action and its status now, then a line per event, oldest first (GetAction)")
    .argument(...idArgument)
    .option("--json", "print the events as JSON Lines instead (as -o jsonl)")
    .addHelpText(
      "after",
      `
Each event line: its time, type and actor, then its facts: the policy's
decision (mode, version, rule, why), approvers towards the quorum, claim
attempts and workers, the executor's progress, the result or the failure.
Text wherever it goes, unless -o json ({"action","events"}) or -o jsonl.`,
    )
    .action(
      run(async (id: bigint, o: { json?: boolean }) => {
        const response = await client().getAction({ id }, UNARY);
        const json = messageJson(GetActionResponseSchema, response, { events: [] });
        await print(o.json ? "jsonl" : mode("table"), {
          json: { action: json.action!, events: json.events! },
          records: () => response.events.map((event) => messageJson(EventSchema, event)),
          table: () => historyLines(response.action!, response.events),
        });
      }),
    );

  program
    .command("stats")
    .description(
      "counts by type and status, the claimable backlog and its oldest wait, the pauses in force, the policy version and the change windows with what they hold (GetQueueStats)",
    )
    .action(
      run(async () => {
        const response = await client().getQueueStats({}, UNARY);
        await print(mode(), {
          json: messageJson(GetQueueStatsResponseSchema, response, { counts: [], claimable: "0", pauses: [], policy_version: "" }),
          table: () => statsView(response),
        });
      }),
    );

  program
    .command("whoami")
    .description("who the server takes you to be: the principal ACTIONQ_TOKEN or the client certificate names, its roles and scope (GetCaller)")
    .action(
      run(async () => {
        const response = await client().getCaller({}, UNARY);
        await print(mode(), {
          json: messageJson(GetCallerResponseSchema, response, { authentication_enabled: false }),
          table: () => callerView(response),
        });
      }),
    );

  const policy = program.command("policy").description("the approval policy the server applies: show it, or reload its file");

  policy
    .command("show")
    .description("the policy in force with every default filled in, its version and its file (GetPolicy)")
    .action(
      run(async () => {
        const response = await client().getPolicy({}, UNARY);
        await print(mode(), {
          json: messageJson(GetPolicyResponseSchema, response, { source: "" }),
          table: () => policyView(response.policyVersion, response.source, response.policy),
        });
      }),
    );

  policy
    .command("reload")
    .description(
      "read the policy file again on the server that answers, as SIGHUP does (ReloadPolicy); an invalid file is refused and the policy in force stays",
    )
    .option("--actor <who>", `who reloads, the actor of the policy_reloaded event ${IDENTITY_NOTE}`)
    .action(
      run(async (o: { actor: string }) => {
        const response = await client().reloadPolicy({ actor: o.actor }, UNARY);
        await print(mode(), {
          json: messageJson(ReloadPolicyResponseSchema, response, { changed: false }),
          table: () => [`policy ${response.policyVersion} (${response.changed ? "changed" : "unchanged"})`],
        });
      }),
    );

  program
    .command("events")
    .description("read the event log in id order (ListEvents), or --follow it live (WatchEvents)")
    .option("--after <id>", "only events with a larger id (default: 0, the whole log; with --follow, from now)", parse.cursor)
    .option("--action <id>", "only events about this action", parse.id)
    .option("--type <type>", "only events of this type (repeatable)", parse.collectText)
    .option("--limit <n>", "stop after this many events", parse.positive)
    .option(
      "--page-size <n>",
      "events per ListEvents call, or at most per WatchEvents message with --follow (at most ACTIONQ_MAX_PAGE_SIZE)",
      parse.positive,
      100,
    )
    .option(
      "-f, --follow",
      "keep printing events as they are committed, resuming from the last cursor when the server restarts or the network drops (a line on stderr each time); ends on SIGTERM (exit 0) or SIGINT (exit 130)",
    )
    .addHelpText(
      "after",
      `
In the JSON modes each event is one JSON line; in table mode one line in
fixed columns.

Examples:
  actionctl events --action 42                   the history of action 42
  actionctl events --follow                      tail the log from now
  actionctl events --follow --after 0            the whole log, then tail it
  actionctl events --follow --after "$LAST_ID"   tail it from a saved cursor`,
    )
    .action(
      run(async (o: EventsOptions) => {
        const outputMode = mode() === "json" ? "jsonl" : mode();
        if (o.follow) return followEvents(client(STREAM_PINGS), o, outputMode, { target: target() });
        await listEvents(client(), o, outputMode, UNARY);
      }),
    );
}
