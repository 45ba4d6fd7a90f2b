/**
 * Start the real `docker-registry` (distribution 2.8) on 127.0.0.1 for a test, in a temp dir with
 * filesystem storage. Optional: htpasswd basic auth (bcrypt hashes made with perl's crypt(), which
 * on Debian goes through libxcrypt and knows $2b$), token auth against a token server started
 * here (JWTs signed RS256 with a key whose self-signed certificate is the registry's
 * rootcertbundle, per the Docker token spec), and TLS with a throwaway certificate.
 */
import { freePort } from '../../src/bench/registry.js'
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http'
import { createPrivateKey, randomBytes, sign } from 'node:crypto'
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

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

export { freePort }

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

// ---- registry --------------------------------------------------------------------------------

export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-registry-'))
  let child: ChildProcess | undefined
  let tokenServer: TokenServer | undefined
  const cleanup = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child?.once('exit', r))
      child.kill('SIGTERM')
      await Promise.race([exited, sleep(5000)])
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
    await tokenServer?.close()
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const port = await freePort()
    const host = `127.0.0.1:${port}`
    const lines = [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: ${host}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
    ]
    let caPem: Buffer | undefined
    if (opts.tls) {
      const { certPath, keyPath } = makeCert(dir, 'registry')
      caPem = await readFile(certPath)
      lines.push('  tls:', `    certificate: ${certPath}`, `    key: ${keyPath}`)
    }
    if (opts.htpasswd) {
      const file = join(dir, 'htpasswd')
      await writeFile(file, opts.htpasswd.map((u) => `${u.username}:${bcryptHash(u.password)}`).join('\n') + '\n')
      lines.push('auth:', '  htpasswd:', '    realm: basic-realm', `    path: ${file}`)
    } else if (opts.token) {
      tokenServer = await startTokenServer(dir, opts.token)
      lines.push('auth:', '  token:', `    realm: ${tokenServer.realm}`, `    service: ${tokenServer.service}`,
        `    issuer: ${tokenServer.issuer}`, `    rootcertbundle: ${tokenServer.certPath}`)
    }
    if (opts.proxyRemoteUrl) lines.push('proxy:', `  remoteurl: ${opts.proxyRemoteUrl}`)
    const configPath = join(dir, 'config.yml')
    await writeFile(configPath, lines.join('\n') + '\n')
    const logPath = join(dir, 'registry.log')
    const { openSync } = await import('node:fs')
    const logFd = openSync(logPath, 'a')
    child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', logFd, logFd] })
    const url = `${opts.tls ? 'https' : 'http'}://${host}`
    await waitReady(host, child, logPath)
    const out: TestRegistry = { host, url, dir, close: cleanup }
    if (caPem) out.caPem = caPem
    if (tokenServer) out.tokenServer = tokenServer
    return out
  } catch (e) {
    await cleanup()
    throw e
  }
}

async function waitReady(host: string, child: ChildProcess, logPath: string): Promise<void> {
  const [h, p] = host.split(':')
  const { connect } = await import('node:net')
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${await readFile(logPath, 'utf8').catch(() => '')}`)
    const ok = await new Promise<boolean>((r) => {
      const s = connect(Number(p), h as string, () => { s.destroy(); r(true) })
      s.on('error', () => r(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`docker-registry did not start listening on ${host}: ${await readFile(logPath, 'utf8').catch(() => '')}`)
}
