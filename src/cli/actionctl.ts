#!/usr/bin/env node
// `actionctl`: the operator's command line for a running actionq server. Every
// command is one RPC (more for paged `events`); output is proto JSON on
// stdout (text for `history`), errors one JSON line on stderr.
import type { JsonObject } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { type CallOptions, createClient } from "@connectrpc/connect";
import { DEFAULT_ADDRESS, clientTransport, hasCredential } from "../client-transport.js";
import { Command, type CommanderError, InvalidArgumentError, Option } from "commander";
import { type ActionStatus, ClaimSchema, EventSchema, type RiskLevel } from "../../gen/actionq/v1/action_pb.js";
import {
  AckClaimResponseSchema,
  ActionQueueService,
  ApproveActionResponseSchema,
  CancelActionResponseSchema,
  CompleteActionResponseSchema,
  EmitEventResponseSchema,
  EnqueueActionResponseSchema,
  ExtendClaimResponseSchema,
  FailActionResponseSchema,
  GetActionResponseSchema,
  GetPolicyResponseSchema,
  GetQueueStatsResponseSchema,
  ListActionsResponseSchema,
  PauseClaimsResponseSchema,
  RejectActionResponseSchema,
  ReloadPolicyResponseSchema,
  ResumeClaimsResponseSchema,
  RollbackActionResponseSchema,
  SweepClaimsResponseSchema,
} from "../../gen/actionq/v1/action_queue_service_pb.js";
import { type EventsOptions, followEvents, listEvents } from "./events.js";
import { historyLines } from "./history.js";
import { exitQuietlyOnClosedPipe, messageJson, note, printDocument, printError, printLine, printText } from "./output.js";
import * as parse from "./parse.js";

/** The only place actionctl reads the environment. */
function client() {
  const { ACTIONQ_ADDR, ACTIONQ_TOKEN, ACTIONQ_TLS_CA, ACTIONQ_TLS_CLIENT_CERT, ACTIONQ_TLS_CLIENT_KEY } = process.env;
  const address = ACTIONQ_ADDR?.trim() || DEFAULT_ADDRESS;
  return createClient(ActionQueueService, clientTransport(address, { ACTIONQ_TOKEN, ACTIONQ_TLS_CA, ACTIONQ_TLS_CLIENT_CERT, ACTIONQ_TLS_CLIENT_KEY }));
}

// A unary call that takes this long means the server is stuck; say so
// instead of hanging an operator's shell.
const UNARY: CallOptions = { timeoutMs: 30_000 };

/** Runs a command body: its return value is the exit code; a thrown error
 * is printed as JSON on stderr and exits 1. */
function run<Args extends unknown[]>(body: (...args: Args) => Promise<number | void>): (...args: Args) => Promise<void> {
  return async (...args) => {
    let code: number;
    try {
      code = (await body(...args)) ?? 0;
    } catch (error) {
      await printError(error);
      code = 1;
    }
    process.exit(code);
  };
}

/** Options naming who acts (--actor, --approver, --worker, --created-by):
 * the server takes them from the credential when there is one, so they are
 * required only without ACTIONQ_TOKEN or a client certificate. */
const IDENTITY_NOTE = "(required unless ACTIONQ_TOKEN or a client certificate names you)";

function requireIdentity(_program: Command, command: Command): void {
  if (hasCredential(process.env)) return;
  for (const option of command.options) {
    if (!option.description.endsWith(IDENTITY_NOTE)) continue;
    const value = command.getOptionValue(option.attributeName()) as string | undefined;
    if (!value) command.error(`error: required option '${option.flags}' not specified (or set ACTIONQ_TOKEN to act as its principal)`);
  }
}

