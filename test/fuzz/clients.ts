// The fuzz suite's clients, each reducing a call to one outcome: the status
// code the server answered with (gRPC's, or Connect's in JSON), the HTTP
// status when there is no code, or what went wrong on the way ("hung" when
// nothing came back before the deadline). Every call carries the suite's
// `headers` (credentials, once the server wants them) and a deadline.
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import * as grpc from "@grpc/grpc-js";

/** No call may take longer; a call that does has hung. Generous: the
 * whole suite shares two cores, and a refused multi-megabyte body alone
 * took 5 s there once, while a real hang never answers at all. */
const DEADLINE_MS = 15_000;

export interface Outcome {
  /** "ok", a gRPC code in Connect's spelling ("invalid_argument"),
   * "http_415", "reset_8", "client_reset", "hung", ... */
  code: string;
  detail: string;
}

/** gRPC's codes by number, in Connect's spelling. */
const GRPC_CODES = [
  ...["ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted"],
  ...["failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"],
];

function grpcCodeName(code: number | string | undefined): string {
  const n = Number(code);
  return GRPC_CODES[n] ?? `grpc_status_${String(code)}`;
}

/** The statuses a server may answer any request with. */
export const PROPER = new Set([
  "ok",
  "invalid_argument",
  "not_found",
  "failed_precondition",
  "already_exists",
  "resource_exhausted",
  "permission_denied",
  "unauthenticated",
  "out_of_range",
]);

/** A gRPC length-prefixed message (or Connect envelope). */
export function envelope(flags: number, data: Uint8Array, declaredLength = data.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([head, data]);
}

/** The first complete envelope in `data`, if there is one. */
function firstEnvelope(data: Buffer): { flags: number; body: Buffer } | undefined {
  if (data.length < 5) return undefined;
  const length = data.readUInt32BE(1);
  if (data.length < 5 + length) return undefined;
  return { flags: data[0]!, body: data.subarray(5, 5 + length) };
}

function short(text: string, max = 160): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export interface HttpCall {
  method?: string;
  path: string;
  headers: Record<string, string | string[]>;
  body: Uint8Array;
  /** A Connect server stream: answered once its first envelope is in. */
  stream?: boolean;
}

interface HttpAnswer {
  status: number;
  /** Response headers and trailers. */
  headers: Record<string, unknown>;
  body: Buffer;
}

/** The outcome of an HTTP answer: gRPC's status when there is one (in
 * headers, trailers or a gRPC-Web trailer frame), else Connect's JSON
 * error code, else the HTTP status. */
function httpOutcome(answer: HttpAnswer, stream: boolean): Outcome {
  const grpcStatus = answer.headers["grpc-status"];
  if (grpcStatus !== undefined) return { code: grpcCodeName(String(grpcStatus)), detail: short(String(answer.headers["grpc-message"] ?? "")) };
  const type = String(answer.headers["content-type"] ?? "");
  if (type.startsWith("application/grpc-web")) {
    const body = type.includes("text") ? Buffer.from(answer.body.toString("latin1"), "base64") : answer.body;
    return grpcWebOutcome(body, answer.status);
  }
  const text = answer.body.toString("utf8");
  if (stream && answer.status === 200) {
    const first = firstEnvelope(answer.body);
    if (!first) return { code: "stream_without_message", detail: short(text) };
    if ((first.flags & 0x02) === 0) return { code: "ok", detail: "first message" };
    const end = parseJson(first.body.toString("utf8")) as { error?: { code?: string; message?: string } } | undefined;
    if (!end) return { code: "bad_end_stream", detail: short(first.body.toString("utf8")) };
    return end.error ? { code: String(end.error.code), detail: short(String(end.error.message)) } : { code: "ok", detail: "ended" };
  }
  if (answer.status === 200) return { code: "ok", detail: "" };
  const error = parseJson(text) as { code?: string; message?: string } | undefined;
  if (error && typeof error.code === "string") return { code: error.code, detail: short(`${answer.status} ${String(error.message)}`) };
  return { code: `http_${answer.status}`, detail: short(text) };
}

