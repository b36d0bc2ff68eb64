#!/usr/bin/env node
// `actionctl`: the operator's command line for a running actionq server.
// Every command is one RPC (more for paged `events`). Output is a table or
// a short summary on a terminal and proto JSON elsewhere (-o/--output picks);
// errors are one line on stderr saying what to do, with an exit code of
// EXIT (errors.ts). Here: the program, proposing actions and the operator's
// commands; worker-commands.ts and inspect-commands.ts hold the rest.
import type { JsonObject } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Command, type CommanderError, InvalidArgumentError, Option } from "commander";
import { DEFAULT_ADDRESS } from "../client-transport.js";
import { ActionStatus } from "../../gen/actionq/v1/action_pb.js";
import {
  ApproveActionResponseSchema,
  BreakGlassResponseSchema,
  CancelActionResponseSchema,
  EnqueueActionRequestSchema,
  EnqueueActionResponseSchema,
  EnqueueActionsResponseSchema,
  PauseClaimsResponseSchema,
  RejectActionResponseSchema,
  ResumeClaimsResponseSchema,
  RetryActionResponseSchema,
  RollbackActionResponseSchema,
  SweepClaimsResponseSchema,
} from "../../gen/actionq/v1/action_queue_service_pb.js";
import { readRequests } from "./claims.js";
import { IDENTITY_NOTE, UNARY, client, idArgument, mode, printAction, requireIdentity, run, applyGlobals } from "./context.js";
import { EXIT, EXIT_TABLE } from "./errors.js";
import { addFsQueueCommands } from "./fs-queue/commands.js";
import { addInspectCommands } from "./inspect-commands.js";
import { OUTPUT_MODES, exitQuietlyOnClosedPipe, messageJson, print } from "./output.js";
import * as parse from "./parse.js";
import { addScheduleCommands } from "./schedule-commands.js";
import { table } from "./table.js";
import { type TemplateOptions, templateFields, templateOptions } from "./template.js";
import { packageVersion } from "./version.js";
import { itemErrorText, pauseText, scopeText, statusName } from "./views.js";
import { addWorkerCommands } from "./worker-commands.js";

const program = new Command("actionctl")
  .description(
    "Operate an actionq server: propose, approve, claim, finish, retry and roll back actions, pause claiming, inspect the policy, and read the event log.",
  )
  .version(packageVersion(), "-V, --version", "print actionctl's version")
  .addOption(new Option("-o, --output <mode>", "table on a terminal, json otherwise; jsonl prints one compact record a line").choices(OUTPUT_MODES))
  .option("--address <address>", `the server, as for ACTIONQ_ADDR (default $ACTIONQ_ADDR, else ${DEFAULT_ADDRESS})`)
  .showHelpAfterError("(run with --help for usage)")
  .hook("preAction", requireIdentity)
  // Usage errors exit 2, as POSIX tools do; commander's own default is 1,
  // which actionctl keeps for refusals from the server.
  .exitOverride((error: CommanderError) => process.exit(error.exitCode === 0 ? 0 : EXIT.usage))
  .addHelpText(
    "after",
    `
Environment:
  ACTIONQ_ADDR              the server, as host:port, http://host:port or
                            https://host:port (TLS) (default ${DEFAULT_ADDRESS});
                            --address overrides it
  ACTIONQ_TOKEN             bearer token; the server then knows who you are,
                            and --actor, --approver, --worker and --created-by
                            may be left out (\`actionctl whoami\` shows who)
  ACTIONQ_TLS_CA            PEM CA that signed the server's certificate
  ACTIONQ_TLS_CLIENT_CERT   PEM client certificate and key, for mutual TLS
  ACTIONQ_TLS_CLIENT_KEY

Output (-o/--output):
  table   on a terminal (the default there): lists as aligned tables, one
          action as a short summary; long values are cut with "…"
  json    when stdout is not a terminal (the default there): one proto JSON
          document (snake_case fields, enum names such as
          "ACTION_STATUS_PENDING", int64 values as strings), never cut;
          \`events\` prints one JSON event per line
  jsonl   one compact JSON record a line: the actions of \`ls\`, the events
          of \`events\` and \`history\`, the document itself otherwise
  \`history\` prints text unless -o is given.
  On failure stderr has one line: in table mode a sentence saying what
  happened and what to do; in the JSON modes
  {"error":{"code","message","reason","metadata","hint"}} where reason is the
  server's stable UPPER_SNAKE code and hint says what to do.

${EXIT_TABLE}`,
  );
