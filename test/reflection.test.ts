// Server reflection as grpcurl uses it, through @grpc/grpc-js over the
// network, for both grpc.reflection.v1 (newer grpcurl) and v1alpha (older
// grpcurl and most other tools): list, describe with dependency resolution
// by file name, symbol lookups, errors on a live stream, and finally a call
// made with nothing but the reflected descriptors.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { create, createFileRegistry, type FileRegistry, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, protoDir, startTestServer } from "./support/harness.js";

const SERVICE = "actionq.v1.ActionQueueService";
const SERVICE_FILE = "actionq/v1/action_queue_service.proto";

const RPCS = [
  "EnqueueAction",
  "GetAction",
  "ListActions",
  "ApproveAction",
  "RejectAction",
  "CancelAction",
  "ClaimAction",
  "StreamClaims",
  "AckClaim",
  "ExtendClaim",
  "CompleteAction",
  "FailAction",
  "SweepClaims",
  "ListEvents",
  "WatchEvents",
  "EmitEvent",
  "PauseClaims",
  "ResumeClaims",
  "GetQueueStats",
  "RollbackAction",
  "GetPolicy",
  "ReloadPolicy",
  "GetCaller",
  "RetryAction",
  "EnqueueActions",
  "CompleteActions",
  "BreakGlass",
  "CreateSchedule",
  "UpdateSchedule",
  "PauseSchedule",
  "ResumeSchedule",
  "DeleteSchedule",
  "GetSchedule",
  "ListSchedules",
  "BackfillSchedule",
  "ImportActions",
];
const SERVER_STREAMING = new Set(["StreamClaims", "WatchEvents"]);