/** An HTTP/1.1 answer read so far: its outcome once it is complete (or,
 * with `closed`, whatever there is). A 200 is complete at its first JSON
 * object: a unary answer, or a Connect stream's first message. */
function classify(text: string, closed: true): Outcome;
function classify(text: string, closed: boolean): Outcome | undefined;
function classify(text: string, closed: boolean): Outcome | undefined {
  const headEnd = text.indexOf("\r\n\r\n");
  const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
  if (headEnd < 0 || !status) return closed ? { code: text === "" ? "closed_without_answer" : "bad_http_answer", detail: short(text) } : undefined;
  const head = text.slice(0, headEnd);
  const body = text.slice(headEnd + 4);
  const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
  const complete = status === "200" ? body.includes("}") : length !== undefined && Buffer.byteLength(body, "latin1") >= Number(length);
  if (!complete && !closed) return undefined;
  const json = parseJson(body.slice(body.indexOf("{"), body.lastIndexOf("}") + 1)) as { code?: string; error?: { code?: string } } | undefined;
  const streamError = /"error":\{"code":"([a-z_]+)"/.exec(body)?.[1];
  if (status === "200") return { code: streamError ?? "ok", detail: short(body) };
  return { code: json?.code ?? `http_${status}`, detail: short(body) };
}

/** gRPC-Web frames: the status in the trailer frame, or OK once a
 * message came (a stream read to its first message). */
function grpcWebOutcome(body: Buffer, status: number): Outcome {
  let message = false;
  for (let at = 0; at + 5 <= body.length; at += 5 + body.readUInt32BE(at + 1)) {
    const data = body.subarray(at + 5, at + 5 + body.readUInt32BE(at + 1)).toString("latin1");
    if ((body[at]! & 0x80) === 0) message = true;
    else return { code: grpcCodeName(/grpc-status: *(\d+)/i.exec(data)?.[1]), detail: short(data) };
  }
  if (message) return { code: "ok", detail: "first message" };
  return { code: status === 200 ? "grpc_web_without_status" : `http_${status}`, detail: short(body.toString("latin1")) };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export class FuzzClients {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  private session: http2.ClientHttp2Session | undefined;
  grpc: grpc.Client;
  private readonly host: string;
  /** What happened to the shared HTTP/2 connection (GOAWAY, errors). */
  readonly sessionEvents: string[] = [];
  private cancels = 0;
  private readonly port: number;

  constructor(
    readonly address: string,
    /** Sent on every call (credentials); the fuzzed ones override them. */
    readonly headers: Record<string, string>,
  ) {
    const [host, port] = address.split(":");
    this.host = host!;
    this.port = Number(port);
    this.grpc = new grpc.Client(address, grpc.credentials.createInsecure());
  }

  /**
   * Counts streams this client resets. The server closes a connection on
   * which about a thousand streams were cancelled (see "cancelled server
   * streams" in fuzz.test.ts), so the shared connections are replaced
   * well before that, to keep the other properties independent of it.
   */
  private cancelled(): void {
    if (++this.cancels < 400) return;
    this.cancels = 0;
    // Closed later: calls already started on them must not be refused.
    const [session, client] = [this.session, this.grpc];
    setTimeout(() => {
      session?.close();
      client.close();
    }, DEADLINE_MS + 1000).unref();
    this.session = undefined;
    this.grpc = new grpc.Client(this.address, grpc.credentials.createInsecure());
  }

  /** One HTTP/2 connection for every call, opened again when the server
   * closed it. */
  h2(): http2.ClientHttp2Session {
    if (!this.session || this.session.closed || this.session.destroyed) this.session = this.newSession();
    return this.session;
  }

  newSession(): http2.ClientHttp2Session {
    // Node's client refuses its own streams with ENHANCE_YOUR_CALM once it
    // buffers more than maxSessionMemory (10 MB by default) of unsent
    // bodies; that would be the client failing, not the server.
    const session = http2.connect(`http://${this.address}`, { maxSessionMemory: 256 });
    session.on("error", (error) => this.sessionEvents.push(`session error: ${error.message}`));
    session.on("goaway", (code) => this.sessionEvents.push(`GOAWAY ${code}`));
    session.unref();
    return session;
  }

  metadata(extra: Record<string, string> = {}): grpc.Metadata {
    const md = new grpc.Metadata();
    for (const [key, value] of Object.entries({ ...this.headers, ...extra })) md.set(key, value);
    return md;
  }

  /** Connect (or anything else) over HTTP/1.1 with node:http. A pooled
   * keep-alive socket that the server closed as idle just as it was reused
   * resets before any answer; that is the client's race, not the server's
   * answer, so such a call is sent once more on a fresh socket. */
  async h1Call(call: HttpCall): Promise<Outcome> {
    const first = await this.h1Once(call, this.agent);
    // Not the pool again: it may hold another socket closing at this moment.
    return first.code === "conn_reused_reset" ? this.h1Once(call, false) : first;
  }

  private h1Once(call: HttpCall, agent: http.Agent | false): Promise<Outcome> {
    return new Promise((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (outcome: Outcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(outcome);
      };
      let request: http.ClientRequest;
      try {
        request = http.request({
          host: this.host,
          port: this.port,
          method: call.method ?? "POST",
          path: call.path,
          // Explicit, or node sends DELETE and OPTIONS bodies unframed.
          headers: { "content-length": String(call.body.length), ...this.headers, ...call.headers },
          agent,
        });
      } catch (error) {
        finish({ code: "client_refused", detail: (error as Error).message });
        return;
      }
      timer = setTimeout(() => {
        request.destroy();
        finish({ code: "hung", detail: `no answer in ${DEADLINE_MS} ms` });
      }, DEADLINE_MS);
      let answered = false;
      request.on("error", (error: NodeJS.ErrnoException) => {
        const reusedReset = request.reusedSocket && !answered && error.code === "ECONNRESET";
        finish({ code: reusedReset ? "conn_reused_reset" : `conn_${error.code ?? "error"}`, detail: error.message });
      });
      request.on("response", (response) => {
        answered = true;
        const chunks: Buffer[] = [];
        const done = () =>
          finish(
            httpOutcome(
              { status: response.statusCode ?? 0, headers: { ...response.headers, ...response.trailers }, body: Buffer.concat(chunks) },
              call.stream === true,
            ),
          );
        response.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          if (call.stream && firstEnvelope(Buffer.concat(chunks))) {
            done();
            request.destroy();
          }
        });
        response.on("end", done);
        response.on("aborted", done);
        response.on("error", done);
      });
      request.end(call.body);
    });
  }

  /** Connect (or anything else) over HTTP/2 cleartext with node:http2.
   * Bodies over 1 MiB go on a connection of their own: several at once
   * can make the server refuse every later stream of a shared one (see
   * "oversized request bodies" in fuzz.test.ts). */
  h2Call(call: HttpCall): Promise<Outcome> {
    if (call.body.length > 1024 * 1024) {
      const session = this.newSession();
      return this.h2CallOn(session, call).finally(() => session.close());
    }
    return this.h2CallOn(this.h2(), call);
  }

  /** Opens the stream of one call, with a `finish` that settles the call
   * once: it stops the deadline and cancels the stream if still open. A
   * stream that cannot be opened settles the call as client_refused. */
  private openCall(
    resolve: (outcome: Outcome) => void,
    open: () => http2.ClientHttp2Stream,
  ): { stream: http2.ClientHttp2Stream; finish: (outcome: Outcome) => void } | undefined {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = open();
    } catch (error) {
      resolve({ code: "client_refused", detail: (error as Error).message });
      return undefined;
    }
    let settled = false;
    const finish = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!stream.closed) {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        this.cancelled();
      }
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ code: "hung", detail: `no answer in ${DEADLINE_MS} ms` }), DEADLINE_MS);
    return { stream, finish };
  }

  h2CallOn(session: http2.ClientHttp2Session, call: HttpCall): Promise<Outcome> {
    return new Promise((resolve) => {
      const opened = this.openCall(resolve, () => session.request({ ":method": call.method ?? "POST", ":path": call.path, ...this.headers, ...call.headers }));
      if (!opened) return;
      const { stream, finish } = opened;
      let status = 0;
      const headers: Record<string, unknown> = {};
      const chunks: Buffer[] = [];
      const done = () => {
        if (status === 0) finish({ code: `reset_${stream.rstCode ?? "none"}`, detail: "no response headers" });
        else finish(httpOutcome({ status, headers, body: Buffer.concat(chunks) }, call.stream === true));
      };
      stream.on("response", (response) => {
        status = Number(response[":status"]);
        Object.assign(headers, response);
      });
      stream.on("trailers", (trailers) => Object.assign(headers, trailers));
      stream.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        if (call.stream && firstEnvelope(Buffer.concat(chunks))) done();
      });
      stream.on("end", done);
      stream.on("close", done);
      stream.on("error", () => {});
      // node ends GET requests by itself.
      if (!stream.writableEnded) stream.end(call.body.length > 0 ? call.body : undefined);
    });
  }

  /** A unary or server-streaming call through grpc-js, with the request
   * bytes as given: the first message or the status, whichever comes. */
  grpcCall(path: string, bytes: Uint8Array, streaming: boolean, extra: Record<string, string> = {}): Promise<Outcome> {
    const identity = (b: Buffer) => b;
    const argument = Buffer.from(bytes);
    const options = { deadline: Date.now() + DEADLINE_MS };
    return new Promise((resolve) => {
      let metadata: grpc.Metadata;
      try {
        metadata = this.metadata(extra);
      } catch (error) {
        resolve({ code: "client_refused", detail: (error as Error).message });
        return;
      }
      if (!streaming) {
        this.grpc.makeUnaryRequest(path, identity, identity, argument, metadata, options, (error) => {
          resolve(error ? { code: grpcCodeName(error.code), detail: short(error.details) } : { code: "ok", detail: "" });
        });
        return;
      }
      let settled = false;
      const call = this.grpc.makeServerStreamRequest(path, identity, identity, argument, metadata, options);
      const finish = (outcome: Outcome) => {
        if (settled) return;
        settled = true;
        call.cancel();
        this.cancelled();
        resolve(outcome);
      };
      call.on("data", () => finish({ code: "ok", detail: "first message" }));
      call.on("error", (error: grpc.ServiceError) => finish({ code: grpcCodeName(error.code), detail: short(error.details) }));
      call.on("status", (status: grpc.StatusObject) => finish({ code: grpcCodeName(status.code), detail: short(status.details) }));
    });
  }

  /**
   * gRPC over a raw HTTP/2 stream: the headers and body bytes exactly as
   * given. `ending` "end" ends the request; "reset" sends RST_STREAM with
   * `rstCode` after the body instead. Streaming calls are answered by their
   * first message, or with `holdMs`, by the stream still being open that
   * long after it ("ended_early" otherwise).
   */
  rawGrpc(call: {
    path: string;
    headers: Record<string, string | string[]>;
    body: Uint8Array[];
    ending: "end" | "reset";
    rstCode?: number;
    streaming: boolean;
    holdMs?: number;
    /** Another HTTP/2 connection than the shared one. */
    session?: http2.ClientHttp2Session;
  }): Promise<Outcome> {
    return new Promise((resolve) => {
      const opened = this.openCall(resolve, () =>
        (call.session ?? this.h2()).request(
          { ":method": "POST", ":path": call.path, "content-type": "application/grpc", te: "trailers", ...this.headers, ...call.headers },
          { endStream: false },
        ),
      );
      if (!opened) return;
      const { stream, finish } = opened;
      let status = 0;
      let grpcStatus: string | undefined;
      let message = "";
      let data = Buffer.alloc(0);
      const take = (headers: http2.IncomingHttpHeaders) => {
        if (headers["grpc-status"] !== undefined) {
          grpcStatus = String(headers["grpc-status"]);
          message = decodeURIComponentSafe(String(headers["grpc-message"] ?? ""));
        }
      };
      stream.on("response", (headers) => {
        status = Number(headers[":status"]);
        take(headers);
      });
      stream.on("trailers", take);
      let firstAt = 0;
      stream.on("data", (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        if (!call.streaming || firstAt || !firstEnvelope(data)) return;
        firstAt = Date.now();
        if (call.holdMs === undefined) finish({ code: "ok", detail: "first message" });
        else setTimeout(() => finish({ code: "ok", detail: `open ${call.holdMs} ms after its first message` }), call.holdMs);
      });
      stream.on("error", () => {});
      stream.on("close", () => {
        if (firstAt && call.holdMs !== undefined) {
          const status = grpcStatus === undefined ? `reset ${stream.rstCode ?? "none"}` : `${grpcCodeName(grpcStatus)} ${message}`;
          finish({ code: "ended_early", detail: `ended ${Date.now() - firstAt} ms after its first message with ${status}` });
        } else if (call.ending === "reset") finish({ code: "client_reset", detail: `RST_STREAM ${call.rstCode ?? 8}` });
        else if (grpcStatus !== undefined) finish({ code: grpcCodeName(grpcStatus), detail: short(message) });
        else if (status !== 0 && status !== 200) finish({ code: `http_${status}`, detail: short(data.toString("utf8")) });
        else finish({ code: `reset_${stream.rstCode ?? "none"}`, detail: `HTTP ${status}, no grpc-status` });
      });
      for (const chunk of call.body) stream.write(chunk);
      if (call.ending === "end") stream.end();
      else {
        this.cancelled();
        setImmediate(() => stream.close(call.rstCode ?? http2.constants.NGHTTP2_CANCEL));
      }
    });
  }

  /** HTTP/1.1 written byte for byte on a socket (header values that
   * node:http refuses to send); the outcome from the status line and the
   * JSON error (or a Connect stream's first message), if any. */
  rawH1(request: Buffer): Promise<Outcome> {
    return new Promise((resolve) => {
      const socket = net.connect(this.port, this.host);
      let received = Buffer.alloc(0);
      let settled = false;
      const finish = (outcome?: Outcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(outcome ?? classify(received.toString("latin1"), true));
      };
      const timer = setTimeout(() => finish({ code: "hung", detail: `no answer in ${DEADLINE_MS} ms` }), DEADLINE_MS);
      socket.on("data", (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        const outcome = classify(received.toString("latin1"), false);
        if (outcome) finish(outcome);
      });
      socket.on("close", () => finish());
      socket.on("error", () => finish());
      // Not end(): node gives a half-closed connection no answer.
      socket.write(request);
    });
  }

  /** Bytes written on a fresh TCP connection, which is then closed. */
  rawSocket(bytes: Buffer, lingerMs: number): Promise<void> {
    return new Promise((resolve) => {
      const socket = net.connect(this.port, this.host);
      socket.on("error", () => {});
      socket.on("close", () => resolve());
      socket.write(bytes);
      setTimeout(() => socket.destroy(), lingerMs);
    });
  }

  close(): void {
    this.grpc.close();
    this.session?.destroy();
    this.agent.destroy();
  }
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Counts of every outcome, for the summary line (and, verbose, per group). */
export class Tally {
  private readonly codes = new Map<string, number>();
  private readonly categories = new Map<string, number>();
  private readonly groups = new Map<string, Map<string, number>>();
  startedAt = Date.now();

  add(category: string, group: string, outcome: Outcome): void {
    const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
    bump(this.categories, category);
    bump(this.codes, outcome.code);
    if (!this.groups.has(group)) this.groups.set(group, new Map());
    bump(this.groups.get(group)!, outcome.code);
  }

  get cases(): number {
    let n = 0;
    for (const count of this.categories.values()) n += count;
    return n;
  }

  line(rpcs: number, seed: number, extra: string): string {
    const categories = [...this.categories].map(([name, n]) => `${name}=${n}`).join(" ");
    return `FUZZ cases=${this.cases} rpcs=${rpcs} ${categories} seed=${seed} time=${((Date.now() - this.startedAt) / 1000).toFixed(1)}s ${extra}codes=${codeList(this.codes)}`;
  }

  /** One line per group: what each kind of input was answered with. */
  groupLines(): string[] {
    return [...this.groups].map(([group, codes]) => `FUZZ group=${group} ${codeList(codes)}`);
  }
}

function codeList(codes: Map<string, number>): string {
  return `{${[...codes]
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code}:${n}`)
    .join(",")}}`;
}