applyGlobals(program);
interface AddOptions extends TemplateOptions {
  createdBy: string;
  idempotencyKey?: string;
  supersedes?: bigint;
  runAfter?: Timestamp;
}

templateOptions(
  program.command("add").description("propose an action (EnqueueAction); the server's policy approves it at once or holds it in PENDING for approvals"),
  { typeRequired: true },
)
  .option("--created-by <who>", `who proposes it, such as human:alice or agent:triage ${IDENTITY_NOTE}`, "")
  .option("--run-after <time>", "not claimable before this time: RFC 3339 (2026-12-06T18:00:00Z) or a duration from now (10m, 2h)", (value: string) =>
    parse.instant(value),
  )
  .option("--supersedes <id>", "replace this PENDING or APPROVED action, which is cancelled", parse.id)
  .option("--idempotency-key <key>", "a retry with the same key returns the first action")
  .action(
    run(async (o: AddOptions) => {
      const response = await client().enqueueAction(
        {
          ...templateFields(o),
          createdBy: o.createdBy,
          idempotencyKey: o.idempotencyKey,
          supersedesId: o.supersedes,
          runAfter: o.runAfter,
        },
        UNARY,
      );
      const what = response.created ? "created" : "not created: the idempotency key names this earlier action";
      await printAction(messageJson(EnqueueActionResponseSchema, response, { created: false }), response.action, what);
    }),
  );

program
  .command("add-many")
  .description("propose many actions in one call and one transaction (EnqueueActions); exit 1 when any was refused")
  .argument(
    "<file>",
    'JSON Lines (or one JSON array) of EnqueueActionRequest in proto JSON, such as {"action_type":"x","created_by":"human:alice"}; - reads stdin',
  )
  .action(
    run(async (file: string) => {
      const requests = await readRequests(EnqueueActionRequestSchema, file);
      const response = await client().enqueueActions({ requests }, UNARY);
      const rows = response.results.map((result, i) => ({ i, result }));
      const json = messageJson(EnqueueActionsResponseSchema, response, { results: [] });
      await print(mode(), {
        json,
        records: () => json.results as JsonObject[],
        table: () =>
          table(rows, [
            { header: "#", cell: ({ i }) => `${i + 1}`, right: true },
            { header: "ID", cell: ({ result }) => (result.result.case === "ok" ? `${result.result.value.action?.id}` : "-"), right: true },
            {
              header: "OUTCOME",
              cell: ({ result }) =>
                result.result.case === "ok"
                  ? `${result.result.value.created ? "created" : "exists"}, ${statusName(result.result.value.action!.status)}`
                  : itemErrorText(result.result.value!),
              max: 100,
            },
          ]),
      });
      return response.results.some((result) => result.result.case === "error") ? EXIT.refused : EXIT.ok;
    }),
  );
addWorkerCommands(program);

program
  .command("retry")
  .description("send a FAILED action back to APPROVED with more attempts (RetryAction)")
  .argument(...idArgument)
  .requiredOption("--reason <text>", "why, kept on the action_retried event (required)")
  .option("--actor <who>", `who sends it back, such as human:carol ${IDENTITY_NOTE}`)
  .option("--attempts <n>", "attempts granted on top of those used (default 1)", parse.positive)
  .action(
    run(async (id: bigint, o: { reason: string; actor: string; attempts?: number }) => {
      const response = await client().retryAction({ id, actor: o.actor, reason: o.reason, additionalAttempts: o.attempts }, UNARY);
      await printAction(messageJson(RetryActionResponseSchema, response), response.action, "sent back to the queue");
    }),
  );

