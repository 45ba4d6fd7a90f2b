/**
 * Image references: `[host[:port]/]path[:tag][@algorithm:hex]`.
 *
 * The first path component is a registry host only when it looks like one: it contains a "." or
 * a ":", or is exactly "localhost". Otherwise the reference is on Docker Hub, whose one-component
 * names live under "library/". Path components are lower-case alphanumerics joined by ".", "_",
 * "__" or runs of "-"; tags are up to 128 word characters, dots and dashes, not starting with
 * either of the last two.
 */
import { InvalidArgumentError } from '../errors.js'

export const DOCKER_HUB = 'docker.io'
/** The host that actually serves Docker Hub's registry API. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io'

const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/
const HOST_LABEL = /^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$/
const IPV6 = /^\[[0-9A-Fa-f:.]+\]$/
const DIGEST_HEX: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 }
const MAX_NAME = 255

export interface Reference {
  /** Registry host as written (normalised for Docker Hub), with port if any: "127.0.0.1:5000". */
  readonly registry: string
  /** Repository path: "library/busybox". */
  readonly repository: string
  readonly tag: string | undefined
  readonly digest: string | undefined
}

function invalid(input: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid image reference ${JSON.stringify(input)}: ${why}`)
}

/** Throws InvalidArgumentError unless `d` is "algorithm:hex" with the right hex length. */
export function validateDigest(d: string, what = 'digest'): string {
  const m = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-f0-9]+)$/.exec(d)
  if (!m) throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(d)}: want algorithm:lowercase-hex`)
  const want = DIGEST_HEX[m[1] as string]
  if (want === undefined) throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(d)}: unsupported algorithm ${m[1]}`)
  if ((m[2] as string).length !== want) throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(d)}: ${m[1]} needs ${want} hex digits`)
  return d
}

function validHost(host: string): boolean {
  let name = host
  const colon = host.lastIndexOf(':')
  if (colon >= 0 && !host.endsWith(']')) {
    const port = host.slice(colon + 1)
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) return false
    name = host.slice(0, colon)
  }
  if (IPV6.test(name)) return true
  if (name.length === 0 || name.length > 253) return false
  return name.split('.').every((l) => HOST_LABEL.test(l))
}

function looksLikeHost(first: string): boolean {
  return first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')
}

export function parseReference(input: string): Reference {
  if (input.length === 0) throw invalid(input, 'empty')
  if (/\s/.test(input)) throw invalid(input, 'contains whitespace')
  let rest = input
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    const d = rest.slice(at + 1)
    rest = rest.slice(0, at)
    try { digest = validateDigest(d) } catch (e) { throw invalid(input, (e as Error).message) }
  }
  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.lastIndexOf(':')
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) throw invalid(input, `tag ${JSON.stringify(tag)} is not valid (up to 128 of [A-Za-z0-9_.-], not starting with "." or "-")`)
  }
  if (rest.length === 0) throw invalid(input, 'no repository name')
  let registry = DOCKER_HUB
  let path = rest
  const slash = rest.indexOf('/')
  if (slash >= 0 && looksLikeHost(rest.slice(0, slash))) {
    registry = rest.slice(0, slash)
    path = rest.slice(slash + 1)
    if (!validHost(registry)) throw invalid(input, `registry host ${JSON.stringify(registry)} is not valid`)
  }
  if (registry === 'index.docker.io' || registry === DOCKER_HUB_API_HOST) registry = DOCKER_HUB
  if (path.length === 0) throw invalid(input, 'no repository name')
  if (path !== path.toLowerCase()) throw invalid(input, 'repository name must be lower case')
  for (const c of path.split('/')) {
    if (!COMPONENT.test(c)) throw invalid(input, `repository path component ${JSON.stringify(c)} is not valid`)
  }
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`
  if (registry.length + 1 + path.length > MAX_NAME) throw invalid(input, `name longer than ${MAX_NAME} characters`)
  return { registry, repository: path, tag: tag ?? (digest === undefined ? 'latest' : undefined), digest }
}

/** The reference in its fully qualified form: "docker.io/library/busybox:latest@sha256:…". */
export function formatReference(ref: Reference): string {
  let s = `${ref.registry}/${ref.repository}`
  if (ref.tag !== undefined) s += `:${ref.tag}`
  if (ref.digest !== undefined) s += `@${ref.digest}`
  return s
}

/** What to ask the registry for: the digest if pinned, else the tag. */
export function manifestReference(ref: Reference): string {
  return ref.digest ?? ref.tag ?? 'latest'
}

/** A copy pointing at another digest (for platform-specific manifests of an index). */
export function withDigest(ref: Reference, digest: string): Reference {
  return { registry: ref.registry, repository: ref.repository, tag: ref.tag, digest }
}
