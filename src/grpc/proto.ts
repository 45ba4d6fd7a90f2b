/** Loads proto/containerd/services/snapshots/v1/snapshots.proto at run time with @grpc/proto-loader. */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

export const SNAPSHOTS_PROTO = 'containerd/services/snapshots/v1/snapshots.proto'
export const SNAPSHOTS_SERVICE = 'containerd.services.snapshots.v1.Snapshots'

/** The repository's proto/ dir, found upwards from this module (works from src/ and dist/src/). */
export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const candidate = join(dir, 'proto')
    if (existsSync(join(candidate, SNAPSHOTS_PROTO))) return candidate
    const up = dirname(dir)
    if (up === dir) throw new Error(`cannot find proto/${SNAPSHOTS_PROTO} above ${fileURLToPath(import.meta.url)}`)
    dir = up
  }
}

let cached: grpc.ServiceDefinition | undefined

/**
 * keepCase: field names as in the .proto (created_at, update_mask); longs as JS numbers (sizes
 * and seconds stay far below 2^53); enums as their names ("COMMITTED").
 */
export function snapshotsServiceDefinition(): grpc.ServiceDefinition {
  if (cached) return cached
  const def = protoLoader.loadSync(SNAPSHOTS_PROTO, {
    includeDirs: [protoDir()],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  })
  const svc = def[SNAPSHOTS_SERVICE]
  if (!svc || !('Prepare' in svc)) throw new Error(`${SNAPSHOTS_SERVICE} missing from ${SNAPSHOTS_PROTO}`)
  cached = svc as unknown as grpc.ServiceDefinition
  return cached
}

/** A generated client constructor, for tests and tools. */
export function snapshotsClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(snapshotsServiceDefinition() as grpc.ServiceDefinition<grpc.UntypedServiceImplementation>, 'Snapshots')
}
