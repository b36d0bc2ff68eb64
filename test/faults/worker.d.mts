// Types for worker.mjs, so the TypeScript scenarios can run it in-process.
import type * as grpc from "@grpc/grpc-js";

export interface ExecutionRecord {
  ev: "claim" | "start" | "done" | "failed" | "refused" | "ack_refused" | "held_unacked" | "drain" | "stream_silent";
  worker: string;
  pid: number;
  t: number;
  /** On done, failed and refused: when the execution itself ended (before its outcome was reported). */
  worked?: number;
  id?: string;
  attempt?: number;
  token?: string;
  cause?: string;
  code?: number;
  details?: string;
}

export interface WorkerOptions {
  name: string;
  addresses: string[];
  actionTypes?: string[];
  maxInFlight?: number;
  leaseSeconds?: number;
  workMs?: number;
  silenceMs?: number;
  keepaliveMs?: number;
  ackLimit?: number;
  hang?: boolean;
  record: (record: ExecutionRecord) => void;
}

export interface WorkerStats {
  streams: number;
  claims: number;
  executed: number;
  completed: number;
  refused: number;
  ackRefused: number;
  failedOnPurpose: number;
  drains: Record<string, number>;
  retriedCalls: number;
}

export declare class Worker {
  constructor(options: WorkerOptions);
  readonly stats: WorkerStats;
  start(): this;
  stop(timeoutMs?: number): Promise<void>;
}

export declare function createClient(address: string, keepaliveMs?: number): grpc.Client & Record<string, (...args: unknown[]) => unknown>;
export declare function unary<T = Record<string, unknown>>(
  client: grpc.Client,
  method: string,
  request: Record<string, unknown>,
  timeoutMs?: number,
): Promise<T>;