program
  .command("reject")
  .description("deny a PENDING action as approver, or, with --token, refuse a CLAIMED one as its validating worker (RejectAction)")
  .argument(...idArgument)
  .requiredOption("--reason <text>", "why, kept as failure_reason (required)")
  .option("--actor <who>", `the approver or worker rejecting it ${IDENTITY_NOTE}`)
  .option("--token <token>", "the claim token, for a CLAIMED action")
  .action(
    run(async (id: bigint, o: { reason: string; actor: string; token?: string }) => {
      const response = await client().rejectAction({ id, reason: o.reason, actor: o.actor, claimToken: o.token }, UNARY);
      await printAction(messageJson(RejectActionResponseSchema, response), response.action, "rejected");
    }),
  );

program
  .command("cancel")
  .description("withdraw a PENDING, APPROVED or CLAIMED action (CancelAction)")
  .argument(...idArgument)
  .requiredOption("--reason <text>", "why, kept as failure_reason (required)")
  .option("--actor <who>", `who cancels, such as human:carol ${IDENTITY_NOTE}`)
  .action(
    run(async (id: bigint, o: { reason: string; actor: string }) => {
      const response = await client().cancelAction({ id, reason: o.reason, actor: o.actor }, UNARY);
      await printAction(messageJson(CancelActionResponseSchema, response), response.action, "cancelled");
    }),
  );

program
  .command("break-glass")
  .description("as an operator, let one PENDING or APPROVED action run inside a closed change window (BreakGlass)")
  .argument(...idArgument)
  .requiredOption("--reason <text>", "why it must run now, kept on the action and its break_glass event (required)")
  .option("--actor <who>", `the operator breaking glass, such as human:carol ${IDENTITY_NOTE}`)
  .addHelpText(
    "after",
    `
A change window with effect hold_claims keeps matching APPROVED actions
from being claimed while it is closed. Breaking glass on one action lets
workers claim it at once, inside the window; it approves nothing (a PENDING
action still needs its approvals) and pauses still hold it. Every break is
recorded as a break_glass event with the actor, the reason and the windows
that were closed. \`actionctl show ID\` says which window holds an action.`,
  )
  .action(
    run(async (id: bigint, o: { reason: string; actor: string }) => {
      const response = await client().breakGlass({ id, reason: o.reason, actor: o.actor }, UNARY);
      await printAction(messageJson(BreakGlassResponseSchema, response), response.action, "glass broken: it may run inside a closed change window");
    }),
  );

program
  .command("approve")
  .description("approve a PENDING action (ApproveAction); workers can claim it once approvals_required distinct approvers approved")
  .argument(...idArgument)
  .option("--approver <who>", `who approves, such as human:bob ${IDENTITY_NOTE}`)
  .option("--note <text>", "why, kept on the approval's event")
  .action(
    run(async (id: bigint, o: { approver: string; note?: string }) => {
      const response = await client().approveAction({ id, approver: o.approver, note: o.note }, UNARY);
      const action = response.action;
      const what =
        action && action.status === ActionStatus.PENDING
          ? `approval recorded: ${action.approvers.length} of ${action.approvalsRequired}${action.approvalsNeeded ? `; ${action.approvalsNeeded}` : ""}`
          : "approved: workers can claim it";
      await printAction(messageJson(ApproveActionResponseSchema, response), action, what);
    }),
  );

program
  .command("sweep")
  .description(
    "requeue now every claim whose lease ran out or whose delivery was never acknowledged, and reject every PENDING action whose approval expired (SweepClaims)",
  )
  .option("--actor <who>", "recorded on the events (server:sweeper when unset)")
  .action(
    run(async (o: { actor?: string }) => {
      const response = await client().sweepClaims({ actor: o.actor }, UNARY);
      const ids = (actions: { id: bigint }[]) => (actions.length ? `: ${actions.map((a) => a.id).join(", ")}` : "");
      await print(mode(), {
        json: messageJson(SweepClaimsResponseSchema, response, { requeued_actions: [], expired_actions: [] }),
        table: () => [
          `requeued ${response.requeuedActions.length}${ids(response.requeuedActions)}`,
          `expired ${response.expiredActions.length}${ids(response.expiredActions)}`,
        ],
      });
    }),
  );

