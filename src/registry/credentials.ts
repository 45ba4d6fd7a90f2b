/**
 * Registry credentials from the Docker client configuration:
 * `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
 *
 *   { "auths": { "<host>": { "auth": base64("user:pass") } | { "username", "password" }
 *                                    | { "identitytoken" } },
 *     "credHelpers": { "<host>": "<name>" },   # runs docker-credential-<name> get
 *     "credsStore": "<name>" }                 # helper for every other host
 *
 * A helper reads the server URL on stdin and prints {"ServerURL","Username","Secret"}; a
 * Username of "<token>" means Secret is an identity (refresh) token. Secrets never reach
 * error messages or logs.
 */
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { InvalidArgumentError } from '../errors.js'
import { AuthError } from './errors.js'
import { DOCKER_HUB } from './reference.js'

export interface Credential {
  username?: string
  password?: string
  /** OAuth2 refresh token (Docker "identitytoken"). */
  identityToken?: string
}

export interface CredentialProvider {
  get(registry: string): Promise<Credential | undefined>
}

/** Fixed credentials per registry host, for tests and programmatic use. */
export class StaticCredentials implements CredentialProvider {
  constructor(private readonly map: Record<string, Credential>) {}
  async get(registry: string): Promise<Credential | undefined> { return this.map[registry] }
}

interface AuthEntry { auth?: unknown; username?: unknown; password?: unknown; identitytoken?: unknown }
interface DockerConfigFile { auths?: Record<string, AuthEntry>; credHelpers?: Record<string, string>; credsStore?: string }

const HUB_KEYS = ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io', 'https://registry-1.docker.io']

function hostOfKey(key: string): string {
  try { return new URL(/^[a-z]+:\/\//i.test(key) ? key : `https://${key}`).host } catch { return key }
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_CONFIG ? join(env.DOCKER_CONFIG, 'config.json') : join(homedir(), '.docker', 'config.json')
}

export interface DockerConfigOptions {
  path?: string
  env?: NodeJS.ProcessEnv
  helperTimeoutMs?: number
}

export class DockerConfigCredentials implements CredentialProvider {
  private readonly path: string
  private readonly env: NodeJS.ProcessEnv
  private readonly helperTimeoutMs: number
  private config: Promise<DockerConfigFile> | undefined
  private readonly cache = new Map<string, Promise<Credential | undefined>>()

  constructor(opts: DockerConfigOptions = {}) {
    this.env = opts.env ?? process.env
    this.path = opts.path ?? dockerConfigPath(this.env)
    this.helperTimeoutMs = opts.helperTimeoutMs ?? 10_000
  }

  private load(): Promise<DockerConfigFile> {
    this.config ??= (async () => {
      let text: string
      try { text = await readFile(this.path, 'utf8') } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {}
        throw new InvalidArgumentError(`cannot read Docker config ${this.path}: ${(e as Error).message}`, { cause: e })
      }
      try { return JSON.parse(text) as DockerConfigFile } catch (e) {
        throw new InvalidArgumentError(`Docker config ${this.path} is not valid JSON: ${(e as Error).message}`, { cause: e })
      }
    })()
    return this.config
  }

  get(registry: string): Promise<Credential | undefined> {
    let p = this.cache.get(registry)
    if (!p) {
      p = this.lookup(registry)
      p.catch(() => this.cache.delete(registry))
      this.cache.set(registry, p)
    }
    return p
  }

  private async lookup(registry: string): Promise<Credential | undefined> {
    const cfg = await this.load()
    const keys = registry === DOCKER_HUB ? HUB_KEYS : [registry]
    const helperName = keys.map((k) => cfg.credHelpers?.[k]).find((h) => typeof h === 'string')
    const serverUrl = registry === DOCKER_HUB ? 'https://index.docker.io/v1/' : registry
    if (helperName) return this.runHelper(helperName, serverUrl, registry)
    const auths = cfg.auths ?? {}
    let entry: AuthEntry | undefined
    for (const k of keys) if (auths[k]) { entry = auths[k]; break }
    if (!entry && registry !== DOCKER_HUB) {
      const k = Object.keys(auths).find((key) => hostOfKey(key) === registry)
      if (k) entry = auths[k]
    }
    const fromEntry = entry ? this.decodeEntry(entry, registry) : undefined
    if (fromEntry) return fromEntry
    if (typeof cfg.credsStore === 'string' && cfg.credsStore !== '') return this.runHelper(cfg.credsStore, serverUrl, registry)
    return undefined
  }

  private decodeEntry(e: AuthEntry, registry: string): Credential | undefined {
    if (typeof e.identitytoken === 'string' && e.identitytoken !== '') {
      const c: Credential = { identityToken: e.identitytoken }
      if (typeof e.username === 'string') c.username = e.username
      return c
    }
    if (typeof e.auth === 'string' && e.auth !== '') {
      const decoded = Buffer.from(e.auth, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon < 0) throw new InvalidArgumentError(`Docker config ${this.path}: auths entry for ${registry} has an "auth" value that is not base64 of user:password`)
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
    }
    if (typeof e.username === 'string' && typeof e.password === 'string') return { username: e.username, password: e.password }
    return undefined
  }

  private runHelper(name: string, serverUrl: string, registry: string): Promise<Credential | undefined> {
    const exe = `docker-credential-${name}`
    return new Promise((resolve, reject) => {
      const child = spawn(exe, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], env: this.env, timeout: this.helperTimeoutMs })
      const out: Buffer[] = []
      const err: Buffer[] = []
      child.stdout.on('data', (b: Buffer) => out.push(b))
      child.stderr.on('data', (b: Buffer) => err.push(b))
      child.on('error', (e) => {
        const enoent = (e as NodeJS.ErrnoException).code === 'ENOENT'
        reject(new AuthError(enoent ? `credential helper ${exe} is not on PATH` : `credential helper ${exe} failed to start: ${e.message}`, { registry }, undefined, { cause: e }))
      })
      child.on('close', (code, signal) => {
        const stdout = Buffer.concat(out).toString('utf8')
        if (code !== 0) {
          const msg = (Buffer.concat(err).toString('utf8') + stdout).trim()
          if (/credentials not found/i.test(msg)) { resolve(undefined); return }
          // Helper output may echo secrets on some failures: keep only its first line, bounded.
          const first = msg.split('\n')[0]?.slice(0, 200) ?? ''
          reject(new AuthError(`credential helper ${exe} exited with ${signal ?? code}${first ? `: ${first}` : ''}`, { registry }))
          return
        }
        try {
          const j = JSON.parse(stdout) as { Username?: unknown; Secret?: unknown }
          if (typeof j.Secret !== 'string' || j.Secret === '') { resolve(undefined); return }
          if (j.Username === '<token>') resolve({ identityToken: j.Secret })
          else resolve({ username: typeof j.Username === 'string' ? j.Username : '', password: j.Secret })
        } catch {
          reject(new AuthError(`credential helper ${exe} printed something that is not JSON`, { registry }))
        }
      })
      child.stdin.on('error', () => { /* helper exited early; reported by 'close' */ })
      child.stdin.end(serverUrl + '\n')
    })
  }
}