const program = new Command("actionctl")
  .description("Operate an actionq server: propose, approve, claim, finish and roll back actions, pause claiming, inspect the policy, and read the event log.")
  .showHelpAfterError("(run with --help for usage)")
  .hook("preAction", requireIdentity)
  // Usage errors exit 2, as POSIX tools do; commander's own default is 1,
  // which actionctl keeps for errors from the server.
  .exitOverride((error: CommanderError) => process.exit(error.exitCode === 0 ? 0 : 2))
  .addHelpText(
    "after",
    `
Environment:
  ACTIONQ_ADDR              the server, as host:port, http://host:port or
                            https://host:port (TLS) (default ${DEFAULT_ADDRESS})
  ACTIONQ_TOKEN             bearer token; the server then knows who you are,
                            and --actor, --approver, --worker and --created-by
                            may be left out
  ACTIONQ_TLS_CA            PEM CA that signed the server's certificate
  ACTIONQ_TLS_CLIENT_CERT   PEM client certificate and key, for mutual TLS
  ACTIONQ_TLS_CLIENT_KEY

Output:
  stdout  one proto JSON document (snake_case fields, enum names such as
          "ACTION_STATUS_PENDING", int64 values as strings); \`events\` prints
          one JSON event per line; \`history\` prints text for people
  stderr  on failure, one line {"error":{"code","message","reason","metadata"}}
          where reason is the server's stable UPPER_SNAKE code

Exit codes:
  0  success
  1  the server refused the call or could not be reached
  2  usage error, or \`claim\` found nothing to claim`,
  );

const idArgument = ["<id>", "the action id", parse.id] as const;

interface AddOptions {
  type: string;
  project?: string;
  target?: string;
  source?: string[];
  payload?: JsonObject;
  priority?: number;
  risk?: RiskLevel;
  confidence?: number;
  approvalRequired?: boolean;
  createdBy: string;
  correlationId?: string;
  node?: string;
  service?: string;
  parent?: bigint;
  rollback?: string;
  rollbackPayload?: JsonObject;
  idempotencyKey?: string;
  supersedes?: bigint;
}

program
  .command("add")
  .description("propose an action (EnqueueAction); the server's policy approves it at once or holds it in PENDING for approvals")
  .requiredOption("--type <type>", "action type, such as redeploy_service (required)")
  .option("--created-by <who>", "who proposes it, such as human:alice or agent:triage (required unless ACTIONQ_TOKEN or a client certificate names you)", "")
  .option("--project <project>", "project or tenant")
  .option("--target <ref>", "what the action acts on")
  .option("--source <ref>", "where the proposal came from (repeatable)", parse.collectText)
  .option("--payload <json>", "arguments for the worker, a JSON object", parse.jsonObject)
  .option("--priority <n>", "smaller is claimed first (default 0)", parse.int32)
  .addOption(new Option("--risk <level>", `risk level: ${parse.risk.names.join(", ")} (default safe)`).argParser(parse.risk.parse))
  .option("--confidence <x>", "the producer's confidence, from 0 to 1", parse.number)
  .option("--approval-required", "wait for an approval even when the risk needs none")
  .option("--correlation-id <id>", "ties related actions together")
  .option("--node <node>", "the node it targets")
  .option("--service <service>", "the service it targets")
  .option("--parent <id>", "make it a child of this action", parse.id)
  .option("--rollback <ref>", "the action type of the reverse action, if it must be undone")
  .option("--rollback-payload <json>", "the reverse action's payload, a JSON object (needs --rollback)", parse.jsonObject)
  .option("--supersedes <id>", "replace this PENDING or APPROVED action, which is cancelled", parse.id)
  .option("--idempotency-key <key>", "a retry with the same key returns the first action")
  .action(
    run(async (o: AddOptions) => {
      const response = await client().enqueueAction(
        {
          actionType: o.type,
          project: o.project,
          targetRef: o.target,
          sourceRefs: o.source,
          payload: o.payload,
          priority: o.priority,
          riskLevel: o.risk,
          confidence: o.confidence,
          approvalRequired: o.approvalRequired,
          createdBy: o.createdBy,
          correlationId: o.correlationId,
          node: o.node,
          service: o.service,
          parentId: o.parent,
          rollbackRef: o.rollback,
          rollbackPayload: o.rollbackPayload,
          idempotencyKey: o.idempotencyKey,
          supersedesId: o.supersedes,
        },
        UNARY,
      );
      await printDocument(messageJson(EnqueueActionResponseSchema, response, { created: false }));
    }),
  );

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
  .option("--limit <n>", "page size (server default 50, at most 1000)", parse.positive)
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
      await printDocument(messageJson(ListActionsResponseSchema, response, { actions: [], next_page_token: "" }));
    }),
  );

