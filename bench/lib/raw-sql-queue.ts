// The raw-SQL limit: the same lifecycle as actionq (enqueue, claim with
// FOR UPDATE SKIP LOCKED, complete), each step one bare statement that also
// appends its event row (3 per item), on tables of its own in the bench
// schema. Every statement handles up to `batch` items. Nothing else: no
// policy, leases, acknowledgements, gapless cursor or RPC.
import { EventEmitter } from "node:events";
import pg from "pg";

export const JOB_TYPE = "bench_noop";

export function schemaSql(schema: string): string[] {
  const s = `"${schema}"`;
  return [
    `CREATE SCHEMA IF NOT EXISTS ${s}`,
    `CREATE TABLE ${s}.jobs (
      id bigserial PRIMARY KEY,
      job_type text NOT NULL,
      payload jsonb NOT NULL DEFAULT '{}',
      priority integer NOT NULL DEFAULT 0,
      status text NOT NULL,
      claimed_by text,
      claim_token uuid,
      claimed_at timestamptz,
      result_ref text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz)`,
    `CREATE INDEX jobs_ready ON ${s}.jobs (priority, id) WHERE status = 'ready'`,
    `CREATE TABLE ${s}.events (
      id bigserial PRIMARY KEY,
      job_id bigint NOT NULL,
      event_type text NOT NULL,
      payload jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE INDEX events_by_job ON ${s}.events (job_id, id)`,
    // Wakeups, one per statement, as actionq's triggers send them.
    `CREATE FUNCTION ${s}.notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_notify('raw_' || TG_TABLE_SCHEMA, 'w'); RETURN NULL; END $$`,
    `CREATE TRIGGER jobs_notify AFTER INSERT ON ${s}.jobs FOR EACH STATEMENT EXECUTE FUNCTION ${s}.notify_ready()`,
    `CREATE FUNCTION ${s}.notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_notify('raw_' || TG_TABLE_SCHEMA, 'e'); RETURN NULL; END $$`,
    `CREATE TRIGGER events_notify AFTER INSERT ON ${s}.events FOR EACH STATEMENT EXECUTE FUNCTION ${s}.notify_events()`,
  ];
}

const JobEnqueueMany = `
WITH j AS (
  INSERT INTO jobs (job_type, payload, status)
  SELECT $1, p, 'ready' FROM jsonb_array_elements($2::jsonb) AS p
  RETURNING id
)
INSERT INTO events (job_id, event_type) SELECT id, 'enqueued' FROM j`;

const JobClaimMany = `
WITH picked AS (
  SELECT id FROM jobs WHERE status = 'ready' ORDER BY priority, id LIMIT $1 FOR UPDATE SKIP LOCKED
),
c AS (
  UPDATE jobs j SET status = 'claimed', claimed_by = $2, claim_token = gen_random_uuid(), claimed_at = now(), updated_at = now()
  FROM picked WHERE j.id = picked.id
  RETURNING j.id, j.claim_token, j.payload
),
e AS (
  INSERT INTO events (job_id, event_type, payload) SELECT id, 'claimed', jsonb_build_object('worker', $2::text) FROM c
)
SELECT id::text, claim_token::text, payload FROM c`;

const JobCompleteMany = `
WITH c AS (
  UPDATE jobs j SET status = 'completed', result_ref = 'bench://' || j.id, finished_at = now(), updated_at = now(),
    claim_token = NULL
  FROM unnest($1::bigint[], $2::uuid[]) AS i(id, token)
  WHERE j.id = i.id AND j.status = 'claimed' AND j.claim_token = i.token
  RETURNING j.id
)
INSERT INTO events (job_id, event_type) SELECT id, 'completed' FROM c`;

const EventReadAfter = `
SELECT id::text, (extract(epoch FROM created_at) * 1000)::float8 AS created_ms FROM events WHERE id > $1 ORDER BY id LIMIT 1000`;

export interface ClaimedJob {
  id: string;
  claim_token: string;
  payload: Record<string, unknown>;
}

export function connectionConfig(url: string, schema: string): pg.ClientConfig {
  return { connectionString: url, application_name: "raw-sql-bench", options: `-c search_path="${schema}"` };
}

export async function openClient(url: string, schema: string): Promise<pg.Client> {
  const client = new pg.Client(connectionConfig(url, schema));
  client.on("error", () => {});
  await client.connect();
  return client;
}

export async function enqueue(client: pg.Client, payloads: object[]): Promise<void> {
  await client.query(JobEnqueueMany, [JOB_TYPE, JSON.stringify(payloads)]);
}

export async function claim(client: pg.Client, limit: number, worker: string): Promise<ClaimedJob[]> {
  const { rows } = await client.query<ClaimedJob>(JobClaimMany, [limit, worker]);
  return rows;
}

export async function complete(client: pg.Client, jobs: ClaimedJob[]): Promise<void> {
  await client.query(JobCompleteMany, [jobs.map((job) => job.id), jobs.map((job) => job.claim_token)]);
}

export async function readEventsAfter(client: pg.Client, afterId: string): Promise<{ id: string; created_ms: number }[]> {
  const { rows } = await client.query<{ id: string; created_ms: number }>(EventReadAfter, [afterId]);
  return rows;
}

/** One LISTEN connection that turns the schema's notifications into
 * events: 'ready' (jobs enqueued) and 'events' (event rows committed). */
export class Wakeups extends EventEmitter {
  /** Counts 'ready' notifications, so that one arriving between an empty
   * claim and the wait is not missed. */
  readyCount = 0;

  private constructor(private readonly client: pg.Client) {
    super();
    this.setMaxListeners(0);
  }

  static async open(url: string, schema: string): Promise<Wakeups> {
    const client = await openClient(url, schema);
    const wakeups = new Wakeups(client);
    client.on("notification", (message) => {
      if (message.payload === "e") wakeups.emit("events");
      else {
        wakeups.readyCount++;
        wakeups.emit("ready");
      }
    });
    await client.query(`LISTEN "raw_${schema}"`);
    return wakeups;
  }

  /** Resolves at the next 'ready' notification after the `seen`-th, or
   * after `timeoutMs`. */
  nextReady(seen: number, timeoutMs: number): Promise<void> {
    if (this.readyCount !== seen) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.off("ready", done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.on("ready", done);
    });
  }

  get backendClient(): pg.Client {
    return this.client;
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => {});
  }
}
