/** Loads proto/cri/runtime/v1/api.proto (Kubernetes CRI, runtime.v1) with @grpc/proto-loader. */
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { protoDir } from '../grpc/proto.js'

export const CRI_PROTO = 'cri/runtime/v1/api.proto'
export const IMAGE_SERVICE = 'runtime.v1.ImageService'
export const RUNTIME_SERVICE = 'runtime.v1.RuntimeService'

let cached: protoLoader.PackageDefinition | undefined

/** keepCase: field names as in the .proto (pod_sandbox_id); int64 as JS numbers; enums by name. */
export function criPackageDefinition(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync(CRI_PROTO, {
    includeDirs: [protoDir()],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  })
  return cached
}

export function criService(name: typeof IMAGE_SERVICE | typeof RUNTIME_SERVICE): grpc.ServiceDefinition {
  const svc = criPackageDefinition()[name]
  if (!svc || 'format' in svc) throw new Error(`${name} missing from ${CRI_PROTO}`)
  return svc as unknown as grpc.ServiceDefinition
}

/** A generated client constructor (tests, tools). */
export function criClientConstructor(name: typeof IMAGE_SERVICE | typeof RUNTIME_SERVICE): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(criService(name) as grpc.ServiceDefinition<grpc.UntypedServiceImplementation>, name.split('.').pop() as string)
}
