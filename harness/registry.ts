/**
 * The real `docker-registry` (distribution 2.8) on 127.0.0.1 for a test: the product's launcher
 * (src/bench/registry.ts: temp dir, filesystem storage, port read back from the registry).
 * Optional: htpasswd basic auth (bcrypt hashes made with perl's crypt(), which on Debian goes
 * through libxcrypt and knows $2b$), token auth against a token server started here (JWTs signed
 * RS256 with a key whose self-signed certificate is the registry's rootcertbundle, per the Docker
 * token spec), and TLS with a throwaway certificate.
 */
import { startBenchRegistry, type BenchRegistry } from '../src/bench/registry.js'
import { execFileSync } from 'node:child_process'
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http'
import { createPrivateKey, randomBytes, sign } from 'node:crypto'
import { writeFile, readFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface User { username: string; password: string }

export interface RegistryOptions {
  htpasswd?: User[]
  token?: TokenServerOptions
  tls?: boolean
  /** Pull-through cache ("proxy:" mode) of this upstream registry URL. */
  proxyRemoteUrl?: string
}

export interface TestRegistry {
  /** "127.0.0.1:PORT" */
  host: string
  url: string
  dir: string
  /** PEM of the TLS certificate when tls was asked for. */
  caPem?: Buffer
  tokenServer?: TokenServer
  close(): Promise<void>
}

function bcryptHash(password: string): string {
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  // The 22nd salt character carries only 2 bits; "e" (index 30) is canonical for those.
  let salt = ''
  for (const b of randomBytes(21)) salt += alphabet[b % 64]
  salt += 'e'
  const out = execFileSync('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, `$2b$05$${salt}`], { encoding: 'utf8' })
  if (!out.startsWith('$2b$')) throw new Error('perl crypt() does not support bcrypt on this system (need libxcrypt)')
  return out
}

/** Self-signed cert + key for 127.0.0.1 (also usable as a CA bundle). */
export function makeCert(dir: string, name: string): { certPath: string; keyPath: string } {
  const certPath = join(dir, `${name}.crt`)
  const keyPath = join(dir, `${name}.key`)
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-addext', 'basicConstraints=critical,CA:TRUE',
  ], { stdio: 'ignore' })
  return { certPath, keyPath }
}

// ---- token server ----------------------------------------------------------------------------

export interface TokenServerOptions {
  /** Users who may pull and push; absent or empty: anyone, anonymously. */
  users?: User[]
  /** Allow anonymous pull even when users are set. */
  anonymousPull?: boolean
  /** expires_in reported to clients (seconds). Default 300. */
  expiresIn?: number
  /** Issue this many tokens whose JWT is already expired (but claim expires_in) first. */
  expiredFirst?: number
}

export interface TokenServer {
  realm: string
  service: string
  issuer: string
  certPath: string
  /** Tokens issued so far. */
  issued: number
  /** Requests refused with 401. */
  refused: number
  /** Scopes of each token request, in order. */
  scopes: string[][]
  /** Change behaviour mid-test. */
  options: TokenServerOptions
  close(): Promise<void>
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url')
}

export async function startTokenServer(dir: string, options: TokenServerOptions = {}): Promise<TokenServer> {
  const { certPath, keyPath } = makeCert(dir, 'token-signer')
  const key = createPrivateKey(await readFile(keyPath))
  const certDer = Buffer.from((await readFile(certPath, 'utf8')).replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64')
  const service = 'stargz-test-registry'
  const issuer = 'stargz-test-issuer'
  const state: TokenServer = {
    realm: '', service, issuer, certPath, issued: 0, refused: 0, scopes: [], options,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()) }),
  }
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const opts = state.options
    const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean)
    state.scopes.push(scopes)
    let user: string | undefined
    const authz = req.headers.authorization
    if (authz?.startsWith('Basic ')) {
      const [u, ...rest] = Buffer.from(authz.slice(6), 'base64').toString('utf8').split(':')
      const p = rest.join(':')
      if (!(opts.users ?? []).some((x) => x.username === u && x.password === p)) {
        state.refused++
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ details: 'invalid credentials' }))
        return
      }
      user = u
    }
    const open = !opts.users || opts.users.length === 0
    const access = scopes.map((s) => {
      const [type, ...mid] = s.split(':')
      const actions = (mid.pop() ?? '').split(',')
      const name = mid.join(':')
      const allowed = actions.filter((a) => open || user !== undefined || (opts.anonymousPull === true && a === 'pull'))
      return { type, name, actions: allowed }
    })
    const now = Math.floor(Date.now() / 1000)
    const expired = (opts.expiredFirst ?? 0) > 0
    if (expired) opts.expiredFirst = (opts.expiredFirst ?? 0) - 1
    const expiresIn = opts.expiresIn ?? 300
    const claims = {
      iss: issuer, sub: user ?? '', aud: service, jti: randomBytes(8).toString('hex'),
      iat: expired ? now - 600 : now - 5, nbf: expired ? now - 600 : now - 5,
      // The registry allows 60 s of leeway on exp, so "expired" must be well past it.
      exp: expired ? now - 300 : now + expiresIn,
      access,
    }
    const head = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] }
    const signingInput = `${b64url(JSON.stringify(head))}.${b64url(JSON.stringify(claims))}`
    const jwt = `${signingInput}.${b64url(sign('sha256', Buffer.from(signingInput), key))}`
    state.issued++
    res.writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ token: jwt, access_token: jwt, expires_in: expiresIn, issued_at: new Date().toISOString() }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const addr = server.address()
  state.realm = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/token`
  return state
}

// ---- registry ----------------------------------------------------------------------------

/** The product's launcher (src/bench/registry.ts) with the test-only config: auth and TLS. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  let tokenServer: TokenServer | undefined
  let caPem: Buffer | undefined
  let reg: BenchRegistry
  try {
    reg = await startBenchRegistry({
      prefix: 'stargz-registry-',
      configure: async (dir) => {
        const http: string[] = []
        const top: string[] = []
        if (opts.tls) {
          const { certPath, keyPath } = makeCert(dir, 'registry')
          caPem = await readFile(certPath)
          http.push('  tls:', `    certificate: ${certPath}`, `    key: ${keyPath}`)
        }
        if (opts.htpasswd) {
          const file = join(dir, 'htpasswd')
          await writeFile(file, opts.htpasswd.map((u) => `${u.username}:${bcryptHash(u.password)}`).join('\n') + '\n')
          top.push('auth:', '  htpasswd:', '    realm: basic-realm', `    path: ${file}`)
        } else if (opts.token) {
          tokenServer = await startTokenServer(dir, opts.token)
          top.push('auth:', '  token:', `    realm: ${tokenServer.realm}`, `    service: ${tokenServer.service}`,
            `    issuer: ${tokenServer.issuer}`, `    rootcertbundle: ${tokenServer.certPath}`)
        }
        if (opts.proxyRemoteUrl) top.push('proxy:', `  remoteurl: ${opts.proxyRemoteUrl}`)
        return { http, top }
      },
    })
  } catch (e) {
    await tokenServer?.close()
    throw e
  }
  const close = async (): Promise<void> => {
    await reg.close()
    await tokenServer?.close()
  }
  const out: TestRegistry = { host: reg.address, url: `${opts.tls ? 'https' : 'http'}://${reg.address}`, dir: reg.dir, close }
  if (caPem) out.caPem = caPem
  if (tokenServer) out.tokenServer = tokenServer
  return out
}