program
  .command("show")
  .description("one action and its whole event history (GetAction)")
  .argument(...idArgument)
  .action(
    run(async (id: bigint) => {
      const response = await client().getAction({ id }, UNARY);
      await printDocument(messageJson(GetActionResponseSchema, response, { events: [] }));
    }),
  );

program
  .command("history")
  .description("the story of one action for people: a line per event, oldest first, then its status now (GetAction)")
  .argument(...idArgument)
  .option("--json", "print the events as JSON Lines instead")
  .addHelpText(
    "after",
    `
Each line: the event's time, type and actor, then its facts: the policy's
decision (mode, version, rule, why), approvers towards the quorum, claim
attempts and workers, the executor's progress, the result or the failure.`,
  )
  .action(
    run(async (id: bigint, o: { json?: boolean }) => {
      const response = await client().getAction({ id }, UNARY);
      if (o.json) {
        for (const event of response.events) await printLine(messageJson(EventSchema, event));
        return;
      }
      await printText(historyLines(response.action!, response.events));
    }),
  );

program
  .command("claim")
  .description("claim the next claimable action (ClaimAction) and print it with its claim_token; exit 2 when there is none")
  .option("--worker <name>", "the worker's name, kept as claimed_by (required unless ACTIONQ_TOKEN or a client certificate names you)")
  .option("--type <type>", "only actions of this type (repeatable)", parse.collectText)
  .option("--project <project>", "only actions of this project (repeatable)", parse.collectText)
  .option("--lease <duration>", "how long the claim lasts, such as 300s or 5m (server default when unset)", parse.duration)
  .action(
    run(async (o: { worker: string; type?: string[]; project?: string[]; lease?: Duration }) => {
      const response = await client().claimAction({ worker: o.worker, actionTypes: o.type, projects: o.project, leaseDuration: o.lease }, UNARY);
      if (!response.claim) {
        await note("nothing to claim");
        return 2;
      }
      await printDocument(messageJson(ClaimSchema, response.claim));
    }),
  );

program
  .command("ack")
  .description("acknowledge a streamed claim (AckClaim)")
  .argument(...idArgument)
  .requiredOption("--token <token>", "the claim token (required)")
  .action(
    run(async (id: bigint, o: { token: string }) => {
      await printDocument(messageJson(AckClaimResponseSchema, await client().ackClaim({ id, claimToken: o.token }, UNARY)));
    }),
  );

program
  .command("extend")
  .description("move a claim's deadline to now plus the lease (ExtendClaim)")
  .argument(...idArgument)
  .requiredOption("--token <token>", "the claim token (required)")
  .option("--lease <duration>", "the new lease, such as 60s (the claim's original lease when unset)", parse.duration)
  .action(
    run(async (id: bigint, o: { token: string; lease?: Duration }) => {
      const response = await client().extendClaim({ id, claimToken: o.token, leaseDuration: o.lease }, UNARY);
      await printDocument(messageJson(ExtendClaimResponseSchema, response));
    }),
  );

program
  .command("complete")
  .description("finish a claimed action (CompleteAction)")
  .argument(...idArgument)
  .requiredOption("--token <token>", "the claim token (required)")
  .requiredOption("--result <ref>", "where the result is: a branch, a URL, an object key (required)")
  .action(
    run(async (id: bigint, o: { token: string; result: string }) => {
      const response = await client().completeAction({ id, claimToken: o.token, resultRef: o.result }, UNARY);
      await printDocument(messageJson(CompleteActionResponseSchema, response));
    }),
  );

program
  .command("fail")
  .description("give up a claimed action (FailAction)")
  .argument(...idArgument)
  .requiredOption("--token <token>", "the claim token (required)")
  .requiredOption("--reason <text>", "why, kept as failure_reason (required)")
  .action(
    run(async (id: bigint, o: { token: string; reason: string }) => {
      const response = await client().failAction({ id, claimToken: o.token, reason: o.reason }, UNARY);
      await printDocument(messageJson(FailActionResponseSchema, response));
    }),
  );

