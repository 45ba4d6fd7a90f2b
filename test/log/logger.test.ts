/**
 * log_format: pino's own JSON by default; "json" and "text" as containerd (logrus) writes them:
 * level names (warn is "warning"), RFC 3339 UTC time with nine fractional digits, msg; text is
 * `time="…" level=… msg="…"` then the other fields sorted. Redaction holds in every format.
 */
import t from 'tap'
import { createRootLogger, toLogrusText, type LogFormat } from '../../src/log/logger.js'

function capture(format: LogFormat): { lines: string[]; log: ReturnType<typeof createRootLogger> } {
  const lines: string[] = []
  const log = createRootLogger({ format, level: 'debug', destination: { write: (s: string) => { lines.push(s) } } })
  return { lines, log }
}

const RFC3339_NANO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/

t.test('pino (default): numeric level, epoch-ms time', async (t) => {
  const { lines, log } = capture('pino')
  log.warn({ key: 'x' }, 'hello')
  const rec = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>
  t.equal(rec.level, 40)
  t.type(rec.time, 'number')
  t.equal(rec.msg, 'hello')
})

t.test('json: logrus level names and RFC 3339 time', async (t) => {
  const { lines, log } = capture('json')
  log.child({ component: 'fs' }).warn({ digest: 'sha256:ab' }, 'layer-mounted')
  log.info('ready')
  log.debug({ password: 'hunter2' }, 'creds')
  const [warn, info, debug] = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  t.equal(warn?.level, 'warning', 'warn is "warning" as logrus names it')
  t.equal(info?.level, 'info')
  t.match(String(warn?.time), RFC3339_NANO)
  t.equal(warn?.msg, 'layer-mounted')
  t.equal(warn?.component, 'fs')
  t.equal(warn?.digest, 'sha256:ab')
  t.notOk('pid' in (warn ?? {}), 'no pino-only fields')
  t.equal(debug?.password, '[redacted]')
})

t.test('text: logrus text lines', async (t) => {
  const { lines, log } = capture('text')
  log.warn({ key: 'directory_cache.max_lru_cache_entry', n: 3, path: '/var/lib/x y' }, 'config-key-not-implemented')
  log.error({ token: 'abc' }, 'with "quotes"')
  t.match(lines[0] ?? '', /^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z" level=warning msg=config-key-not-implemented key=directory_cache\.max_lru_cache_entry n=3 path="\/var\/lib\/x y"\n$/)
  t.match(lines[1] ?? '', /level=error msg="with \\"quotes\\"" token="\[redacted\]"\n$/)
  t.equal(lines.length, 2, 'one line each')
})

t.test('toLogrusText passes a non-JSON line through', async (t) => {
  t.equal(toLogrusText('not json'), 'not json\n')
})
