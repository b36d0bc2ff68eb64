// Helpers shared by the safety-model suites (policy, approvals, pauses,
// rollback): pauses, queue stats and the policy as the wire has them,
// and policy files in temporary directories.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestServer } from "./harness.js";
import { type Json, type WireEvent, type WireStruct, type WireTimestamp, fromStruct } from "./wire.js";

export interface WirePause {
  scope: { kind: string; value: string };
  pausedBy: string;
  reason: string;
  createTime: WireTimestamp | null;
}

export interface QueueStats {
  counts: { status: string; actionType: string; count: string }[];
  claimable: string;
  oldestClaimableAge: { seconds: string; nanos: number } | null;
  pauses: WirePause[];
  policyVersion: string;
}

export interface PolicyResponse {
  policyVersion: string;
  source: string;
  policy: WireStruct | null;
}

export const RISK = {
  safe: "RISK_LEVEL_SAFE",
  guarded: "RISK_LEVEL_GUARDED",
  dangerous: "RISK_LEVEL_DANGEROUS",
} as const;

/** A name no other test (or suite) uses. */
export function unique(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString("hex")}`;
}

export async function getPolicy(t: TestServer): Promise<{ policyVersion: string; source: string; policy: { [key: string]: Json } }> {
  const res = await t.grpc.unary<PolicyResponse>("GetPolicy", {});
  return { policyVersion: res.policyVersion, source: res.source, policy: fromStruct(res.policy) };
}

export async function queueStats(t: TestServer): Promise<QueueStats> {
  return t.grpc.unary<QueueStats>("GetQueueStats", {});
}

/** The `policy` object of an action's action_enqueued event. */
export function enqueuedPolicy(events: WireEvent[]): { [key: string]: Json } {
  const enqueued = events.find((e) => e.eventType === "action_enqueued");
  if (!enqueued) throw new Error("no action_enqueued event");
  const policy = fromStruct(enqueued.payload).policy;
  if (!policy || typeof policy !== "object" || Array.isArray(policy))
    throw new Error(`action_enqueued has no policy object: ${JSON.stringify(fromStruct(enqueued.payload))}`);
  return policy;
}

export const eventTypes = (events: WireEvent[]) => events.map((e) => e.eventType);

const policyDirs: string[] = [];

/** Writes a policy file (YAML text, or an object written as JSON) into a
 * fresh temporary directory and returns its path. */
export async function writePolicy(content: string | Record<string, unknown>, name?: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-policy-"));
  policyDirs.push(dir);
  const file = path.join(dir, name ?? (typeof content === "string" ? "policy.yaml" : "policy.json"));
  await rewritePolicy(file, content);
  return file;
}

export async function rewritePolicy(file: string, content: string | Record<string, unknown>): Promise<void> {
  await writeFile(file, typeof content === "string" ? content : JSON.stringify(content, null, 2));
}

export async function removePolicyDirs(): Promise<void> {
  for (const dir of policyDirs.splice(0)) await rm(dir, { recursive: true, force: true });
}

export function durationMs(d: { seconds: string; nanos: number } | null | undefined): number {
  if (!d) throw new Error("duration is unset");
  return Number(d.seconds) * 1000 + d.nanos / 1e6;
}