program
  .command("reject")
  .description("deny a PENDING action as approver, or, with --token, refuse a CLAIMED one as its validating worker (RejectAction)")
  .argument(...idArgument)
  .requiredOption("--reason <text>", "why, kept as failure_reason (required)")
  .option("--actor <who>", "the approver or worker rejecting it (required unless ACTIONQ_TOKEN or a client certificate names you)")
  .option("--token <token>", "the claim token, for a CLAIMED action")
  .action(
    run(async (id: bigint, o: { reason: string; actor: string; token?: string }) => {
      const response = await client().rejectAction({ id, reason: o.reason, actor: o.actor, claimToken: o.token }, UNARY);
      await printDocument(messageJson(RejectActionResponseSchema, response));
    }),
  );

program
  .command("cancel")
  .description("withdraw a PENDING, APPROVED or CLAIMED action (CancelAction)")
  .argument(...idArgument)
  .requiredOption("--reason <text>", "why, kept as failure_reason (required)")
  .option("--actor <who>", "who cancels, such as human:carol (required unless ACTIONQ_TOKEN or a client certificate names you)")
  .action(
    run(async (id: bigint, o: { reason: string; actor: string }) => {
      const response = await client().cancelAction({ id, reason: o.reason, actor: o.actor }, UNARY);
      await printDocument(messageJson(CancelActionResponseSchema, response));
    }),
  );

program
  .command("approve")
  .description("approve a PENDING action (ApproveAction); workers can claim it once approvals_required distinct approvers approved")
  .argument(...idArgument)
  .option("--approver <who>", "who approves, such as human:bob (required unless ACTIONQ_TOKEN or a client certificate names you)")
  .option("--note <text>", "why, kept on the approval's event")
  .action(
    run(async (id: bigint, o: { approver: string; note?: string }) => {
      const response = await client().approveAction({ id, approver: o.approver, note: o.note }, UNARY);
      await printDocument(messageJson(ApproveActionResponseSchema, response));
    }),
  );

program
  .command("sweep")
  .description("requeue now every claim whose lease ran out or whose delivery was never acknowledged, and reject every PENDING action whose approval expired (SweepClaims)")
  .option("--actor <who>", "recorded on the events (server:sweeper when unset)")
  .action(
    run(async (o: { actor?: string }) => {
      const response = await client().sweepClaims({ actor: o.actor }, UNARY);
      await printDocument(messageJson(SweepClaimsResponseSchema, response, { requeued_actions: [], expired_actions: [] }));
    }),
  );

program
  .command("rollback")
  .description("enqueue the reverse of a COMPLETED or FAILED action, from its rollback_ref and rollback_payload (RollbackAction)")
  .argument(...idArgument)
  .option("--actor <who>", "who asks for it, the new action's producer (required unless ACTIONQ_TOKEN or a client certificate names you)")
  .option("--reason <text>", "why, kept on the new action's action_enqueued event")
  .action(
    run(async (id: bigint, o: { actor: string; reason?: string }) => {
      const response = await client().rollbackAction({ id, actor: o.actor, reason: o.reason }, UNARY);
      await printDocument(messageJson(RollbackActionResponseSchema, response, { created: false }));
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
    command.error(`error: ${error.message}`, { exitCode: 2, code: "actionctl.scope" });
  }
}

withScopeOptions(
  program
    .command("pause")
    .description("stop claiming in one scope on every server, or stop the policy approving by itself (PauseClaims); pausing a paused scope returns the pause in force"),
)
  .option("--actor <who>", "who pauses, such as human:carol (required unless ACTIONQ_TOKEN or a client certificate names you)")
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
      await printDocument(messageJson(PauseClaimsResponseSchema, response, { created: false }));
    }),
  );

