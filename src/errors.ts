/**
 * One error model for the whole project: exactly one class per code, each with the structured
 * fields its callers need (after undici's lib/core/errors.js), so nobody parses a message. The
 * categories follow containerd's errdefs; the gRPC layer (src/grpc/status.ts) and the FUSE layer
 * (src/fuse/errno.ts) translate codes, each in exactly one table. test/errors.test.ts checks that
 * every code has its class, is raised somewhere, and is in both tables.
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
  | 'ERR_MANIFEST_INVALID'
  | 'ERR_CONFIG_INVALID'

interface Cause { cause?: unknown }

/** The base: never raised itself (abstract), so every error has its code's class. */
export abstract class StargzError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: Cause) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

// ---- containerd errdefs categories --------------------------------------------------------

export class NotFoundError extends StargzError {
  constructor(message: string, options?: Cause) { super('ERR_NOT_FOUND', message, options) }
}
export class AlreadyExistsError extends StargzError {
  constructor(message: string, options?: Cause) { super('ERR_ALREADY_EXISTS', message, options) }
}
export class FailedPreconditionError extends StargzError {
  constructor(message: string, options?: Cause) { super('ERR_FAILED_PRECONDITION', message, options) }
}
export interface InvalidArgumentOptions extends Cause {
  /** The mistake is in how a command was called (flags, arguments): the CLI exits 2 for it. */
  usage?: boolean
}
export class InvalidArgumentError extends StargzError {
  readonly usage: boolean
  constructor(message: string, options?: InvalidArgumentOptions) {
    super('ERR_INVALID_ARGUMENT', message, options)
    this.usage = options?.usage ?? false
  }
}

export interface UnavailableOptions extends Cause {
  /** A background task aborted because an on-demand read needed the bandwidth (src/task). */
  preempted?: boolean
}
export class UnavailableError extends StargzError {
  readonly preempted: boolean
  constructor(message: string, options?: UnavailableOptions) {
    super('ERR_UNAVAILABLE', message, options)
    this.preempted = options?.preempted ?? false
  }
}

// ---- formats ------------------------------------------------------------------------------

/** The footer is not an eStargz / legacy stargz footer: the blob is not eStargz. */
export class FooterError extends StargzError {
  constructor(message: string, options?: Cause) { super('ERR_FOOTER_INVALID', message, options) }
}

/** The TOC is malformed; `entry` and `rule` say which entry broke which rule. */
export class TocError extends StargzError {
  readonly entry: string | undefined
  readonly rule: string
  constructor(rule: string, message: string, entry?: string, options?: Cause) {
    super('ERR_TOC_INVALID', entry === undefined ? `invalid TOC: ${message}` : `invalid TOC entry ${JSON.stringify(entry)}: ${message} (rule: ${rule})`, options)
    this.entry = entry
    this.rule = rule
  }
}

export class TocDigestError extends StargzError {
  constructor(readonly expected: string, readonly actual: string) {
    super('ERR_TOC_DIGEST_MISMATCH', `TOC digest mismatch: expected ${expected}, got ${actual}`)
  }
}

/** Bytes of a chunk did not hash to its chunkDigest: never serve them. */
export class ChunkDigestError extends StargzError {
  constructor(readonly path: string, readonly offset: number, readonly expected: string, readonly actual: string, options?: Cause) {
    super('ERR_CHUNK_DIGEST_MISMATCH', `chunk digest mismatch for ${JSON.stringify(path)} at offset ${offset}: expected ${expected}, got ${actual}`, options)
  }
}

export class TarError extends StargzError {
  constructor(message: string, options?: Cause) { super('ERR_TAR_INVALID', message, options) }
}

export class LimitError extends StargzError {
  constructor(message: string, options?: Cause) { super('ERR_LIMIT_EXCEEDED', message, options) }
}

// ---- registry and network -----------------------------------------------------------------

/** Where a request went; messages name it, fields keep it. */
export interface RequestContext {
  registry?: string
  repository?: string
  digest?: string
  /** Inclusive byte range as sent in the Range header, e.g. "0-1023" or "0-9,20-29". */
  range?: string
  /** URL path (never the query string: redirected URLs carry signatures). */
  path?: string
}

export function describeContext(ctx: RequestContext): string {
  const parts: string[] = []
  if (ctx.registry) parts.push(`registry ${ctx.registry}`)
  if (ctx.repository) parts.push(`repository ${ctx.repository}`)
  if (ctx.digest) parts.push(`digest ${ctx.digest}`)
  if (ctx.range) parts.push(`range ${ctx.range}`)
  return parts.join(', ')
}

function withContext(message: string, ctx: RequestContext): string {
  const where = describeContext(ctx)
  return where ? `${message} (${where})` : message
}

function contextOf(f: RequestContext): RequestContext {
  const ctx: RequestContext = {}
  if (f.registry !== undefined) ctx.registry = f.registry
  if (f.repository !== undefined) ctx.repository = f.repository
  if (f.digest !== undefined) ctx.digest = f.digest
  if (f.range !== undefined) ctx.range = f.range
  if (f.path !== undefined) ctx.path = f.path
  return ctx
}

/** The registry answered with an error we cannot retry away (unexpected status, bad body). */
export class RegistryError extends StargzError {
  readonly context: RequestContext
  constructor(message: string, ctx: RequestContext = {}, readonly status?: number, options?: Cause) {
    super('ERR_REGISTRY', withContext(message, ctx), options)
    this.context = contextOf(ctx)
  }
}

