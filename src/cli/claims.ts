// The worker's side of actionctl: `claim` (saying which pause holds claims
// back when there is nothing to claim), `stream-claims`, and the batch
// commands that read requests as JSON Lines.
import { readFile } from "node:fs/promises";
import { type DescMessage, type JsonObject, type JsonValue, type MessageShape, fromJson } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { ClaimSchema } from "../../gen/actionq/v1/action_pb.js";
import { type GetQueueStatsResponse, type Pause, PauseKind } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { ActionStatus } from "../../gen/actionq/v1/action_pb.js";
import { type ActionQueueClient, UNARY, mode, target } from "./context.js";
import { stopOnSignals } from "./signals.js";
import { EXIT } from "./errors.js";
import { type OutputMode, messageJson, note, print, printError, printLine, printText } from "./output.js";
import { claimSummary, pauseText, time } from "./views.js";

export interface ClaimOptions {
  worker: string;
  type?: string[];
  project?: string[];
  lease?: Duration;
}

/** The pauses that can explain an empty claim with these filters: a pause
 * of everything; a type pause of a type asked for (or, with no type asked
 * for, of a type that has approved actions); a project pause of a project
 * asked for, or any when none was. */
export function pausesHolding(stats: GetQueueStatsResponse, o: Pick<ClaimOptions, "type" | "project">): Pause[] {
  const approvedTypes = new Set(stats.counts.filter((c) => c.status === ActionStatus.APPROVED && c.count > 0n).map((c) => c.actionType));
  // The widest first: lifting a type pause does not help while everything is paused.
  const rank = (pause: Pause) => [PauseKind.ALL, PauseKind.ACTION_TYPE, PauseKind.PROJECT].indexOf(pause.scope?.kind ?? PauseKind.UNSPECIFIED);
  const holding = stats.pauses.filter(({ scope }) => {
    switch (scope?.kind) {
      case PauseKind.ALL:
        return true;
      case PauseKind.ACTION_TYPE:
        return o.type?.length ? o.type.includes(scope.value) : approvedTypes.has(scope.value);
      case PauseKind.PROJECT:
        return o.project?.length ? o.project.includes(scope.value) : true;
      default:
        return false;
    }
  });
  return holding.sort((a, b) => rank(a) - rank(b));
}

/** ClaimAction; with nothing claimable, exit 2 and one line on stderr (JSON
 * in the JSON modes) naming the pauses that hold claims back, if any. */
export async function claim(actionq: ActionQueueClient, o: ClaimOptions): Promise<number> {
  const response = await actionq.claimAction({ worker: o.worker, actionTypes: o.type, projects: o.project, leaseDuration: o.lease }, UNARY);
  if (response.claim) {
    const claimed = response.claim;
    await print(mode(), { json: messageJson(ClaimSchema, claimed), table: () => claimSummary(claimed) });
    return EXIT.ok;
  }
  // Reading the pauses needs the viewer role; without it, say less.
  const stats = await actionq.getQueueStats({}, UNARY).catch(() => undefined);
  const holding = stats ? pausesHolding(stats, o) : [];
  // Windows holding approved actions (of any type: the stats do not say
  // which), named when no pause explains the empty claim.
  const windows = holding.length ? [] : (stats?.changeWindows?.windows ?? []).filter((w) => w.closed && w.held > 0n);
  const message = holding.length
    ? `nothing to claim: ${holding.map(pauseText).join("; ")}`
    : windows.length
      ? `nothing to claim: ${windows.map((w) => `${w.held} approved action(s) held by change window ${w.name} until ${time(w.nextChangeTime)}`).join("; ")}`
      : "nothing to claim";
  const hint = holding.length
    ? `\`actionctl resume ${resumeFlags(holding[0]!)}\` lifts ${holding.length > 1 ? "the first" : "it"}`
    : windows.length
      ? "they become claimable when the window opens; an operator may `actionctl break-glass ID --reason TEXT` to let one run now"
      : "no approved action matches (see `actionctl ls --status approved`)";
  const first = holding[0];
  const metadata: Record<string, string> = first
    ? { pause_kind: (PauseKind[first.scope!.kind] ?? "").toLowerCase(), pause_value: first.scope!.value, paused_by: first.pausedBy, pause_reason: first.reason }
    : windows[0]
      ? { window: windows[0].name, until: time(windows[0].nextChangeTime) }
      : {};
  const document = {
    error: {
      code: "not_found",
      message,
      reason: first ? "CLAIMS_PAUSED" : windows.length ? "HELD_BY_WINDOW" : "NOTHING_TO_CLAIM",
      metadata,
      hint,
    },
  };
  await printError(mode(), document, `${message}; ${hint}`);
  return EXIT.usage;
}

function resumeFlags(pause: Pause): string {
  switch (pause.scope?.kind) {
    case PauseKind.ACTION_TYPE:
      return `--type ${pause.scope.value}`;
    case PauseKind.PROJECT:
      return `--project ${pause.scope.value}`;
    default:
      return "--all";
  }
}

export interface StreamOptions extends ClaimOptions {
  maxInFlight?: number;
}

/** StreamClaims: prints each claim as it comes and acknowledges it at once
 * (the printed token then finishes it), until a signal or a drain. */
export async function streamClaims(actionq: ActionQueueClient, o: StreamOptions, outputMode: OutputMode): Promise<number> {
  const stop = stopOnSignals();
  try {
    const stream = actionq.streamClaims(
      { worker: o.worker, actionTypes: o.type, projects: o.project, leaseDuration: o.lease, maxInFlight: o.maxInFlight },
      { signal: stop.signal },
    );
    for await (const message of stream) {
      if (message.kind.case === "claim") {
        const streamed = message.kind.value;
        await actionq.ackClaim({ id: streamed.action!.id, claimToken: streamed.claimToken }, UNARY);
        if (outputMode === "table") await printText([...claimSummary(streamed), ""]);
        else await printLine(messageJson(ClaimSchema, streamed));
      } else if (message.kind.case === "drain") {
        await note(
          `the server at ${target().address} is draining (${message.kind.value.reason}); the claims printed stay valid: finish them and run stream-claims again`,
        );
        return EXIT.ok;
      }
    }
    return stop.exitCode();
  } catch (error) {
    if (stop.signal.aborted) return stop.exitCode();
    throw error;
  } finally {
    stop.dispose();
  }
}

/** Requests for a batch call from a file or stdin (`-`): JSON Lines, or one
 * JSON array, each a request in proto JSON (`{"action_type": ...}`). */
export async function readRequests<Desc extends DescMessage>(schema: Desc, file: string): Promise<MessageShape<Desc>[]> {
  const text = file === "-" ? await readStdin() : await readFile(file, "utf8");
  let values: JsonValue[];
  try {
    const trimmed = text.trim();
    values = trimmed.startsWith("[")
      ? (JSON.parse(trimmed) as JsonValue[])
      : trimmed
          .split("\n")
          .filter((line) => line.trim() !== "")
          .map((line) => JSON.parse(line) as JsonValue);
  } catch (error) {
    throw new ConnectError(`${file}: not JSON Lines nor a JSON array (${(error as Error).message})`, 3);
  }
  return values.map((value, i) => {
    try {
      return fromJson(schema, value as JsonObject);
    } catch (error) {
      throw new ConnectError(`${file}: request ${i + 1}: ${(error as Error).message}`, 3);
    }
  });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
