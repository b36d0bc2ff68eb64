// The bench's default client: @grpc/grpc-js (what most polyglot workers
// run) behind the shape of a generated Connect client, so the scenarios
// read the same with either. Messages are encoded with the generated
// protobuf-es schemas, exactly as they go on the wire.
//
// On this kind of machine grpc-js costs the client about half the CPU per
// call of the Connect client, and client and server share the same two
// cores; BENCH_CLIENT=connect selects the Connect client for comparison.
import * as grpc from "@grpc/grpc-js";
import { type DescMessage, type DescService, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type CallOptions, type Client, type Code, ConnectError } from "@connectrpc/connect";

function toConnectError(error: grpc.ServiceError): ConnectError {
  // gRPC status codes and Connect codes share their numbers.
  return new ConnectError(error.details || error.message, error.code as number as Code);
}

function deadlineOf(options: CallOptions | undefined): grpc.CallOptions {
  return options?.timeoutMs !== undefined ? { deadline: Date.now() + options.timeoutMs } : {};
}

/** A grpc-js client on its own connection for every method of `service`. */
export function createGrpcJsClient<S extends DescService>(service: S, address: string): Client<S> {
  // A local subchannel pool: each client gets its own connection, as each
  // Connect transport does, instead of sharing one per target.
  const channel = new grpc.Client(address, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  const client: Record<string, unknown> = {};
  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    const serialize = (message: unknown) => Buffer.from(toBinary(method.input, create(method.input as DescMessage, message as never)));
    const deserialize = (bytes: Buffer) => fromBinary(method.output, bytes);
    if (method.methodKind === "unary") {
      client[method.localName] = (request: unknown, options?: CallOptions) =>
        new Promise((resolve, reject) => {
          const call = channel.makeUnaryRequest(path, serialize, deserialize, request, new grpc.Metadata(), deadlineOf(options), (error, response) =>
            error ? reject(toConnectError(error)) : resolve(response),
          );
          options?.signal?.addEventListener("abort", () => call.cancel(), { once: true });
        });
    } else if (method.methodKind === "server_streaming") {
      client[method.localName] = (request: unknown, options?: CallOptions) => ({
        async *[Symbol.asyncIterator]() {
          const call = channel.makeServerStreamRequest(path, serialize, deserialize, request, new grpc.Metadata(), deadlineOf(options));
          const cancel = () => call.cancel();
          options?.signal?.addEventListener("abort", cancel, { once: true });
          try {
            for await (const message of call) yield message;
          } catch (error) {
            throw toConnectError(error as grpc.ServiceError);
          } finally {
            options?.signal?.removeEventListener("abort", cancel);
            call.cancel();
          }
        },
      });
    }
  }
  return client as Client<S>;
}
