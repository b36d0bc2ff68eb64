// `actionctl export --to-dir ROOT [--follow]`: actionq written out in the
// old queue's layout. A whole export reads the event log up to a point, then
// every action, and writes each document and a sorted history.log; --follow
// then applies WatchEvents batch by batch, saving its cursor after each, and
// reconnects as `events --follow` does.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Action, Event } from "../../../gen/actionq/v1/action_pb.js";
import { type ActionQueueClient, UNARY } from "../context.js";
import { lasting } from "../errors.js";
import { note } from "../output.js";
import { stopOnSignals } from "../signals.js";
import { Backoff, type Reconnecting, followWatch, problemOf } from "../watch-follow.js";
import { HISTORY_EVENT_TYPES, type OutLine, type StatusBook, bookFromHistory, compareLines, eventLines, parseHistory } from "./history.js";
import { DIRECTORIES, type Directory, directoryOf, documentOf } from "./layout.js";
import { TreeWriter } from "./writer.js";

const PAGE = 500;
const FETCH_CONCURRENCY = 16;

/** A document written by a follower. */
export interface Move {
  eventId: bigint;
  id: bigint;
  externalId: string;
  path: string;
}

export interface ExportSummary {
  root: string;
  actions: number;
  by_directory: Record<Directory, number>;
  history_lines: number;
  after_event_id: string;
}

export interface FollowSettings extends Reconnecting {
  /** Told of each document written while following. */
  onMove(move: Move): Promise<void>;
  /** Told of the whole export written before following (none on a resume). */
  onExported(summary: ExportSummary): Promise<void>;
}

class Exporter {
  readonly writer: TreeWriter;
  book: StatusBook = new Map();
  afterEventId = 0n;
  historyBytes = 0;

  constructor(
    readonly actionq: ActionQueueClient,
    root: string,
    readonly server: string,
  ) {
    this.writer = new TreeWriter(root);
  }

  /** The whole tree. The events are read before the actions, so that every
   * action they name is listed; an action that moved since is written as it
   * is now, and a follower replays the events after the cursor anyway. */
  async exportAll(): Promise<ExportSummary> {
    await this.writer.prepare();
    const events: Event[] = [];
    for (let afterId = 0n; ; ) {
      const page = await this.actionq.listEvents({ afterId, eventTypes: HISTORY_EVENT_TYPES, pageSize: PAGE }, UNARY);
      if (page.events.length === 0) break;
      events.push(...page.events);
      if (page.nextAfterId <= afterId) throw new ConnectError(`next_after_id did not advance past ${afterId}`, Code.Internal);
      afterId = page.nextAfterId;
    }
    const actions = new Map<bigint, Action>();
    for (let pageToken = ""; ; ) {
      const page = await this.actionq.listActions({ pageSize: PAGE, pageToken }, UNARY);
      for (const action of page.actions) actions.set(action.id, action);
      if (!page.nextPageToken) break;
      pageToken = page.nextPageToken;
    }

    const book: StatusBook = new Map();
    const seqs = new Map<string, number>();
    const lines: OutLine[] = [];
    for (const event of events) {
      // Events of actions since removed by retention have no document to go with.
      const externalId = actions.get(event.actionId)?.externalId;
      if (!externalId) continue;
      lines.push(
        ...eventLines(event, externalId, book, () => {
          const seq = seqs.get(externalId) ?? 0;
          seqs.set(externalId, seq + 1);
          return seq;
        }),
      );
    }
    lines.sort(compareLines);

    const byDirectory = Object.fromEntries(DIRECTORIES.map((d) => [d, 0])) as Record<Directory, number>;
    for (const action of [...actions.values()].sort((a, b) => Number(a.id - b.id))) {
      const document = documentOf(action);
      await this.writer.writeDocument(document);
      byDirectory[directoryOf(document.status)]++;
    }
    const afterEventId = events.at(-1)?.id ?? 0n;
    const bytes = await this.writer.replaceHistory(lines.map((line) => line.text));
    await this.writer.saveCursor({ server: this.server, after_event_id: `${afterEventId}`, history_bytes: bytes });
    this.book = book;
    this.afterEventId = afterEventId;
    this.historyBytes = bytes;
    return { root: this.writer.root, actions: actions.size, by_directory: byDirectory, history_lines: lines.length, after_event_id: `${afterEventId}` };
  }

  /** Picks up from the cursor a follower left: history.log cut back to what
   * the cursor counts (a batch whose cursor was never saved is applied
   * again). false when there is nothing to resume. */
  async resume(): Promise<boolean> {
    const cursor = await this.writer.readCursor();
    if (!cursor || cursor.server !== this.server) return false;
    if (!(await this.writer.cutHistoryTo(cursor.history_bytes))) return false;
    await this.writer.prepare();
    this.book = bookFromHistory(parseHistory(await this.writer.readHistory()));
    this.afterEventId = BigInt(cursor.after_event_id);
    this.historyBytes = cursor.history_bytes;
    return true;
  }

