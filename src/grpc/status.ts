/**
 * The one place errors become gRPC statuses (as containerd's errdefs.ToGRPC does for
 * contrib/snapshotservice): our error categories map to their codes; anything else is UNKNOWN
 * with its message. containerd turns the code back into its errdefs kind on its side, which is
 * how AlreadyExists from a remote Prepare reaches its unpacker.
 */
import { status as Status, type ServiceError, Metadata } from '@grpc/grpc-js'
import { errorMessage, isStargzError, type ErrorCode } from '../errors.js'

/** Every code's gRPC status (containerd's errdefs.ToGRPC); checked to be total by test/errors. */
export const GRPC_BY_CODE: Readonly<Record<ErrorCode, Status>> = {
  ERR_NOT_FOUND: Status.NOT_FOUND,
  ERR_ALREADY_EXISTS: Status.ALREADY_EXISTS,
  ERR_FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  ERR_INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  ERR_CONFIG_INVALID: Status.INVALID_ARGUMENT,
  ERR_UNAVAILABLE: Status.UNAVAILABLE,
  // Layer content and registry failures reach containerd only through calls that already
  // fall back (Prepare) or report unavailability (Mounts); elsewhere they are unknown to it.
  ERR_FOOTER_INVALID: Status.UNKNOWN,
  ERR_TOC_INVALID: Status.UNKNOWN,
  ERR_TOC_DIGEST_MISMATCH: Status.UNKNOWN,
  ERR_CHUNK_DIGEST_MISMATCH: Status.UNKNOWN,
  ERR_TAR_INVALID: Status.UNKNOWN,
  ERR_LIMIT_EXCEEDED: Status.UNKNOWN,
  ERR_REGISTRY: Status.UNKNOWN,
  ERR_AUTH: Status.UNKNOWN,
  ERR_FETCH: Status.UNKNOWN,
  ERR_TIMEOUT: Status.UNKNOWN,
  ERR_MANIFEST_INVALID: Status.UNKNOWN,
}

export function grpcCode(e: unknown): Status {
  if (!isStargzError(e)) return Status.UNKNOWN
  return GRPC_BY_CODE[e.code] ?? Status.UNKNOWN
}

export function toServiceError(e: unknown): Partial<ServiceError> {
  const code = grpcCode(e)
  return { code, details: errorMessage(e), message: errorMessage(e), metadata: new Metadata() }
}
