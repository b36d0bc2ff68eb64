// actionctl's commands for workers: claim (one, or a stream), acknowledge,
// extend, complete (one or many), fail, and emit progress or coordinator
// events.
import type { JsonObject } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { type Command, Option } from "commander";
import { ActionStatus } from "../../gen/actionq/v1/action_pb.js";
import {
  AckClaimResponseSchema,
  CompleteActionRequestSchema,
  CompleteActionResponseSchema,
  CompleteActionsResponseSchema,
  EmitEventResponseSchema,
  ExtendClaimResponseSchema,
  FailActionResponseSchema,
} from "../../gen/actionq/v1/action_queue_service_pb.js";
import { type ClaimOptions, type StreamOptions, claim, readRequests, streamClaims } from "./claims.js";
import { IDENTITY_NOTE, STREAM_PINGS, UNARY, client, idArgument, mode, printAction, run } from "./context.js";
import { EXIT } from "./errors.js";
import { messageJson, print } from "./output.js";
import * as parse from "./parse.js";
import { table } from "./table.js";
import { EVENT_HEADER, eventLine, itemErrorText } from "./views.js";

/** Who claims and what it takes: the same for one claim and a stream. */
function claimerOptions(command: Command): Command {
  return command
    .option("--worker <name>", `the worker's name, kept as claimed_by ${IDENTITY_NOTE}`)
    .option("--type <type>", "only actions of this type (repeatable)", parse.collectText)
    .option("--project <project>", "only actions of this project (repeatable)", parse.collectText);
}

export function addWorkerCommands(program: Command): void {
  claimerOptions(program.command("claim"))
    .description(
      "claim the next claimable action (ClaimAction) and print it with its claim_token; when there is none, exit 2 with one line on stderr (JSON in the JSON modes, reason NOTHING_TO_CLAIM, CLAIMS_PAUSED naming the pause that holds claims back, or HELD_BY_WINDOW naming the change windows that hold approved actions)",
    )
    .option("--lease <duration>", "how long the claim lasts, such as 300s or 5m (server default when unset)", parse.duration)
    .action(run(async (o: ClaimOptions) => claim(client(), o)));

  claimerOptions(program.command("stream-claims"))
    .description(
      "hold a claim stream open (StreamClaims): print each claim as it comes, acknowledged at once, until SIGINT (exit 130), SIGTERM (exit 0) or the server drains",
    )
    .option("--lease <duration>", "how long each claim lasts (server default when unset)", parse.duration)
    .option("--max-in-flight <n>", "claims held unfinished at once (default 1): finish one with its token and the next comes", parse.positive)
    .action(run(async (o: StreamOptions) => streamClaims(client(STREAM_PINGS), o, mode() === "json" ? "jsonl" : mode())));

  program
    .command("ack")
    .description("acknowledge a streamed claim (AckClaim)")
    .argument(...idArgument)
    .requiredOption("--token <token>", "the claim token (required)")
    .action(
      run(async (id: bigint, o: { token: string }) => {
        const response = await client().ackClaim({ id, claimToken: o.token }, UNARY);
        await printAction(messageJson(AckClaimResponseSchema, response), response.action, "acknowledged");
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
        await printAction(messageJson(ExtendClaimResponseSchema, response), response.action, "extended");
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
        await printAction(messageJson(CompleteActionResponseSchema, response), response.action, "completed");
      }),
    );

  program
    .command("complete-many")
    .description("complete many claims in one call (CompleteActions); exit 1 when any was refused")
    .argument("<file>", 'JSON Lines (or one JSON array) of {"id","claim_token","result_ref"}; - reads stdin')
    .action(
      run(async (file: string) => {
        const requests = await readRequests(CompleteActionRequestSchema, file);
        const response = await client().completeActions({ requests }, UNARY);
        const rows = response.results.map((result, i) => ({ i, result, id: requests[i]!.id }));
        const json = messageJson(CompleteActionsResponseSchema, response, { results: [] });
        await print(mode(), {
          json,
          records: () => json.results as JsonObject[],
          table: () =>
            table(rows, [
              { header: "ID", cell: ({ id }) => `${id}`, right: true },
              { header: "OUTCOME", cell: ({ result }) => (result.result.case === "action" ? "completed" : itemErrorText(result.result.value!)), max: 100 },
            ]),
        });
        return response.results.some((result) => result.result.case === "error") ? EXIT.refused : EXIT.ok;
      }),
    );

  program
    .command("fail")
    .description("end a claim in failure (FailAction): FAILED, or with --retryable back to APPROVED for another attempt while it has attempts left")
    .argument(...idArgument)
    .requiredOption("--token <token>", "the claim token (required)")
    .requiredOption("--reason <text>", "why, kept as last_error, and as failure_reason when it ends FAILED (required)")
    .option("--retryable", "the failure is transient: run it again after a backoff if failures < max_attempts")
    .addOption(
      new Option("--retry-delay <duration>", "wait this long before the retry instead of the server's backoff, such as 30s (implies --retryable)")
        .argParser(parse.duration)
        .implies({ retryable: true }),
    )
    .action(
      run(async (id: bigint, o: { token: string; reason: string; retryable?: boolean; retryDelay?: Duration }) => {
        const response = await client().failAction({ id, claimToken: o.token, reason: o.reason, retryable: o.retryable, retryDelay: o.retryDelay }, UNARY);
        const retrying = response.action?.status === ActionStatus.APPROVED;
        await printAction(messageJson(FailActionResponseSchema, response), response.action, retrying ? "failed; a retry is scheduled" : "failed");
      }),
    );

  program
    .command("emit")
    .description("write a coordinator event, or a worker's progress note about the claim it holds, to the log (EmitEvent)")
    .addOption(
      new Option("--type <type>", "the event type (required)").choices(["coordinator_cycle", "coordinator_paused", "action_progress"]).makeOptionMandatory(),
    )
    .option("--actor <who>", `who emits, such as dispatcher:main ${IDENTITY_NOTE}`)
    .option("--payload <json>", "details, a JSON object", parse.jsonObject)
    .option("--action <id>", "the action the event concerns (required for action_progress)", parse.id)
    .option("--token <token>", "for action_progress: the token of the action's current claim")
    .action(
      run(async (o: { type: string; actor: string; payload?: JsonObject; action?: bigint; token?: string }) => {
        const response = await client().emitEvent({ eventType: o.type, actor: o.actor, payload: o.payload, actionId: o.action, claimToken: o.token }, UNARY);
        await print(mode(), { json: messageJson(EmitEventResponseSchema, response), table: () => [EVENT_HEADER, eventLine(response.event!)] });
      }),
    );
}