  /** One batch of the watch: documents, then lines, then the cursor. Where
   * it stands moves only once all three are written. */
  async apply(events: Event[], cursor: bigint): Promise<Move[]> {
    const actions = new Map<bigint, Action>();
    const ids = [...new Set(events.map((event) => event.actionId).filter((id) => id !== 0n))];
    // A few calls at a time: a follower catching up after a restart reads
    // hundreds of actions per batch, and one by one each waits a round trip.
    for (let start = 0; start < ids.length; start += FETCH_CONCURRENCY) {
      await Promise.all(
        ids.slice(start, start + FETCH_CONCURRENCY).map(async (id) => {
          try {
            const { action } = await this.actionq.getAction({ id }, UNARY);
            if (action) actions.set(id, action);
          } catch (error) {
            if (ConnectError.from(error).code !== Code.NotFound) throw error;
          }
        }),
      );
    }
    const book = new Map(this.book);
    const lines: OutLine[] = [];
    const moves: Move[] = [];
    for (const event of events) {
      const action = actions.get(event.actionId);
      if (!action) continue;
      // An action this follower never saw a line of (carried lines not in
      // its format): where its document lies says where it stood.
      if (!book.has(action.externalId)) {
        const found = await this.writer.locate(action.externalId);
        if (found) book.set(action.externalId, found);
      }
      lines.push(...eventLines(event, action.externalId, book, () => 0));
    }
    // Each action's document once, as it is now, named by its first event.
    const written = new Set<bigint>();
    for (const event of events) {
      const action = actions.get(event.actionId);
      if (!action || written.has(action.id)) continue;
      written.add(action.id);
      const path = await this.writer.writeDocument(documentOf(action));
      moves.push({ eventId: event.id, id: action.id, externalId: action.externalId, path });
    }
    const bytes = await this.writer.appendHistory(
      lines.map((line) => line.text),
      this.historyBytes,
    );
    await this.writer.saveCursor({ server: this.server, after_event_id: `${cursor}`, history_bytes: bytes });
    this.book = book;
    this.historyBytes = bytes;
    this.afterEventId = cursor;
    return moves;
  }

  /** A heartbeat past the last event: nothing to write but the cursor. */
  async advance(cursor: bigint): Promise<void> {
    if (cursor <= this.afterEventId) return;
    await this.writer.saveCursor({ server: this.server, after_event_id: `${cursor}`, history_bytes: this.historyBytes });
    this.afterEventId = cursor;
  }
}

/** `export` without --follow: the whole tree, once. */
export async function exportOnce(actionq: ActionQueueClient, root: string, server: string): Promise<ExportSummary> {
  return new Exporter(actionq, root, server).exportAll();
}

/** `export --follow`: resumes from the cursor when it is this server's,
 * else exports the whole tree first; then follows until SIGINT (130) or
 * SIGTERM (0), reconnecting after 0.5 s, 1 s, 2 s... up to 10 s. */
export async function exportFollow(actionq: ActionQueueClient, root: string, settings: FollowSettings): Promise<number> {
  const exporter = new Exporter(actionq, root, settings.target.address);
  const stop = stopOnSignals();
  // A failure to write the tree is not healed by reconnecting.
  const isLasting = async (error: unknown) => !(error instanceof ConnectError) || (await lasting(error, settings.target));
  try {
    // A follower started before its server (at boot, say) waits for it as
    // it would after a restart.
    const backoff = new Backoff(settings.minDelayMs, settings.maxDelayMs);
    for (;;) {
      try {
        if (await exporter.resume()) await note(`resuming the export into ${root} after event ${exporter.afterEventId}`);
        else await settings.onExported(await exporter.exportAll());
        break;
      } catch (error) {
        if (stop.signal.aborted) return stop.exitCode();
        if (await isLasting(error)) throw error;
        await note(`could not export from ${settings.target.address} (${problemOf(error)}); trying again in ${backoff.delayMs / 1000} s`);
        await backoff.wait(stop.signal);
        if (stop.signal.aborted) return stop.exitCode();
      }
    }
    await followWatch(actionq, {
      target: settings.target,
      minDelayMs: settings.minDelayMs,
      maxDelayMs: settings.maxDelayMs,
      signal: stop.signal,
      lasting: isLasting,
      request: () => ({ afterId: exporter.afterEventId, eventTypes: HISTORY_EVENT_TYPES, maxBatch: PAGE }),
      position: () => `after event ${exporter.afterEventId}`,
      async onMessage(events, cursor) {
        if (events.length === 0) await exporter.advance(cursor);
        else for (const move of await exporter.apply(events, cursor > 0n ? cursor : events.at(-1)!.id)) await settings.onMove(move);
        return false;
      },
    });
    return stop.exitCode();
  } finally {
    stop.dispose();
  }
}
