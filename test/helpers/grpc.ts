import * as grpc from '@grpc/grpc-js';
import { startOutpost, testCa } from './outpost.ts';

const asIs = (bytes: Buffer) => bytes;

/** A gRPC method of bytes in and bytes out (no protobuf): all the tests need of gRPC's messages. */
export function bytesMethod(name: string, streams: { request?: boolean; response?: boolean } = {}): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: `/test.Echo/${name}`, requestStream: streams.request ?? false, responseStream: streams.response ?? false,
    requestSerialize: asIs, requestDeserialize: asIs, responseSerialize: asIs, responseDeserialize: asIs,
  };
}

export interface GrpcThroughOutpost {
  /** A grpc-js client whose calls go through Outpost (TLS, HTTP/2): its methods by the service's names. */
  readonly client: grpc.Client & Record<string, unknown>;
  close(): Promise<void>;
}

/**
 * A grpc-js server for `service` as Outpost's HTTP/2 upstream (h2c), and a grpc-js client that
 * reaches it through Outpost; `config`: more of Outpost's config (limits, say).
 */
export async function grpcThroughOutpost(service: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation, config: Record<string, unknown> = {}): Promise<GrpcThroughOutpost> {
  const server = new grpc.Server();
  server.addService(service, handlers);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => err ? reject(err) : resolve(bound)));
  const outpost = await startOutpost({ ...config, sites: [{ hosts: ['*'], origin: { upstreams: [{ url: `http://127.0.0.1:${port}`, http2: true }] } }] });
  const Client = grpc.makeGenericClientConstructor(service, 'Echo');
  const client = new Client(`127.0.0.1:${outpost.httpsPort}`, grpc.credentials.createSsl(Buffer.from(await testCa())), {
    'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost',
  }) as grpc.Client & Record<string, unknown>;
  return {
    client,
    async close() {
      client.close();
      await outpost.close();
      server.forceShutdown();
    },
  };
}