withScopeOptions(program.command("resume").description("lift a pause made by `pause` (ResumeClaims); exit 1 with PAUSE_NOT_FOUND when that scope is not paused"))
  .option("--actor <who>", "who resumes (required unless ACTIONQ_TOKEN or a client certificate names you)")
  .option("--reason <text>", "why, kept on the coordinator_resumed event")
  .addHelpText("after", "\nGive exactly one of --all, --type, --project, --auto-approval, as given to `pause`.")
  .action(
    run(async (o: parse.ScopeOptions & { actor: string; reason?: string }, command: Command) => {
      const scope = scopeOf(command, o);
      const response = await client().resumeClaims({ scope, actor: o.actor, reason: o.reason }, UNARY);
      await printDocument(messageJson(ResumeClaimsResponseSchema, response));
    }),
  );

program
  .command("stats")
  .description("counts by status and type, the claimable backlog and its oldest wait, the pauses in force and the policy version (GetQueueStats)")
  .action(
    run(async () => {
      const response = await client().getQueueStats({}, UNARY);
      await printDocument(messageJson(GetQueueStatsResponseSchema, response, { counts: [], claimable: "0", pauses: [], policy_version: "" }));
    }),
  );

const policy = program.command("policy").description("the approval policy the server applies: show it, or reload its file");

policy
  .command("show")
  .description("the policy in force with every default filled in, its version and its file (GetPolicy)")
  .action(
    run(async () => {
      const response = await client().getPolicy({}, UNARY);
      await printDocument(messageJson(GetPolicyResponseSchema, response, { source: "" }));
    }),
  );

policy
  .command("reload")
  .description("read the policy file again on the server that answers, as SIGHUP does (ReloadPolicy); an invalid file is refused and the policy in force stays")
  .option("--actor <who>", "who reloads, the actor of the policy_reloaded event (required unless ACTIONQ_TOKEN or a client certificate names you)")
  .action(
    run(async (o: { actor: string }) => {
      const response = await client().reloadPolicy({ actor: o.actor }, UNARY);
      await printDocument(messageJson(ReloadPolicyResponseSchema, response, { changed: false }));
    }),
  );

program
  .command("events")
  .description("read the event log in id order as JSON Lines (ListEvents), or --follow it live (WatchEvents)")
  .option("--after <id>", "only events with a larger id (default 0, the beginning)", parse.cursor)
  .option("--action <id>", "only events about this action", parse.id)
  .option("--type <type>", "only events of this type (repeatable)", parse.collectText)
  .option("--limit <n>", "stop after this many events", parse.positive)
  .option("--page-size <n>", "events per ListEvents call (at most 1000)", parse.positive, 100)
  .option("-f, --follow", "after the backlog, keep printing events as they are committed, until SIGINT or SIGTERM")
  .addHelpText(
    "after",
    `
Examples:
  actionctl events --action 42                   the history of action 42
  actionctl events --follow --after "$LAST_ID"   tail the log from a saved cursor`,
  )
  .action(run(async (o: EventsOptions) => (o.follow ? followEvents(client(), o) : listEvents(client(), o, UNARY))));

program
  .command("emit")
  .description("write a coordinator event, or a worker's progress note about the claim it holds, to the log (EmitEvent)")
  .addOption(new Option("--type <type>", "the event type (required)").choices(["coordinator_cycle", "coordinator_paused", "action_progress"]).makeOptionMandatory())
  .option("--actor <who>", "who emits, such as dispatcher:main (required unless ACTIONQ_TOKEN or a client certificate names you)")
  .option("--payload <json>", "details, a JSON object", parse.jsonObject)
  .option("--action <id>", "the action the event concerns (required for action_progress)", parse.id)
  .option("--token <token>", "for action_progress: the token of the action's current claim")
  .action(
    run(async (o: { type: string; actor: string; payload?: JsonObject; action?: bigint; token?: string }) => {
      const response = await client().emitEvent({ eventType: o.type, actor: o.actor, payload: o.payload, actionId: o.action, claimToken: o.token }, UNARY);
      await printDocument(messageJson(EmitEventResponseSchema, response));
    }),
  );

exitQuietlyOnClosedPipe();
await program.parseAsync();