program
  .command("rollback")
  .description("enqueue the reverse of a COMPLETED or FAILED action, from its rollback_ref and rollback_payload (RollbackAction)")
  .argument(...idArgument)
  .option("--actor <who>", `who asks for it, the new action's producer ${IDENTITY_NOTE}`)
  .option("--reason <text>", "why, kept on the new action's action_enqueued event")
  .action(
    run(async (id: bigint, o: { actor: string; reason?: string }) => {
      const response = await client().rollbackAction({ id, actor: o.actor, reason: o.reason }, UNARY);
      const what = response.created ? `rollback of action ${id} created` : `a rollback of action ${id} already exists`;
      const json = messageJson(RollbackActionResponseSchema, response, { created: false });
      // The wire names the new action `rollback`; every other command that
      // answers with one action calls it `action`, so scripts find it there
      // too (and under `rollback`, as before).
      await printAction({ action: json.rollback ?? null, ...json }, response.rollback, what);
    }),
  );

/** --all, --type, --project and --auto-approval, of which pause and resume
 * take exactly one. */
function withScopeOptions(command: Command): Command {
  return command
    .option("--all", "every action")
    .option("--type <type>", "actions of this type")
    .option("--project <project>", "actions of this project")
    .option("--auto-approval", "the policy's own approvals: new actions wait for humans, claiming goes on");
}

/** The scope, or a usage error (exit 2) before any call. */
function scopeOf(command: Command, o: parse.ScopeOptions): ReturnType<typeof parse.pauseScope> {
  try {
    return parse.pauseScope(o);
  } catch (error) {
    if (!(error instanceof InvalidArgumentError)) throw error;
    command.error(`error: ${error.message}`, { exitCode: EXIT.usage, code: "actionctl.scope" });
  }
}

withScopeOptions(
  program
    .command("pause")
    .description(
      "stop claiming in one scope on every server, or stop the policy approving by itself (PauseClaims); pausing a paused scope returns the pause in force",
    ),
)
  .option("--actor <who>", `who pauses, such as human:carol ${IDENTITY_NOTE}`)
  .requiredOption("--reason <text>", "why, kept on the pause and its event (required)")
  .addHelpText(
    "after",
    `
Give exactly one of --all, --type, --project, --auto-approval.

Examples:
  actionctl pause --all --actor human:carol --reason "incident 42"
  actionctl pause --type redeploy_service --actor human:carol --reason "deploy freeze"`,
  )
  .action(
    run(async (o: parse.ScopeOptions & { actor: string; reason: string }, command: Command) => {
      const scope = scopeOf(command, o);
      const response = await client().pauseClaims({ scope, actor: o.actor, reason: o.reason }, UNARY);
      await print(mode(), {
        json: messageJson(PauseClaimsResponseSchema, response, { created: false }),
        table: () => [`${response.created ? "paused" : "already paused"}: ${pauseText(response.pause!)}`],
      });
    }),
  );

withScopeOptions(
  program.command("resume").description("lift a pause made by `pause` (ResumeClaims); exit 1 with PAUSE_NOT_FOUND when that scope is not paused"),
)
  .option("--actor <who>", `who resumes ${IDENTITY_NOTE}`)
  .option("--reason <text>", "why, kept on the coordinator_resumed event")
  .addHelpText("after", "\nGive exactly one of --all, --type, --project, --auto-approval, as given to `pause`.")
  .action(
    run(async (o: parse.ScopeOptions & { actor: string; reason?: string }, command: Command) => {
      const scope = scopeOf(command, o);
      const response = await client().resumeClaims({ scope, actor: o.actor, reason: o.reason }, UNARY);
      await print(mode(), { json: messageJson(ResumeClaimsResponseSchema, response), table: () => [`resumed ${scopeText(response.pause?.scope)}`] });
    }),
  );
addInspectCommands(program);
addScheduleCommands(program);
addFsQueueCommands(program);

exitQuietlyOnClosedPipe();
await program.parseAsync();
