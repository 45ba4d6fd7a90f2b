/**
 * Where to send requests for a registry: containerd's `certs.d` layout.
 *
 *   <hosts_dir>/<registry host[:port]>/hosts.toml   (or <hosts_dir>/_default/hosts.toml)
 *
 *   server = "https://registry.example.com"        # upstream; default https://<host>
 *   capabilities = ["pull", "resolve", "push"]     # top-level keys configure the server
 *   ca = "ca.crt"                                  # string or list; relative to the file's dir
 *   client = [["client.cert", "client.key"]]       # "pem", ["pem", "key"] or a list of those
 *   skip_verify = false
 *   override_path = false                          # true: URL path is the API root (no /v2)
 *   [header]
 *     x-custom = "v"                               # string or list of strings
 *
 *   [host."https://mirror.example.com"]            # mirrors, tried in file order, then server
 *     capabilities = ["pull", "resolve"]
 *     ca = ..., client = ..., skip_verify = ..., override_path = ...
 *     [host."https://mirror.example.com".header]
 *       authorization-hint = "v"
 *
 * Without hosts.toml, Docker's older layout is honoured: *.crt are CAs, X.cert + X.key a client
 * certificate. `plainHttp` makes the default server http; `insecure` skips TLS verification and
 * adds an http fallback after the https server.
 */
import { readFile, readdir } from 'node:fs/promises'
import { join, resolve as resolvePath } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { InvalidArgumentError } from '../errors.js'
import { DOCKER_HUB, DOCKER_HUB_API_HOST } from './reference.js'
import type { TlsOptions } from './transport.js'

export type Capability = 'pull' | 'resolve' | 'push'
const ALL_CAPS: readonly Capability[] = ['pull', 'resolve', 'push']

export const DEFAULT_HOSTS_DIR = '/etc/containerd/certs.d'

export interface Endpoint {
  /** API root ending in "/v2" (or the overridden path), without a trailing slash. */
  readonly base: URL
  readonly capabilities: ReadonlySet<Capability>
  readonly tls: TlsOptions | undefined
  readonly headers: Readonly<Record<string, string>>
  /** Mirrors get `?ns=<registry>` on their requests, as containerd sends. */
  readonly isMirror: boolean
}

export interface HostsOptions {
  hostsDir?: string | undefined
  plainHttp?: boolean | undefined
  insecure?: boolean | undefined
  /**
   * Talk plain HTTP to loopback registries (localhost, 127.0.0.0/8, ::1) that have no hosts.toml
   * saying otherwise, as the reference snapshotter does (docker.MatchLocalhost). The daemon sets
   * it; the CLI, like ctr, wants --plain-http.
   */
  plainHttpLocalhost?: boolean | undefined
}

/**
 * The host whose credentials an endpoint gets: its own, as containerd looks them up (a mirror
 * must never receive the upstream registry's password). Docker Hub's API host answers for
 * "docker.io", under which Docker's config keeps Hub credentials.
 */
export function credentialHost(ep: Endpoint): string {
  return ep.base.host === DOCKER_HUB_API_HOST ? DOCKER_HUB : ep.base.host
}

/** "localhost", "127.x.y.z" or "[::1]", with or without a port. */
export function isLoopbackHost(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '')
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

function fail(file: string, key: string, why: string): never {
  throw new InvalidArgumentError(`${file}: ${key}: ${why}`)
}

function asStringList(v: unknown, file: string, key: string): string[] {
  if (typeof v === 'string') return [v]
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[]
  return fail(file, key, 'expected a string or a list of strings')
}

/** Reads a certificate or key file named in hosts.toml (injectable: the fuzz bench reads none). */
export type PemReader = (path: string) => Promise<Buffer>

async function readPem(read: PemReader, file: string, key: string, dir: string, p: string): Promise<Buffer> {
  const full = resolvePath(dir, p)
  try { return await read(full) } catch (e) { return fail(file, key, `cannot read ${full}: ${(e as Error).message}`) }
}

interface HostSection {
  capabilities?: unknown
  ca?: unknown
  client?: unknown
  skip_verify?: unknown
  override_path?: unknown
  header?: unknown
}

