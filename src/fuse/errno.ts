/**
 * StargzError → errno, in one place (the gRPC layer has its own table). fuse-native expects
 * negative errno values from handlers.
 */
import { constants } from 'node:os'
import { isStargzError, type ErrorCode } from '../errors.js'

const E = constants.errno

export const ENOENT = -E.ENOENT
export const EIO = -E.EIO
export const EROFS = -E.EROFS
export const EINVAL = -E.EINVAL
export const EISDIR = -E.EISDIR
export const ENOTDIR = -E.ENOTDIR
export const ERANGE = -E.ERANGE
export const EINTR = -E.EINTR
export const EACCES = -E.EACCES
export const EBADF = -E.EBADF
export const ENODATA = -E.ENODATA
export const ENOTSUP = -E.ENOTSUP

/** Every code's errno; checked to be total by test/errors. */
export const ERRNO_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  ERR_NOT_FOUND: ENOENT,
  ERR_INVALID_ARGUMENT: EINVAL,
  ERR_ALREADY_EXISTS: -E.EEXIST,
  ERR_LIMIT_EXCEEDED: -E.EFBIG,
  // Everything about getting or checking the bytes is an I/O error to the reader: the data is
  // not available right now, and wrong bytes are never an option.
  ERR_FAILED_PRECONDITION: EIO,
  ERR_UNAVAILABLE: EIO,
  ERR_FOOTER_INVALID: EIO,
  ERR_TOC_INVALID: EIO,
  ERR_TOC_DIGEST_MISMATCH: EIO,
  ERR_CHUNK_DIGEST_MISMATCH: EIO,
  ERR_TAR_INVALID: EIO,
  ERR_REGISTRY: EIO,
  ERR_AUTH: EIO,
  ERR_FETCH: EIO,
  ERR_TIMEOUT: EIO,
  ERR_MANIFEST_INVALID: EIO,
  ERR_CONFIG_INVALID: EIO,
}

/** Negative errno for anything a handler caught. Unknown errors are EIO, never success. */
export function toErrno(e: unknown): number {
  if (isStargzError(e)) return ERRNO_BY_CODE[e.code] ?? EIO
  if (e instanceof Error && e.name === 'AbortError') return EINTR
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  if (typeof code === 'string' && code in E) {
    const n = E[code as keyof typeof E]
    if (typeof n === 'number' && n > 0) return -n
  }
  return EIO
}
