#!/usr/bin/env node
// Writes docs/api.md: the reference of every RPC, taken from the proto
// comments in gen/actionq.binpb (a FileDescriptorSet with source info, built
// by `npm run generate`), and one runnable sequence of examples, taken from
// docs/api-examples.json and rendered for grpcurl and for curl.
//
//   node scripts/gen-api-docs.mjs           write docs/api.md (npm run docs)
//   node scripts/gen-api-docs.mjs --stdout  print it instead
//   node scripts/gen-api-docs.mjs --check   exit 1 when docs/api.md is stale
//
// test/api-docs.test.ts checks that docs/api.md is this script's output and
// runs every curl example in it against a real server.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ScalarType, createFileRegistry, fromBinary, fromJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const root = path.resolve(import.meta.dirname, "..");
const descriptorPath = path.join(root, "gen", "actionq.binpb");
const examplesPath = path.join(root, "docs", "api-examples.json");
const outputPath = path.join(root, "docs", "api.md");

const SERVICE = "actionq.v1.ActionQueueService";
const HEALTH = "grpc.health.v1.Health";

const set = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorPath));
const registry = createFileRegistry(set);
const examples = JSON.parse(readFileSync(examplesPath, "utf8"));

/** Stops the generator with a message that names what to fix. */
function fail(message) {
  throw new Error(`gen-api-docs: ${message}`);
}

// ---------------------------------------------------------------------------
// Comments, from the source info that buf build keeps.

const locationsByFile = new Map();

function locations(file) {
  let byPath = locationsByFile.get(file.proto.name);
  if (!byPath) {
    byPath = new Map();
    for (const location of file.proto.sourceCodeInfo?.location ?? []) byPath.set(location.path.join("."), location);
    locationsByFile.set(file.proto.name, byPath);
  }
  return byPath;
}

function fileOf(desc) {
  return desc.kind === "field" || desc.kind === "rpc" || desc.kind === "enum_value" ? fileOf(desc.parent) : desc.file;
}

/** The path of a declaration in its file's source info (descriptor.proto
 * field numbers: 4 message_type, 5 enum_type, 6 service, 2 field / value /
 * method, 3 nested_type, 4 enum_type inside a message). */
function declarationPath(desc) {
  switch (desc.kind) {
    case "service":
      return [6, desc.file.proto.service.indexOf(desc.proto)];
    case "rpc":
      return [...declarationPath(desc.parent), 2, desc.parent.proto.method.indexOf(desc.proto)];
    case "message":
      return desc.parent
        ? [...declarationPath(desc.parent), 3, desc.parent.proto.nestedType.indexOf(desc.proto)]
        : [4, desc.file.proto.messageType.indexOf(desc.proto)];
    case "enum":
      return desc.parent
        ? [...declarationPath(desc.parent), 4, desc.parent.proto.enumType.indexOf(desc.proto)]
        : [5, desc.file.proto.enumType.indexOf(desc.proto)];
    case "field":
      return [...declarationPath(desc.parent), 2, desc.parent.proto.field.indexOf(desc.proto)];
    case "enum_value":
      return [...declarationPath(desc.parent), 2, desc.parent.proto.value.indexOf(desc.proto)];
    default:
      return fail(`no source path for a ${desc.kind}`);
  }
}

function location(desc) {
  return locations(fileOf(desc)).get(declarationPath(desc).join("."));
}

/** The leading comment of a declaration, as lines without the `// `. */
function commentLines(desc) {
  const text = location(desc)?.leadingComments ?? "";
  const lines = text
    .replace(/\n$/, "")
    .split("\n")
    .map((line) => (line.startsWith(" ") ? line.slice(1) : line));
  while (lines.length > 0 && lines.at(-1).trim() === "") lines.pop();
  return lines;
}

/** A comment as Markdown: paragraphs stay, indented lines (diagrams) become
 * a preformatted block. */
