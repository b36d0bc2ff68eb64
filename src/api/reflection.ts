// gRPC server reflection, grpc.reflection.v1 and v1alpha (older grpcurl and
// many tools only speak v1alpha). Descriptors come from gen/actionq.binpb,
// built by `buf build` with source info, so `grpcurl describe` shows the
// proto comments; it holds the well-known types our files import, too.
import { readFileSync } from "node:fs";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { descriptorSetPath } from "../paths.js";

/** The request and response of both versions have the same shape. */
type ReflectionRequest = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
type ResponseBody =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

export class DescriptorIndex {
  private readonly files = new Map<string, { proto: FileDescriptorProto; bytes: Uint8Array }>();
  private readonly symbols = new Map<string, string>();
  private readonly messages = new Set<string>();

  constructor(path = descriptorSetPath) {
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(path));
    for (const proto of set.file) {
      this.files.set(proto.name, { proto, bytes: toBinary(FileDescriptorProtoSchema, proto) });
      this.indexFile(proto);
    }
  }

  private add(symbol: string, file: string): void {
    this.symbols.set(symbol, file);
  }

  private indexFile(file: FileDescriptorProto): void {
    const prefix = file.package ? `${file.package}.` : "";
    for (const message of file.messageType) this.indexMessage(message, prefix, file.name);
    for (const enumType of file.enumType) this.indexEnum(enumType, prefix, file.name);
    for (const service of file.service) {
      const serviceName = `${prefix}${service.name}`;
      this.add(serviceName, file.name);
      for (const method of service.method) this.add(`${serviceName}.${method.name}`, file.name);
    }
    for (const extension of file.extension) this.add(`${prefix}${extension.name}`, file.name);
  }

  private indexMessage(message: DescriptorProto, prefix: string, file: string): void {
    const name = `${prefix}${message.name}`;
    this.add(name, file);
    this.messages.add(name);
    for (const field of message.field) this.add(`${name}.${field.name}`, file);
    for (const oneof of message.oneofDecl) this.add(`${name}.${oneof.name}`, file);
    for (const nested of message.nestedType) this.indexMessage(nested, `${name}.`, file);
    for (const enumType of message.enumType) this.indexEnum(enumType, `${name}.`, file);
    for (const extension of message.extension) this.add(`${name}.${extension.name}`, file);
  }

  private indexEnum(enumType: EnumDescriptorProto, prefix: string, file: string): void {
    this.add(`${prefix}${enumType.name}`, file);
    // Enum values live in the enclosing scope, as in C++.
    for (const value of enumType.value) this.add(`${prefix}${value.name}`, file);
  }

  fileOf(symbol: string): string | undefined {
    return this.symbols.get(symbol.replace(/^\./, ""));
  }

  hasFile(name: string): boolean {
    return this.files.has(name);
  }

  isMessage(name: string): boolean {
    return this.messages.has(name.replace(/^\./, ""));
  }

  /** The file, then each of its transitive dependencies not yet in `sent`
   * (which is updated), as serialized FileDescriptorProtos. */
  withDependencies(name: string, sent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [];
    const queue = [name];
    const seen = new Set<string>();
    while (queue.length > 0) {
      const next = queue.shift()!;
      if (seen.has(next)) continue;
      seen.add(next);
      const file = this.files.get(next);
      if (!file) continue;
      if (next === name || !sent.has(next)) {
        out.push(file.bytes);
        sent.add(next);
      }
      queue.push(...file.proto.dependency);
    }
    return out;
  }
}

function answer(index: DescriptorIndex, services: string[], request: ReflectionRequest, sent: Set<string>): ResponseBody {
  const notFound = (message: string): ResponseBody => ({ case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: message } });
  const asked = request.messageRequest;
  switch (asked.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } };
    case "fileByFilename":
      if (!index.hasFile(asked.value)) return notFound(`file ${JSON.stringify(asked.value)} not found`);
      return { case: "fileDescriptorResponse", value: { fileDescriptorProto: index.withDependencies(asked.value, sent) } };
    case "fileContainingSymbol": {
      const file = index.fileOf(asked.value);
      if (!file) return notFound(`symbol ${JSON.stringify(asked.value)} not found`);
      return { case: "fileDescriptorResponse", value: { fileDescriptorProto: index.withDependencies(file, sent) } };
    }
    case "fileContainingExtension":
      return notFound(`no extension ${asked.value.extensionNumber} of ${asked.value.containingType}`);
    case "allExtensionNumbersOfType":
      if (!index.isMessage(asked.value)) return notFound(`message type ${JSON.stringify(asked.value)} not found`);
      return { case: "allExtensionNumbersResponse", value: { baseTypeName: asked.value.replace(/^\./, ""), extensionNumber: [] } };
    default:
      return { case: "errorResponse", value: { errorCode: Code.InvalidArgument, errorMessage: "the request names no known message_request" } };
  }
}

/** Registers both reflection versions, listing `services` (fully
 * qualified names of everything the server serves). */
export function registerReflection(router: ConnectRouter, services: string[], index = new DescriptorIndex()): void {
  const listed = [...services, v1.ServerReflection.typeName, v1alpha.ServerReflection.typeName].sort();
  const handler = <R extends ReflectionRequest>() =>
    async function* (requests: AsyncIterable<R>) {
      // Files already sent on this stream are not sent again as
      // dependencies, as the reference implementations do.
      const sent = new Set<string>();
      for await (const request of requests) {
        yield { validHost: request.host, originalRequest: request, messageResponse: answer(index, listed, request, sent) };
      }
    };
  router.service(v1.ServerReflection, { serverReflectionInfo: handler<v1.ServerReflectionRequest>() });
  router.service(v1alpha.ServerReflection, { serverReflectionInfo: handler<v1alpha.ServerReflectionRequest>() });
}