/** Credentials were missing, wrong, or the token service refused them. */
export class AuthError extends StargzError {
  readonly context: RequestContext
  constructor(message: string, ctx: RequestContext = {}, readonly status?: number, options?: Cause) {
    super('ERR_AUTH', withContext(message, ctx), options)
    this.context = contextOf(ctx)
  }
}

/** What a FetchError knows beyond the request: the bytes that were wrong, the chunk they were. */
export interface FetchFields extends RequestContext {
  /** Content digest expected / computed (a blob or manifest whose bytes hash wrong). */
  expected?: string
  actual?: string
  /** TOC name of the file whose chunk could not be read. */
  file?: string
  chunkOffset?: number
  blobOffset?: number
}

/**
 * Bytes could not be had: the network failed after all retries, a body was short, fetched
 * content hashed wrong, a gzip member did not inflate.
 */
export class FetchError extends StargzError {
  readonly context: RequestContext
  readonly expected: string | undefined
  readonly actual: string | undefined
  readonly file: string | undefined
  readonly chunkOffset: number | undefined
  readonly blobOffset: number | undefined
  constructor(message: string, fields: FetchFields = {}, readonly status?: number, options?: Cause) {
    super('ERR_FETCH', withContext(message, fields), options)
    this.context = contextOf(fields)
    this.expected = fields.expected
    this.actual = fields.actual
    this.file = fields.file
    this.chunkOffset = fields.chunkOffset
    this.blobOffset = fields.blobOffset
  }
}

/** Content whose digest differs from the one it was fetched by. */
export function digestMismatch(expected: string, actual: string, ctx: RequestContext = {}): FetchError {
  return new FetchError(`content digest mismatch: expected ${expected}, got ${actual}`, { ...ctx, expected, actual })
}

export interface TimeoutFields extends RequestContext {
  /** The deadline that passed. */
  ms?: number
  /** The mountpoint of a remote mount that timed out. */
  mountpoint?: string
  /**
   * The mount may be on `mountpoint` now or later: it did not stop when aborted, or it landed
   * after its deadline and could not be undone. Never unpack into that directory.
   */
  mayHoldMount?: boolean
}

/** A deadline passed: a registry request on every attempt, a prefetch, a remote mount. */
export class TimeoutError extends StargzError {
  readonly context: RequestContext
  readonly ms: number | undefined
  readonly mountpoint: string | undefined
  readonly mayHoldMount: boolean
  constructor(message: string, fields: TimeoutFields = {}, options?: Cause) {
    super('ERR_TIMEOUT', withContext(message, fields), options)
    this.context = contextOf(fields)
    this.ms = fields.ms
    this.mountpoint = fields.mountpoint
    this.mayHoldMount = fields.mayHoldMount ?? false
  }
}

/** A manifest or index that does not parse or validate. */
export class ManifestError extends StargzError {
  readonly context: RequestContext
  constructor(message: string, ctx: RequestContext = {}, options?: Cause) {
    super('ERR_MANIFEST_INVALID', withContext(message, ctx), options)
    this.context = contextOf(ctx)
  }
}

// ---- configuration ------------------------------------------------------------------------

/** A config file or override that does not validate; `key` names it ('' for the whole file). */
export class ConfigError extends StargzError {
  constructor(readonly key: string, message: string, options?: Cause) {
    super('ERR_CONFIG_INVALID', key === '' ? message : `config key ${key}: ${message}`, options)
  }
}

/** Every code's class: the one place to look a code up (tests walk it). */
export const ERROR_CLASSES = {
  ERR_NOT_FOUND: NotFoundError,
  ERR_ALREADY_EXISTS: AlreadyExistsError,
  ERR_FAILED_PRECONDITION: FailedPreconditionError,
  ERR_INVALID_ARGUMENT: InvalidArgumentError,
  ERR_UNAVAILABLE: UnavailableError,
  ERR_FOOTER_INVALID: FooterError,
  ERR_TOC_INVALID: TocError,
  ERR_TOC_DIGEST_MISMATCH: TocDigestError,
  ERR_CHUNK_DIGEST_MISMATCH: ChunkDigestError,
  ERR_TAR_INVALID: TarError,
  ERR_LIMIT_EXCEEDED: LimitError,
  ERR_REGISTRY: RegistryError,
  ERR_AUTH: AuthError,
  ERR_FETCH: FetchError,
  ERR_TIMEOUT: TimeoutError,
  ERR_MANIFEST_INVALID: ManifestError,
  ERR_CONFIG_INVALID: ConfigError,
} as const satisfies Record<ErrorCode, abstract new (...args: never[]) => StargzError>

/** THE answer to "is this blob not eStargz?" (convert keeps it as is, mount may fetch it whole). */
export function isNotEstargz(e: unknown): e is FooterError {
  return e instanceof FooterError
}

/** A background task gave way to on-demand work (retry it later; not a failure). */
export function isPreempted(e: unknown): boolean {
  return e instanceof UnavailableError && e.preempted
}

export function isStargzError(e: unknown): e is StargzError {
  return e instanceof StargzError
}

/** Best-effort message for unknown throwables, for CLI output and logs. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message
  return String(e)
}
