/**
 * Registry-specific subclasses of the project error model. Each carries the coordinates of the
 * failed request (registry, repository, digest, byte range) so that messages name the thing that
 * went wrong without callers having to re-assemble it.
 */
import { StargzError, type ErrorCode } from '../errors.js'

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

abstract class ContextError extends StargzError {
  readonly context: RequestContext
  readonly status: number | undefined
  constructor(code: ErrorCode, message: string, ctx: RequestContext, status?: number, options?: { cause?: unknown }) {
    super(code, withContext(message, ctx), options)
    this.context = ctx
    this.status = status
  }
}

/** The registry answered with an error we cannot retry away (unexpected status, bad body). */
export class RegistryError extends ContextError {
  constructor(message: string, ctx: RequestContext, status?: number, options?: { cause?: unknown }) {
    super('ERR_REGISTRY', message, ctx, status, options)
  }
}

/** Credentials were missing, wrong, or the token service refused them. */
export class AuthError extends ContextError {
  constructor(message: string, ctx: RequestContext, status?: number, options?: { cause?: unknown }) {
    super('ERR_AUTH', message, ctx, status, options)
  }
}

/** The network failed (reset, refused, truncated body) after all retries. */
export class FetchError extends ContextError {
  constructor(message: string, ctx: RequestContext, status?: number, options?: { cause?: unknown }) {
    super('ERR_FETCH', message, ctx, status, options)
  }
}

/** A connect, headers or body timeout fired on every attempt. */
export class RegistryTimeoutError extends ContextError {
  constructor(message: string, ctx: RequestContext, options?: { cause?: unknown }) {
    super('ERR_TIMEOUT', message, ctx, undefined, options)
  }
}

/** A manifest or index that does not parse or validate. */
export class ManifestError extends ContextError {
  constructor(message: string, ctx: RequestContext, options?: { cause?: unknown }) {
    super('ERR_MANIFEST_INVALID', message, ctx, undefined, options)
  }
}

/** Content whose sha256 differs from the digest it was fetched by. */
export class DigestMismatchError extends ContextError {
  constructor(expected: string, actual: string, ctx: RequestContext) {
    super('ERR_FETCH', `content digest mismatch: expected ${expected}, got ${actual}`, ctx)
  }
}