function commentMarkdown(desc) {
  const lines = commentLines(desc);
  const out = [];
  for (let i = 0; i < lines.length; ) {
    if (/^\s{2,}\S/.test(lines[i])) {
      const block = [];
      while (i < lines.length && /^\s{2,}\S/.test(lines[i])) block.push(lines[i++]);
      const indent = Math.min(...block.map((line) => line.match(/^\s*/)[0].length));
      out.push("", "```text", ...block.map((line) => line.slice(indent)), "```", "");
    } else {
      out.push(lines[i++]);
    }
  }
  return out
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

/** A comment squeezed into one table cell. */
function commentCell(desc) {
  return commentLines(desc)
    .map((line) => line.trim())
    .join(" ")
    .replace(/\s+/g, " ")
    .replace(/\|/g, "\\|")
    .trim();
}

/** The first sentence of a comment, for the contents table. */
function summary(desc) {
  const paragraph = commentLines(desc)
    .join("\n")
    .split(/\n\s*\n/)[0]
    .replace(/\s+/g, " ")
    .trim();
  const end = paragraph.search(/\.(\s|$)/);
  return (end === -1 ? paragraph : paragraph.slice(0, end + 1)).replace(/\|/g, "\\|");
}

// ---------------------------------------------------------------------------
// Types.

/** Well-known types whose JSON form "JSON encoding" explains. */
const WELL_KNOWN = new Set(["google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.Struct", "google.protobuf.Value"]);

/** actionq.v1 messages and enums that requests and responses use, shown in
 * "Messages and enums". */
const sharedTypes = new Set();

function isOwn(desc) {
  return desc.typeName.startsWith("actionq.");
}

function typeName(desc) {
  if (WELL_KNOWN.has(desc.typeName)) return `[${desc.name}](#json-encoding)`;
  if (isOwn(desc)) return `[${desc.name}](#${desc.name.toLowerCase()})`;
  return `\`${desc.name}\``;
}

function scalarName(scalar) {
  return ScalarType[scalar].toLowerCase();
}

function fieldType(field) {
  let type;
  switch (field.fieldKind) {
    case "scalar":
      type = scalarName(field.scalar);
      break;
    case "enum":
      type = typeName(field.enum);
      break;
    case "message":
      type = typeName(field.message);
      break;
    case "list":
      type = `repeated ${field.listKind === "scalar" ? scalarName(field.scalar) : typeName(field.listKind === "enum" ? field.enum : field.message)}`;
      break;
    case "map":
      type = `map<${scalarName(field.mapKey)}, ${field.mapKind === "scalar" ? scalarName(field.scalar) : typeName(field.mapKind === "enum" ? field.enum : field.message)}>`;
      break;
  }
  if (field.proto.proto3Optional) type = `optional ${type}`;
  if (field.oneof && !field.proto.proto3Optional) type += ` (one of \`${field.oneof.name}\`)`;
  return type;
}

function fieldName(field) {
  const json = field.jsonName;
  return json === field.name ? `\`${field.name}\`` : `\`${field.name}\` / \`${json}\``;
}

function fieldDescription(field) {
  let text = commentCell(field);
  const enumDesc = field.fieldKind === "enum" || field.listKind === "enum" ? field.enum : undefined;
  if (enumDesc && !isOwn(enumDesc)) {
    const values = enumDesc.values.map((value) => `\`${value.name}\``).join(", ");
    text = `${text}${text ? " " : ""}One of ${values}.`;
  }
  return text;
}

function fieldsTable(message) {
  if (message.fields.length === 0) return "No fields: send `{}`.";
  const rows = message.fields.map((field) => `| ${fieldName(field)} | ${fieldType(field)} | ${fieldDescription(field)} |`);
  return ["| field | type | description |", "|---|---|---|", ...rows].join("\n");
}

function valuesTable(enumDesc) {
  const rows = enumDesc.values.map((value) => `| \`${value.name}\` | ${value.number} | ${commentCell(value)} |`);
  return ["| value | number | description |", "|---|---|---|", ...rows].join("\n");
}

/** Notes every actionq type reachable from a request or response. */
function collectTypes(message, skip) {
  for (const field of message.fields) {
    const target = field.message ?? field.enum;
    if (!target || !isOwn(target) || skip.has(target.typeName) || sharedTypes.has(target)) continue;
    sharedTypes.add(target);
    if (target.kind === "message") collectTypes(target, skip);
  }
}

// ---------------------------------------------------------------------------
// Examples: every request is checked against its message here, so a
// misspelled field fails the generator, not a reader.

const address = examples.address;
const captured = new Set();
let step = 0;

function resolveMethod(example, fallback) {
  const name = example.method ?? `${SERVICE}/${example.rpc ?? fallback}`;
  const [serviceName, methodName] = name.split("/");
  const service = registry.getService(serviceName) ?? fail(`unknown service ${serviceName}`);
  return service.methods.find((m) => m.name === methodName) ?? fail(`${serviceName} has no method ${methodName}`);
}

/** `$NAME`: a shell variable an earlier example captured. */
const VARIABLE = /\$([A-Z][A-Z0-9_]*)/g;

/** Checks an example request; returns whether it uses variables. */
function checkRequest(method, request) {
  const text = JSON.stringify(request);
  const variables = [...text.matchAll(VARIABLE)].map((match) => match[1]);
  for (const name of variables) {
    if (!captured.has(name)) fail(`${method.name}: $${name} is used before an example captures it`);
  }
  // Requests go into single quotes and heredocs as they are.
  if (/[\\`'$]/.test(text.replace(VARIABLE, ""))) fail(`${method.name}: keep quotes, backslashes, backticks and lone $ out of example requests`);
  // Variables stand for ids and tokens; "1" parses as either.
  try {
    fromJson(method.input, JSON.parse(text.replace(VARIABLE, "1")), { registry });
  } catch (error) {
    fail(`${method.name}: the example request is not a valid ${method.input.typeName}: ${error.message}`);
  }
  return variables.length > 0;
}

/** JSON on one line with a space after `:` and `,`, or indented when long. */
function requestJson(request) {
  const inline = (value) => {
    if (Array.isArray(value)) return `[${value.map(inline).join(", ")}]`;
    if (value !== null && typeof value === "object") {
      const entries = Object.entries(value).map(([key, v]) => `${JSON.stringify(key)}: ${inline(v)}`);
      return `{${entries.join(", ")}}`;
    }
    return JSON.stringify(value);
  };
  const oneLine = inline(request);
  return oneLine.length <= 72 ? oneLine : JSON.stringify(request, null, 2);
}

function grpcurlCommand(method, example, usesVariables) {
  const json = requestJson(example.request);
  const timeout = example.timeoutMs ? ` -max-time ${example.timeoutMs / 1000}` : "";
  const target = `${address} ${method.parent.typeName}/${method.name}`;
  if (usesVariables) return { head: `grpcurl -plaintext${timeout} -d @ ${target} <<EOF`, body: [...json.split("\n"), "EOF"] };
  return { head: `grpcurl -plaintext${timeout} -d '${json}' ${target}`, body: [] };
}

function curlUnaryCommand(method, example, usesVariables) {
  const json = requestJson(example.request);
  const url = `http://${address}/${method.parent.typeName}/${method.name}`;
  const fail = example.expectStatus && example.expectStatus !== 200 ? "" : " --fail-with-body";
  if (example.get) {
    if (usesVariables) throw new Error(`${method.name}: GET examples take no variables`);
    return { head: `curl -sS${fail} --get --data-urlencode 'encoding=json' --data-urlencode 'message=${json}' \\\n  ${url}`, body: [] };
  }
  if (usesVariables) return { head: `curl -sS${fail} -H 'content-type: application/json' -d @- \\\n  ${url} <<EOF`, body: [...json.split("\n"), "EOF"] };
  return { head: `curl -sS${fail} -H 'content-type: application/json' \\\n  -d '${json.replaceAll("\n", "\n  ")}' \\\n  ${url}`, body: [] };
}

/** `head` is the command up to its heredoc marker; `body` the heredoc. A
 * response is printed, or captured into shell variables. */
function withOutput(command, capture, pretty) {
  const names = Object.entries(capture ?? {});
  if (names.length === 0) {
    // grpcurl indents on its own; curl's JSON is one line, so jq it. A
    // heredoc marker may come first: `cmd <<EOF | jq .` reads the body below.
    const head = pretty ? `${command.head} | jq .` : command.head;
    return [head, ...command.body].join("\n");
  }
  const lines = command.body.length > 0 ? [`RESPONSE=$(${command.head}`, ...command.body, ")"] : [`RESPONSE=$(${command.head})`];
  lines.push(`jq . <<<"$RESPONSE"`);
  for (const [name, jqPath] of names) lines.push(`${name}=$(jq -r ${jqPath} <<<"$RESPONSE")`);
  return lines.join("\n");
}

function curlStreamCommand(method, example, usesVariables) {
  const json = requestJson(example.request);
  const url = `http://${address}/${method.parent.typeName}/${method.name}`;
  const source = usesVariables ? ["connect_frame <<EOF |", ...json.split("\n"), "EOF"] : [`echo '${json}' | connect_frame |`];
  return [
    ...source,
    `  curl -sS --fail-with-body -H 'content-type: application/connect+json' -H 'connect-timeout-ms: ${example.timeoutMs}' \\`,
    `    --data-binary @- ${url} |`,
    "  connect_unframe",
  ].join("\n");
}

function renderExample(method, example, sectionMethod) {
  step++;
  const usesVariables = checkRequest(method, example.request);
  const streaming = method.methodKind === "server_streaming";
  if (method.methodKind !== "unary" && !streaming) fail(`${method.name}: curl cannot call a ${method.methodKind} method`);
  if (streaming && !example.timeoutMs) fail(`${method.name}: a stream example needs timeoutMs, or the sequence never goes on`);
  if (streaming && example.capture) fail(`${method.name}: stream examples cannot capture`);
  if (example.get && method.idempotency !== 1) fail(`${method.name}: only methods without side effects answer GET`);
  for (const [name, jqPath] of Object.entries(example.capture ?? {})) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(name) || !/^(\.[A-Za-z0-9_]+(\[\d+\])?)+$/.test(jqPath)) fail(`${method.name}: bad capture ${name}: ${jqPath}`);
    captured.add(name);
  }
  const expect = example.expectStatus ?? 200;
  const other = method === sectionMethod ? "" : ` (\`${method.name}\`)`;
  const out = [`**Step ${step}${other}.** ${example.note}`, ""];
  if (!example.get) {
    const grpcurl = grpcurlCommand(method, example, usesVariables);
    out.push("With grpcurl:", "", "```sh", streaming ? [grpcurl.head, ...grpcurl.body].join("\n") : withOutput(grpcurl, example.capture, false), "```", "");
  }
  const curl = streaming
    ? curlStreamCommand(method, example, usesVariables)
    : withOutput(curlUnaryCommand(method, example, usesVariables), example.capture, true);
  out.push(example.get ? "The same with a GET, with curl:" : "With curl:", "", `<!-- run: step ${step}, expect HTTP ${expect} -->`, "```sh", curl, "```", "");
  return out.join("\n");
}

// ---------------------------------------------------------------------------
// The page.

function methodHeader(method) {
  const parts = [method.methodKind === "server_streaming" ? "server stream" : method.methodKind];
  parts.push(method.idempotency === 1 ? "`POST` or `GET`" : "`POST`", `\`/${method.parent.typeName}/${method.name}\``);
  if (method.idempotency === 1) parts.push("no side effects");
  return parts.join(" · ");
}

function renderMethod(method, exampleList, headingLevel) {
  const output = method.methodKind === "server_streaming" ? `a stream of \`${method.output.name}\`` : `\`${method.output.name}\``;
  const out = [
    `${"#".repeat(headingLevel)} ${method.name}`,
    "",
    methodHeader(method),
    "",
    commentMarkdown(method),
    "",
    `**Request** \`${method.input.name}\`:`,
    "",
    fieldsTable(method.input),
    "",
    `**Response** ${output}:`,
    "",
    fieldsTable(method.output),
    "",
  ];
  for (const example of exampleList) out.push(renderExample(example.rpc || example.method ? resolveMethod(example, method.name) : method, example, method));
  return out.join("\n");
}

function render() {
  const service = registry.getService(SERVICE) ?? fail(`${SERVICE} is not in ${descriptorPath}`);
  const health = registry.getService(HEALTH) ?? fail(`${HEALTH} is not in ${descriptorPath}`);

  const sections = examples.sections;
  const seen = new Set();
  for (const section of sections) {
    if (!service.methods.some((m) => m.name === section.rpc)) fail(`docs/api-examples.json: ${SERVICE} has no method ${section.rpc}`);
    if (seen.has(section.rpc)) fail(`docs/api-examples.json: ${section.rpc} has two sections`);
    seen.add(section.rpc);
  }
  const missing = service.methods.filter((m) => !seen.has(m.name)).map((m) => m.name);
  if (missing.length > 0) fail(`docs/api-examples.json has no examples for ${missing.join(", ")}: every RPC needs one`);

  const skip = new Set(service.methods.flatMap((m) => [m.input.typeName, m.output.typeName]));
  for (const method of service.methods) {
    collectTypes(method.input, skip);
    collectTypes(method.output, skip);
  }
  const line = (desc) => location(desc)?.span[0] ?? 0;
  const files = set.file.map((f) => f.name);
  const order = (a, b) => files.indexOf(fileOf(a).proto.name) - files.indexOf(fileOf(b).proto.name) || line(a) - line(b);
  const sharedMessages = [...sharedTypes].filter((t) => t.kind === "message").sort(order);
  const sharedEnums = [...sharedTypes].filter((t) => t.kind === "enum").sort(order);

  const byName = new Map(service.methods.map((m) => [m.name, m]));
  const out = [];
  out.push(
    "<!-- Generated by scripts/gen-api-docs.mjs from the comments in proto/ and the examples in docs/api-examples.json. Do not edit: change those and run `npm run docs`. -->",
    "",
    "# The actionq API",
    "",
    `Package \`actionq.v1\`, service \`${SERVICE}\`, defined in [\`proto/actionq/v1/\`](../proto/actionq/v1). This page is generated from the comments in the \`.proto\` files, which are the reference.`,
    "",
    commentMarkdown(service),
    "",
    "## Contents",
    "",
    "| RPC | kind | what it does |",
    "|---|---|---|",
    ...sections.map(({ rpc }) => {
      const m = byName.get(rpc);
      return `| [\`${rpc}\`](#${rpc.toLowerCase()}) | ${m.methodKind === "server_streaming" ? "server stream" : "unary"} | ${summary(m)} |`;
    }),
    "",
    "Also: [health checks](#grpchealthv1health), [server reflection](#server-reflection), [errors](#errors), [messages and enums](#messages-and-enums), and [the JSON encoding](#json-encoding).",
    "",
    "## Calling the API",
    "",
    "One port (`ACTIONQ_LISTEN`, `127.0.0.1:50051` by default) speaks gRPC, gRPC-Web and Connect over HTTP/2 cleartext, and Connect and gRPC-Web over HTTP/1.1. So any gRPC client works, and so does plain `curl`:",
    "",
    `- **gRPC**, for example with [grpcurl](https://github.com/fullstorydev/grpcurl). Server reflection is on, so grpcurl needs no \`.proto\` files. Requests and responses are JSON on grpcurl's side.`,
    "- **Connect, unary calls**: `POST /<service>/<method>` with `content-type: application/json` and the request as JSON in the body. The answer is HTTP 200 with the response as JSON, or an [error](#errors) with another status. Methods without side effects also answer `GET /<service>/<method>?encoding=json&message=<the request, URL-encoded>`.",
    '- **Connect, server streams** (`StreamClaims`, `WatchEvents`, `Health/Watch`): `POST` with `content-type: application/connect+json`; the request and every response are framed as one flags byte, a four-byte big-endian length, then the JSON. The last frame (flags 2) ends the stream: `{}` when it ended cleanly, `{"error": {...}}` otherwise. The examples frame and unframe with two small shell functions (below). Add a `connect-timeout-ms` header to bound a call.',
    "- **Browsers**: set `ACTIONQ_CORS_ORIGINS` to the origins that may call the API; Connect-Web and gRPC-Web clients then work from those pages.",
    "",
    "### Running the examples",
    "",
    "The examples on this page are **one sequence**, numbered in the order to run them, against a fresh server (`npm start` in an empty directory, or any server on an empty schema). Each example shows the same request twice: for grpcurl and for curl over HTTP/1.1. Values that come from an earlier answer (ids, claim tokens) are kept in shell variables such as `$DEPLOY_ID`; [the end of the sequence](#where-the-sequence-ends) lists where every action stands afterwards.",
    "",
    "You need bash, curl 7.76 or later (for `--fail-with-body`), [jq](https://jqlang.org) and, for the stream examples, perl. First define the two functions that frame Connect stream messages:",
    "",
    "<!-- run: setup -->",
    "```sh",
    "# A Connect stream message: a flags byte, the length in four bytes (big-endian), the JSON.",
    `connect_frame() { perl -0777 -ne 's/\\s+\\z//; print pack("CN", 0, length), $_'; }`,
    `connect_unframe() { perl -e 'binmode STDIN; while (read(STDIN, my $head, 5) == 5) { my ($flags, $n) = unpack("CN", $head); read(STDIN, my $m, $n); print "$m\\n" }'; }`,
    "```",
    "",
    "`npm test` runs every curl example on this page, in this order, against a real server (`test/api-docs.test.ts`) and fails when one does not answer as shown, so the examples cannot drift from the server. The grpcurl examples send the same requests but are not run by the tests: grpcurl is not installed where the tests run.",
    "",
  );

  for (const section of sections) out.push(renderMethod(byName.get(section.rpc), section.examples, 2));

  out.push(
    "## Where the sequence ends",
    "",
    "After the last step, the actions stand as follows; the tests check it.",
    "",
    "| action | status | attempt | how it got there |",
    "|---|---|---|---|",
  );
  for (const row of examples.finalState) {
    if (!captured.has(row.action)) fail(`finalState: ${row.action} is not captured by any example`);
    out.push(`| \`$${row.action}\` | \`${row.status}\` | ${row.attempt} | ${row.why} |`);
  }
  out.push("");

  out.push(
    `## ${HEALTH}`,
    "",
    commentMarkdown(health),
    "",
    "The standard gRPC health service, for load balancers, Kubernetes probes and `grpc_health_probe`.",
    "",
  );
  for (const method of health.methods) {
    const list = examples.health.filter((example) => example.method === `${HEALTH}/${method.name}`);
    if (list.length === 0) fail(`docs/api-examples.json: no example for ${HEALTH}/${method.name}`);
    out.push(renderMethod(method, list, 3));
  }

  out.push(
    "## Server reflection",
    "",
    "`grpc.reflection.v1.ServerReflection` and `grpc.reflection.v1alpha.ServerReflection` (older grpcurl and many tools speak only v1alpha) describe every service and message, with the proto comments. Reflection is a bidirectional stream, which needs HTTP/2 and a gRPC client, so it has no curl example:",
    "",
    "```sh",
    ...examples.reflection,
    "```",
    "",
  );

  out.push(
    "## Errors",
    "",
    "A call that fails changes nothing. Its status is a gRPC code (over Connect, `code` in snake_case, with the matching HTTP status), and it carries a `google.rpc.ErrorInfo` detail whose `reason` is a stable UPPER_SNAKE code and whose `metadata` names the field or the current status involved:",
    "",
    "| gRPC code | Connect `code` | HTTP | when |",
    "|---|---|---|---|",
    "| `INVALID_ARGUMENT` | `invalid_argument` | 400 | a field is missing or malformed (`INVALID_FIELD`, with `metadata.field`); an unknown JSON field or enum name is refused, never ignored |",
    "| `NOT_FOUND` | `not_found` | 404 | no such action (`ACTION_NOT_FOUND`), or no pause in that scope (`PAUSE_NOT_FOUND`) |",
    "| `FAILED_PRECONDITION` | `failed_precondition` | 400 | the action's status does not allow the call (`INVALID_TRANSITION`, with `metadata.current_status`), the claim token is not the current one (`CLAIM_TOKEN_MISMATCH`), and the other refusals named in each RPC's description |",
    "| `ALREADY_EXISTS` | `already_exists` | 409 | an `idempotency_key` reused for a different request (`IDEMPOTENCY_KEY_REUSED`) |",
    "| `PERMISSION_DENIED` | `permission_denied` | 403 | a producer approving its own action (`SELF_APPROVAL`) |",
    "| `RESOURCE_EXHAUSTED` | `resource_exhausted` | 429 | an `agent:` or `script:` producer over its hourly rate (`RATE_LIMITED`; a `google.rpc.RetryInfo` detail and the message say when to retry) |",
    "",
  );
  for (const example of examples.errors) out.push(renderExample(resolveMethod(example), example, undefined));

  out.push("## Messages and enums", "", "The messages and enums that requests and responses above refer to.", "");
  for (const type of [...sharedMessages, ...sharedEnums]) {
    out.push(`### ${type.name}`, "", commentMarkdown(type), "", type.kind === "message" ? fieldsTable(type) : valuesTable(type), "");
  }

  out.push(
    "## JSON encoding",
    "",
    "Requests and responses use the standard protobuf JSON mapping, the same in grpcurl and Connect:",
    "",
    '- Field names in lowerCamelCase (`actionType`); the proto names (`action_type`) are accepted in requests too. A field at its default (0, `""`, `false`, empty list) is left out of responses.',
    '- `int64` values (ids, counts, cursors) are strings: `"42"`. Requests may send numbers.',
    '- Enums by name: `"RISK_LEVEL_GUARDED"`.',
    '- `google.protobuf.Duration` as seconds with an `s`: `"300s"`, `"1.5s"`.',
    '- `google.protobuf.Timestamp` in RFC 3339, UTC: `"2025-01-02T03:04:05.678Z"`.',
    "- `google.protobuf.Struct` (payloads) as a JSON object.",
    "- An unknown field or enum name is an `INVALID_ARGUMENT` error: a typo is never silently dropped.",
    "",
  );

  return `${out
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trimEnd()}\n`;
}

let text;
try {
  text = render();
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
const mode = process.argv[2];
if (mode === "--stdout") {
  process.stdout.write(text);
} else if (mode === "--check") {
  let current = "";
  try {
    current = readFileSync(outputPath, "utf8");
  } catch {}
  if (current !== text) {
    console.error("docs/api.md is out of date: run `npm run docs`");
    process.exit(1);
  }
} else if (mode === undefined) {
  writeFileSync(outputPath, text);
  console.log(`wrote ${path.relative(process.cwd(), outputPath)}`);
} else {
  console.error("usage: gen-api-docs.mjs [--stdout | --check]");
  process.exit(2);
}
