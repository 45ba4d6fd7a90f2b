/**
 * The one place errors become gRPC statuses (as containerd's errdefs.ToGRPC does for
 * contrib/snapshotservice): our error categories map to their codes; anything else is UNKNOWN
 * with its message. containerd turns the code back into its errdefs kind on its side, which is
 * how AlreadyExists from a remote Prepare reaches its unpacker.
 */
import { status as Status, type ServiceError, Metadata } from '@grpc/grpc-js'
import { errorMessage, isStargzError } from '../errors.js'

export function grpcCode(e: unknown): Status {
  if (!isStargzError(e)) return Status.UNKNOWN
  switch (e.code) {
    case 'ERR_NOT_FOUND': return Status.NOT_FOUND
    case 'ERR_ALREADY_EXISTS': return Status.ALREADY_EXISTS
    case 'ERR_FAILED_PRECONDITION': return Status.FAILED_PRECONDITION
    case 'ERR_INVALID_ARGUMENT':
    case 'ERR_CONFIG_INVALID': return Status.INVALID_ARGUMENT
    case 'ERR_UNAVAILABLE': return Status.UNAVAILABLE
    default: return Status.UNKNOWN
  }
}

export function toServiceError(e: unknown): Partial<ServiceError> {
  const code = grpcCode(e)
  return { code, details: errorMessage(e), message: errorMessage(e), metadata: new Metadata() }
}