async function sectionTls(read: PemReader, sec: HostSection, file: string, prefix: string, dir: string): Promise<TlsOptions | undefined> {
  const tls: TlsOptions = {}
  if (sec.ca !== undefined) {
    tls.ca = await Promise.all(asStringList(sec.ca, file, `${prefix}ca`).map((p) => readPem(read, file, `${prefix}ca`, dir, p)))
  }
  if (sec.client !== undefined) {
    // Forms: "cert.pem" | ["cert.pem", "key.pem"] | [["cert.pem", "key.pem"], ...]; we use the first pair.
    let pair: string[]
    if (typeof sec.client === 'string') pair = [sec.client]
    else if (Array.isArray(sec.client) && sec.client.length > 0 && Array.isArray(sec.client[0])) pair = asStringList(sec.client[0], file, `${prefix}client`)
    else pair = asStringList(sec.client, file, `${prefix}client`)
    if (pair.length < 1 || pair.length > 2) fail(file, `${prefix}client`, 'expected a certificate path and optionally a key path')
    tls.cert = await readPem(read, file, `${prefix}client`, dir, pair[0] as string)
    tls.key = pair[1] !== undefined ? await readPem(read, file, `${prefix}client`, dir, pair[1]) : tls.cert
  }
  if (sec.skip_verify !== undefined) {
    if (typeof sec.skip_verify !== 'boolean') fail(file, `${prefix}skip_verify`, 'expected true or false')
    tls.skipVerify = sec.skip_verify
  }
  return Object.keys(tls).length > 0 ? tls : undefined
}

function sectionHeaders(sec: HostSection, file: string, prefix: string): Record<string, string> {
  if (sec.header === undefined) return {}
  if (typeof sec.header !== 'object' || sec.header === null || Array.isArray(sec.header)) fail(file, `${prefix}header`, 'expected a table')
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(sec.header as Record<string, unknown>)) {
    out[k.toLowerCase()] = asStringList(v, file, `${prefix}header.${k}`).join(', ')
  }
  return out
}

function sectionCaps(sec: HostSection, file: string, prefix: string, dflt: readonly Capability[]): Set<Capability> {
  if (sec.capabilities === undefined) return new Set(dflt)
  const caps = asStringList(sec.capabilities, file, `${prefix}capabilities`)
  for (const c of caps) if (!ALL_CAPS.includes(c as Capability)) fail(file, `${prefix}capabilities`, `unknown capability ${JSON.stringify(c)} (want pull, resolve, push)`)
  return new Set(caps as Capability[])
}

function apiBase(raw: string, overridePath: boolean, defaultScheme: string, file: string, key: string): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `${defaultScheme}://${raw}`
  let u: URL
  try { u = new URL(withScheme) } catch { return fail(file, key, `invalid URL ${JSON.stringify(raw)}`) }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') fail(file, key, `URL ${JSON.stringify(raw)} must be http or https`)
  let path = u.pathname.replace(/\/+$/, '')
  if (!overridePath) path = path.endsWith('/v2') ? path : `${path}/v2`
  u.pathname = path
  u.search = ''
  u.hash = ''
  return u
}

async function exists(p: string): Promise<boolean> {
  try { await readFile(p); return true } catch { return false }
}

async function legacyCerts(dir: string): Promise<TlsOptions | undefined> {
  let names: string[]
  try { names = await readdir(dir) } catch { return undefined }
  const tls: TlsOptions = {}
  const cas = names.filter((n) => n.endsWith('.crt')).sort()
  if (cas.length) tls.ca = await Promise.all(cas.map((n) => readFile(join(dir, n))))
  const cert = names.find((n) => n.endsWith('.cert') && names.includes(n.slice(0, -5) + '.key'))
  if (cert) {
    tls.cert = await readFile(join(dir, cert))
    tls.key = await readFile(join(dir, cert.slice(0, -5) + '.key'))
  }
  return Object.keys(tls).length > 0 ? tls : undefined
}

function mergeInsecure(tls: TlsOptions | undefined, insecure: boolean): TlsOptions | undefined {
  if (!insecure) return tls
  return { ...tls, skipVerify: true }
}

