/**
 * The CRI keychain (the reference's `cri_keychain`): the registry credentials kubelet sends with
 * each PullImage (resolved from the pod's imagePullSecrets), kept in memory so the lazy reads of
 * that image's layers can authenticate long after the pull returned.
 *
 * Entries are keyed by image reference and expire (`ttlMs` after the last pull that carried them),
 * so a secret removed from the cluster stops being used once its pods stop being pulled. Lookups
 * come from the registry client, which asks per registry host: the newest live entry for that
 * host answers. Nothing here is ever logged or written to disk.
 */
import type { Credential, CredentialProvider } from '../registry/credentials.js'
import { parseReference } from '../registry/reference.js'

/** runtime.v1.AuthConfig as decoded by proto-loader (keepCase). */
export interface CriAuthConfig {
  username?: string
  password?: string
  auth?: string
  server_address?: string
  identity_token?: string
  registry_token?: string
}

interface Entry {
  host: string
  credential: Credential
  expiresAt: number
  /** Insertion order across the whole keychain, newest highest. */
  seq: number
}

export interface CriKeychainOptions {
  ttlMs: number
  /** Most references kept; the least recently pulled go first. */
  maxEntries?: number
  now?: () => number
}

/**
 * The credential in an AuthConfig, or undefined when it carries none we can use. `registry_token`
 * (a ready bearer token) is not used: the registry client asks the token server itself.
 */
export function credentialFromAuthConfig(a: CriAuthConfig | null | undefined): Credential | undefined {
  if (!a) return undefined
  if (a.identity_token) return a.username ? { identityToken: a.identity_token, username: a.username } : { identityToken: a.identity_token }
  if (a.username && a.password !== undefined && a.password !== '') return { username: a.username, password: a.password }
  if (a.auth) {
    const decoded = Buffer.from(a.auth, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
  }
  return undefined
}

export class CriKeychain implements CredentialProvider {
  private readonly entries = new Map<string, Entry>()
  private readonly now: () => number
  private readonly maxEntries: number
  private seq = 0

  constructor(private readonly opts: CriKeychainOptions) {
    this.now = opts.now ?? Date.now
    this.maxEntries = opts.maxEntries ?? 4096
  }

  /** Keep the credentials of one PullImage; returns false when the request carried none. */
  remember(imageRef: string, auth: CriAuthConfig | null | undefined): boolean {
    const credential = credentialFromAuthConfig(auth)
    if (!credential) return false
    const host = parseReference(imageRef).registry
    this.entries.delete(imageRef) // re-insert: Map order is the LRU order
    this.entries.set(imageRef, { host, credential, expiresAt: this.now() + this.opts.ttlMs, seq: ++this.seq })
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string
      this.entries.delete(oldest)
    }
    return true
  }

  /** Live references (for tests and status): never the credentials. */
  references(): string[] {
    this.sweep()
    return [...this.entries.keys()]
  }

  async get(registry: string): Promise<Credential | undefined> {
    this.sweep()
    let best: Entry | undefined
    for (const e of this.entries.values()) if (e.host === registry && (!best || e.seq > best.seq)) best = e
    return best?.credential
  }

  private sweep(): void {
    const now = this.now()
    for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k)
  }
}

/** The first provider that knows the registry answers (CRI keychain first, then Docker config). */
export class ChainedCredentials implements CredentialProvider {
  constructor(private readonly providers: readonly CredentialProvider[]) {}
  async get(registry: string): Promise<Credential | undefined> {
    for (const p of this.providers) {
      const c = await p.get(registry)
      if (c) return c
    }
    return undefined
  }
}