const reflectionDefinition = protoLoader.loadSync(["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"], {
  includeDirs: [protoDir],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const reflectionPackages = grpc.loadPackageDefinition(reflectionDefinition) as unknown as {
  grpc: { reflection: Record<"v1" | "v1alpha", { ServerReflection: grpc.ServiceClientConstructor }> };
};

type Version = "v1" | "v1alpha";

/** A ServerReflectionRequest as grpc-js takes it: host plus one of these. */
type ReflectionRequest = { host?: string } & (
  | { fileByFilename: string }
  | { fileContainingSymbol: string }
  | { allExtensionNumbersOfType: string }
  | { listServices: string }
  | { fileContainingExtension: { containingType: string; extensionNumber: number } }
);

interface ReflectionResponse {
  validHost: string;
  originalRequest: Record<string, unknown> | null;
  messageResponse: "fileDescriptorResponse" | "allExtensionNumbersResponse" | "listServicesResponse" | "errorResponse";
  fileDescriptorResponse: { fileDescriptorProto: Buffer[] } | null;
  allExtensionNumbersResponse: { baseTypeName: string; extensionNumber: number[] } | null;
  listServicesResponse: { service: { name: string }[] } | null;
  errorResponse: { errorCode: number; errorMessage: string } | null;
}

/** One ServerReflectionInfo stream, asked one question at a time, the way
 * grpcurl's reflection client drives it. */
class ReflectionStream {
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<ReflectionRequest, ReflectionResponse>;
  private readonly waiting: { resolve: (r: ReflectionResponse) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | undefined;

  constructor(address: string, version: Version) {
    const Client = reflectionPackages.grpc.reflection[version].ServerReflection;
    this.client = new Client(address, grpc.credentials.createInsecure());
    const open = (this.client as unknown as Record<string, () => grpc.ClientDuplexStream<ReflectionRequest, ReflectionResponse>>).serverReflectionInfo!;
    this.call = open.call(this.client);
    this.call.on("data", (response: ReflectionResponse) => {
      const next = this.waiting.shift();
      if (next) next.resolve(response);
      else this.fail(new Error(`unrequested reflection response: ${JSON.stringify(response)}`));
    });
    this.call.on("error", (error: Error) => this.fail(error));
    this.call.on("end", () => this.fail(new Error("the reflection stream ended")));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.waiting.splice(0)) waiter.reject(error);
  }

  ask(request: ReflectionRequest): Promise<ReflectionResponse> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${JSON.stringify(request)}`)), 10_000);
      this.waiting.push({
        resolve: (response) => {
          clearTimeout(timer);
          resolve(response);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.call.write(request);
    });
  }

  /** Files from a file_descriptor_response; fails on any other answer. */
  async files(request: ReflectionRequest): Promise<FileDescriptorProto[]> {
    const response = await this.ask(request);
    if (response.messageResponse !== "fileDescriptorResponse" || !response.fileDescriptorResponse) {
      throw new Error(
        `expected a file_descriptor_response to ${JSON.stringify(request)}, got ${JSON.stringify(response.errorResponse ?? response.messageResponse)}`,
      );
    }
    return response.fileDescriptorResponse.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
  }

  close(): void {
    this.call.end();
    this.call.cancel();
    this.client.close();
  }
}

/** grpcurl's descriptor cache: every file received on the stream, by name.
 * A dependency it does not have yet is asked for with file_by_filename. */
class DescriptorCache {
  readonly files = new Map<string, FileDescriptorProto>();
  readonly askedByName: string[] = [];

  constructor(private readonly stream: ReflectionStream) {}

  private keep(files: FileDescriptorProto[]): void {
    for (const file of files) if (!this.files.has(file.name)) this.files.set(file.name, file);
  }

  /** `grpcurl describe SYMBOL`: the file declaring it, with every
   * dependency resolved. Returns the name of that file. */
  async describe(symbol: string): Promise<string> {
    const files = await this.stream.files({ fileContainingSymbol: symbol });
    expect(files.length).toBeGreaterThan(0);
    this.keep(files);
    await this.resolve(files[0]!.name);
    return files[0]!.name;
  }

  private async resolve(name: string): Promise<void> {
    const file = this.files.get(name);
    if (!file) throw new Error(`file ${name} was never received`);
    for (const dependency of file.dependency) {
      if (!this.files.has(dependency)) {
        this.askedByName.push(dependency);
        const files = await this.stream.files({ fileByFilename: dependency });
        expect(files[0]?.name).toBe(dependency);
        this.keep(files);
      }
      await this.resolve(dependency);
    }
  }

  /** A registry built only from what was received: it throws when any
   * import cannot be resolved. */
  registry(root: string): FileRegistry {
    const file = this.files.get(root);
    if (!file) throw new Error(`file ${root} was never received`);
    return createFileRegistry(file, (name) => this.files.get(name));
  }
}

/** grpc-js serializers for a message known only from a registry. */
function callWithRegistry(registry: FileRegistry, address: string, method: string, init: Record<string, unknown>): Promise<unknown> {
  const service = registry.getService(SERVICE);
  if (!service) throw new Error(`${SERVICE} is not in the registry`);
  const rpc = service.methods.find((m) => m.name === method);
  if (!rpc) throw new Error(`${SERVICE}/${method} is not in the registry`);
  const request = create(rpc.input, init);
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise<unknown>((resolve, reject) => {
    client.makeUnaryRequest(
      `/${SERVICE}/${method}`,
      (message: typeof request) => Buffer.from(toBinary(rpc.input, message)),
      (bytes: Buffer) => fromBinary(rpc.output, bytes),
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + 20_000 },
      (error, response) => {
        client.close();
        if (error) reject(error);
        else resolve(toJson(rpc.output, response!, { registry }));
      },
    );
  });
}

describe("server reflection", () => {
  let t: TestServer;
  const streams: ReflectionStream[] = [];

  beforeAll(async () => {
    t = await startTestServer();
  });
  afterEach(() => {
    for (const stream of streams.splice(0)) stream.close();
  });
  afterAll(async () => {
    await t?.close();
  });

  const open = (version: Version) => {
    const stream = new ReflectionStream(t.address, version);
    streams.push(stream);
    return stream;
  };

  describe.each<Version>(["v1", "v1alpha"])("grpc.reflection.%s", (version) => {
    it("lists every served service, reflection itself in both versions included (grpcurl list)", async () => {
      const stream = open(version);
      const response = await stream.ask({ host: t.address, listServices: "*" });
      expect(response.messageResponse).toBe("listServicesResponse");
      const names = response.listServicesResponse!.service.map((s) => s.name);
      expect(names).toEqual(
        expect.arrayContaining([SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]),
      );
      expect(new Set(names).size).toBe(names.length);
    });

    it("describes ActionQueueService with every dependency resolvable and every RPC typed (grpcurl describe)", async () => {
      const stream = open(version);
      const cache = new DescriptorCache(stream);
      expect(await cache.describe(SERVICE)).toBe(SERVICE_FILE);

      // Whether a dependency came along with the file or was asked for by
      // name, the cache ends up with all of them.
      for (const dependency of [
        "actionq/v1/action.proto",
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/duration.proto",
      ]) {
        expect(cache.files.has(dependency), dependency).toBe(true);
      }
      const registry = cache.registry(SERVICE_FILE);

      const service = registry.getService(SERVICE);
      expect(service).toBeDefined();
      expect(service!.methods.map((m) => m.name).sort()).toEqual([...RPCS].sort());
      for (const method of service!.methods) {
        expect(registry.getMessage(method.input.typeName), `${method.name} input ${method.input.typeName}`).toBeDefined();
        expect(registry.getMessage(method.output.typeName), `${method.name} output ${method.output.typeName}`).toBeDefined();
        expect(method.input.typeName).toBe(`actionq.v1.${method.name}Request`);
        expect(method.output.typeName).toBe(`actionq.v1.${method.name}Response`);
        expect(method.methodKind, method.name).toBe(SERVER_STREAMING.has(method.name) ? "server_streaming" : "unary");
      }
      // Fields typed by imported messages resolve, too.
      expect(registry.getMessage("actionq.v1.Action")?.field.payload?.message?.typeName).toBe("google.protobuf.Struct");
      expect(registry.getMessage("actionq.v1.StreamClaimsRequest")?.field.leaseDuration?.message?.typeName).toBe("google.protobuf.Duration");
    });

    it("answers file_by_filename for each dependency, the asked file first", async () => {
      const stream = open(version);
      for (const name of [
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/duration.proto",
        "actionq/v1/action.proto",
        SERVICE_FILE,
      ]) {
        const files = await stream.files({ fileByFilename: name });
        expect(files[0]?.name).toBe(name);
      }
      const missing = await stream.ask({ fileByFilename: "no/such/file.proto" });
      expect(missing.messageResponse).toBe("errorResponse");
      expect(missing.errorResponse?.errorCode).toBe(grpc.status.NOT_FOUND);
    });

    it("resolves everything on a stream that already sent some files, without resending them", async () => {
      const stream = open(version);
      const cache = new DescriptorCache(stream);
      // `describe actionq.v1.Action` first, then the service on the same
      // stream: files already sent need not come again, and the client's
      // cache still holds a complete set.
      expect(await cache.describe("actionq.v1.Action")).toBe("actionq/v1/action.proto");
      expect(await cache.describe(SERVICE)).toBe(SERVICE_FILE);
      const registry = cache.registry(SERVICE_FILE);
      expect(registry.getService(SERVICE)?.methods).toHaveLength(RPCS.length);
    });

    it("finds the file of a method, a message, a field, enums and enum values, nested ones and google.rpc.ErrorInfo", async () => {
      const stream = open(version);
      const cases: [symbol: string, file: string][] = [
        [`${SERVICE}.EnqueueAction`, SERVICE_FILE],
        [`${SERVICE}.WatchEvents`, SERVICE_FILE],
        ["actionq.v1.Action", "actionq/v1/action.proto"],
        ["actionq.v1.Action.action_type", "actionq/v1/action.proto"],
        ["actionq.v1.ActionStatus", "actionq/v1/action.proto"],
        ["actionq.v1.ACTION_STATUS_APPROVED", "actionq/v1/action.proto"],
        ["actionq.v1.EnqueueActionRequest", SERVICE_FILE],
        ["grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"],
        ["grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto"],
        ["google.rpc.ErrorInfo", "google/rpc/error_details.proto"],
        ["google.protobuf.Struct", "google/protobuf/struct.proto"],
      ];
      for (const [symbol, file] of cases) {
        const files = await stream.files({ fileContainingSymbol: symbol });
        expect(files[0]?.name, symbol).toBe(file);
      }
      // The reflected ErrorInfo is the one errors carry: reason, domain, metadata.
      const [errorDetails] = await stream.files({ fileByFilename: "google/rpc/error_details.proto" });
      const errorInfo = errorDetails!.messageType.find((m) => m.name === "ErrorInfo");
      expect(errorInfo?.field.map((f) => f.name).sort()).toEqual(["domain", "metadata", "reason"]);
    });

    it("answers an unknown symbol with NOT_FOUND on the same stream, which keeps working", async () => {
      const stream = open(version);
      const unknown = await stream.ask({ fileContainingSymbol: "actionq.v1.NoSuchThing" });
      expect(unknown.messageResponse).toBe("errorResponse");
      expect(unknown.errorResponse?.errorCode).toBe(grpc.status.NOT_FOUND);
      expect(unknown.errorResponse?.errorMessage).toContain("actionq.v1.NoSuchThing");

      const unknownType = await stream.ask({ allExtensionNumbersOfType: "actionq.v1.NoSuchMessage" });
      expect(unknownType.errorResponse?.errorCode).toBe(grpc.status.NOT_FOUND);

      const after = await stream.files({ fileContainingSymbol: SERVICE });
      expect(after[0]?.name).toBe(SERVICE_FILE);
      const list = await stream.ask({ listServices: "" });
      expect(list.listServicesResponse?.service.map((s) => s.name)).toContain(SERVICE);
    });

    it("answers all_extension_numbers_of_type for actionq.v1.Action with an empty list", async () => {
      const stream = open(version);
      const response = await stream.ask({ allExtensionNumbersOfType: "actionq.v1.Action" });
      expect(response.messageResponse).toBe("allExtensionNumbersResponse");
      expect(response.allExtensionNumbersResponse).toEqual({ baseTypeName: "actionq.v1.Action", extensionNumber: [] });
    });

    it("carries the proto comments as source_code_info, so describe shows the API reference", async () => {
      const stream = open(version);
      const [file] = await stream.files({ fileContainingSymbol: SERVICE });
      expect(file?.name).toBe(SERVICE_FILE);
      expect(file?.sourceCodeInfo).toBeDefined();
      const serviceIndex = file!.service.findIndex((s) => s.name === "ActionQueueService");
      // Path [6, i] is FileDescriptorProto.service[i].
      const serviceLocation = file!.sourceCodeInfo!.location.find((l) => l.path.length === 2 && l.path[0] === 6 && l.path[1] === serviceIndex);
      expect(serviceLocation?.leadingComments).toContain("A queue of operational actions");
      // Path [6, i, 2, j] is the j-th method of that service.
      const enqueueIndex = file!.service[serviceIndex]!.method.findIndex((m) => m.name === "EnqueueAction");
      const enqueueLocation = file!.sourceCodeInfo!.location.find(
        (l) => l.path.length === 4 && l.path[0] === 6 && l.path[1] === serviceIndex && l.path[2] === 2 && l.path[3] === enqueueIndex,
      );
      expect(enqueueLocation?.leadingComments).toContain("Creates an action");
    });

    it("lets a client that knows only reflection call EnqueueAction (grpcurl -d '{...}')", async () => {
      const stream = open(version);
      const cache = new DescriptorCache(stream);
      await cache.describe(SERVICE);
      const registry = cache.registry(SERVICE_FILE);
      const request = registry.getMessage("actionq.v1.EnqueueActionRequest");
      expect(request).toBeDefined();
      const riskLevel = registry.getEnum("actionq.v1.RiskLevel")?.values.find((v) => v.name === "RISK_LEVEL_SAFE")?.number;
      expect(riskLevel).toBe(1);

      const response = (await callWithRegistry(registry, t.address, "EnqueueAction", {
        actionType: "reflected_call",
        createdBy: "human:reflection",
        project: version,
        riskLevel,
        payload: { ticket: "OPS-42", attempts: 2 },
        idempotencyKey: `reflected-${version}`,
      })) as { action: { id: string; actionType: string; status: string; project: string; payload: unknown }; created: boolean };
      expect(response.created).toBe(true);
      expect(response.action.actionType).toBe("reflected_call");
      expect(response.action.project).toBe(version);
      expect(response.action.status).toBe("ACTION_STATUS_APPROVED");
      expect(response.action.payload).toEqual({ ticket: "OPS-42", attempts: 2 });

      // It was really stored: the ordinary client reads it back.
      const got = await t.grpc.unary<{ action: { id: string; actionType: string } }>("GetAction", { id: response.action.id });
      expect(got.action.actionType).toBe("reflected_call");
    });
  });
});