export interface HostsTomlContext {
  /** The file's path, for messages. */
  file: string
  /** Relative ca/client paths are resolved against this. */
  dir: string
  /** Default server host (the registry, or Docker Hub's API host). */
  apiHost: string
  defaultScheme: 'http' | 'https'
  insecure: boolean
  readPem?: PemReader
}

/**
 * The endpoints a hosts.toml text describes (mirrors in file order, then the server). Throws
 * InvalidArgumentError naming the file and key for anything it cannot use.
 */
export async function endpointsFromHostsToml(text: string, c: HostsTomlContext): Promise<Endpoint[]> {
  const { file, dir, apiHost, defaultScheme, insecure } = c
  const read = c.readPem ?? ((p: string) => readFile(p))
  const out: Endpoint[] = []
  let doc: Record<string, unknown>
  try { doc = parseToml(text) as Record<string, unknown> } catch (e) {
    throw new InvalidArgumentError(`${file}: invalid TOML: ${(e as Error).message}`, { cause: e })
  }
  const hosts = doc.host
  if (hosts !== undefined && (typeof hosts !== 'object' || hosts === null || Array.isArray(hosts))) fail(file, 'host', 'expected tables [host."URL"]')
  for (const [url, secRaw] of Object.entries((hosts ?? {}) as Record<string, unknown>)) {
    if (typeof secRaw !== 'object' || secRaw === null) fail(file, `host."${url}"`, 'expected a table')
    const sec = secRaw as HostSection
    const prefix = `host."${url}".`
    const override = sec.override_path === true
    out.push({
      base: apiBase(url, override, defaultScheme, file, `host."${url}"`),
      capabilities: sectionCaps(sec, file, prefix, ['pull', 'resolve']),
      tls: mergeInsecure(await sectionTls(read, sec, file, prefix, dir), insecure),
      headers: sectionHeaders(sec, file, prefix),
      isMirror: true,
    })
  }
  if (doc.server !== undefined && typeof doc.server !== 'string') fail(file, 'server', 'expected a URL string')
  const top = doc as HostSection
  out.push({
    base: apiBase((doc.server as string | undefined) ?? apiHost, top.override_path === true, defaultScheme, file, 'server'),
    capabilities: sectionCaps(top, file, '', ALL_CAPS),
    tls: mergeInsecure(await sectionTls(read, top, file, '', dir), insecure),
    headers: sectionHeaders(top, file, ''),
    isMirror: false,
  })
  return out
}

/** The endpoints to try for `registry`, in order; the server is last. */
export async function loadEndpoints(registry: string, opts: HostsOptions = {}): Promise<Endpoint[]> {
  const hostsDir = opts.hostsDir ?? DEFAULT_HOSTS_DIR
  const insecure = opts.insecure === true
  const defaultScheme = opts.plainHttp || (opts.plainHttpLocalhost === true && isLoopbackHost(registry)) ? 'http' : 'https'
  const apiHost = registry === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry
  let dir = join(hostsDir, registry)
  let file = join(dir, 'hosts.toml')
  if (!(await exists(file))) {
    const fallback = join(hostsDir, '_default', 'hosts.toml')
    if (await exists(fallback)) { dir = join(hostsDir, '_default'); file = fallback }
  }
  const out: Endpoint[] = []
  if (!(await exists(file))) {
    const tls = mergeInsecure(await legacyCerts(dir), insecure)
    const base = apiBase(apiHost, false, defaultScheme, '(default)', 'server')
    out.push({ base, capabilities: new Set(ALL_CAPS), tls, headers: {}, isMirror: false })
  } else {
    out.push(...await endpointsFromHostsToml(await readFile(file, 'utf8'), { file, dir, apiHost, defaultScheme, insecure }))
  }
  const server = out[out.length - 1] as Endpoint
  if (insecure && server.base.protocol === 'https:') {
    const plain = new URL(server.base.href)
    plain.protocol = 'http:'
    out.push({ ...server, base: plain, tls: undefined })
  }
  return out
}
