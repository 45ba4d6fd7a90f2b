/**
 * One error model for the whole project. Every error we raise is a StargzError with a fixed
 * `code`; categories follow containerd's errdefs so the gRPC layer and the FUSE layer can
 * translate them in exactly one place each (see src/grpc and src/fuse).
 */
export type ErrorCode =
  | 'ERR_NOT_FOUND'
  | 'ERR_ALREADY_EXISTS'
  | 'ERR_FAILED_PRECONDITION'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_UNAVAILABLE'
  | 'ERR_FOOTER_INVALID'
  | 'ERR_TOC_INVALID'
  | 'ERR_TOC_DIGEST_MISMATCH'
  | 'ERR_CHUNK_DIGEST_MISMATCH'
  | 'ERR_TAR_INVALID'
  | 'ERR_LIMIT_EXCEEDED'
  | 'ERR_REGISTRY'
  | 'ERR_AUTH'
  | 'ERR_FETCH'
  | 'ERR_TIMEOUT'
  | 'ERR_REFERENCE_INVALID'
  | 'ERR_MANIFEST_INVALID'
  | 'ERR_CONFIG_INVALID'

export class StargzError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

export class NotFoundError extends StargzError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_NOT_FOUND', message, options) }
}
export class AlreadyExistsError extends StargzError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_ALREADY_EXISTS', message, options) }
}
export class FailedPreconditionError extends StargzError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_FAILED_PRECONDITION', message, options) }
}
export class InvalidArgumentError extends StargzError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_INVALID_ARGUMENT', message, options) }
}
export class UnavailableError extends StargzError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_UNAVAILABLE', message, options) }
}

/** The footer is not an eStargz / legacy stargz footer. */
export class FooterError extends StargzError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_FOOTER_INVALID', message, options) }
}

/** The TOC is malformed; `entry` and `rule` say which entry broke which rule. */
export class TocError extends StargzError {
  readonly entry: string | undefined
  readonly rule: string
  constructor(rule: string, message: string, entry?: string, options?: { cause?: unknown }) {
    super('ERR_TOC_INVALID', entry === undefined ? `invalid TOC: ${message}` : `invalid TOC entry ${JSON.stringify(entry)}: ${message} (rule: ${rule})`, options)
    this.entry = entry
    this.rule = rule
  }
}

export class TocDigestError extends StargzError {
  constructor(expected: string, actual: string) {
    super('ERR_TOC_DIGEST_MISMATCH', `TOC digest mismatch: expected ${expected}, got ${actual}`)
  }
}

/** Bytes of a chunk did not hash to its chunkDigest: never serve them. */
export class ChunkDigestError extends StargzError {
  constructor(readonly path: string, readonly offset: number, expected: string, actual: string) {
    super('ERR_CHUNK_DIGEST_MISMATCH', `chunk digest mismatch for ${JSON.stringify(path)} at offset ${offset}: expected ${expected}, got ${actual}`)
  }
}

export class TarError extends StargzError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_TAR_INVALID', message, options) }
}

export class LimitError extends StargzError {
  constructor(message: string) { super('ERR_LIMIT_EXCEEDED', message) }
}

/** THE answer to "is this blob not eStargz?" (convert keeps it as is, mount may fetch it whole). */
export function isNotEstargz(e: unknown): e is FooterError {
  return e instanceof FooterError
}

export function isStargzError(e: unknown): e is StargzError {
  return e instanceof StargzError
}

/** Best-effort message for unknown throwables, for CLI output and logs. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message
  return String(e)
}
