/**
 * CLI hygiene over every command of both binaries, table-driven from the command table: `--help`
 * and `-h` exit 0 and list every flag the parser accepts; an unknown flag, a missing value and
 * wrong positionals exit 2 (usage error) with a pointer to --help; `--version` matches
 * package.json. In-process through runCommand (what main.ts runs), plus the real binaries once.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { COMMANDS } from '../../src/cli/command-table.js'
import { flagSpecOf, parseCommand, UsageError } from '../../src/cli/args.js'
import { runCommand, type Command } from '../../src/cli/dispatch.js'
import { VERSION } from '../../src/cli/version.js'
import { FLAGS as DAEMON_FLAGS, parseArgs as parseDaemonArgs } from '../../daemon/args.js'
import { REPO, runStargz } from '../../harness/cli.js'

/** Run a command in-process, capturing what it writes. */
async function capture(cmd: Command, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const out = process.stdout.write.bind(process.stdout)
  const err = process.stderr.write.bind(process.stderr)
  process.stdout.write = ((c: string | Uint8Array) => { stdout += c.toString(); return true }) as typeof process.stdout.write
  process.stderr.write = ((c: string | Uint8Array) => { stderr += c.toString(); return true }) as typeof process.stderr.write
  try {
    const code = await runCommand(cmd, argv)
    return { code, stdout, stderr }
  } finally {
    process.stdout.write = out
    process.stderr.write = err
  }
}

for (const [name, load] of Object.entries(COMMANDS)) {
  t.test(`stargz ${name}`, async (t) => {
    const cmd = await load()
    t.equal(cmd.spec.name, `stargz ${name}`, 'spec names the command')
    const help = await capture(cmd, ['--help'])
    t.equal(help.code, 0, '--help exits 0')
    t.match(help.stdout, new RegExp(`^usage: stargz ${name}`), 'usage line first')
    const accepted = flagSpecOf(cmd.spec)
    for (const f of [...(accepted.values ?? []), ...(accepted.booleans ?? []), ...(accepted.multiples ?? [])]) {
      t.match(help.stdout, new RegExp(`--${f}\\b`), `--help lists --${f}`)
    }
    for (const [short, long] of Object.entries(accepted.shorts ?? {})) t.match(help.stdout, `-${short}, --${long}`, `--help lists -${short}`)
    const h = await capture(cmd, ['-h'])
    t.equal(h.code, 0, '-h exits 0')
    t.equal(h.stdout, help.stdout, '-h prints the same')
    // --help wins over missing positionals and other flags.
    t.equal((await capture(cmd, ['some', 'thing', '--help'])).code, 0, '--help with other arguments exits 0')

    const unknown = await capture(cmd, ['--no-such-flag'])
    t.equal(unknown.code, 2, 'unknown flag exits 2')
    t.match(unknown.stderr, `stargz ${name}: unknown flag --no-such-flag`)
    t.match(unknown.stderr, `Run 'stargz ${name} --help' for usage.`)
    const valued = accepted.values?.find((v) => v !== 'help')
    if (valued) {
      const missing = await capture(cmd, [`--${valued}`])
      t.equal(missing.code, 2, `--${valued} without a value exits 2`)
      t.match(missing.stderr, `flag --${valued} needs a value`)
    }
    const bool = accepted.booleans?.find((b) => b !== 'help')
    if (bool) t.equal((await capture(cmd, [`--${bool}=yes`])).code, 2, `--${bool}=yes exits 2`)
    const tooMany = await capture(cmd, ['a', 'b', 'c', 'd', 'e'])
    t.equal(tooMany.code, 2, 'wrong positionals exit 2')
  })
}

t.test('aliases fold into the option they name; conflicting values are a usage error', async (t) => {
  const convert = await (COMMANDS.convert as () => Promise<Command>)()
  const a = parseCommand(['s', 'd', '--estargz-chunk-size', '4096', '--estargz-compression-level=5', '--estargz-record-in', 'r.jsonl', '--estargz', '--oci'], convert.spec)
  t.equal(a.flags.get('chunk-size'), '4096')
  t.equal(a.flags.get('compression-level'), '5')
  t.equal(a.flags.get('prioritized-from'), 'r.jsonl')
  t.notOk(a.flags.has('estargz-chunk-size'))
  t.throws(() => parseCommand(['--chunk-size', '1', '--estargz-chunk-size', '2'], convert.spec), UsageError)
  t.same(parseCommand(['--chunk-size', '8', '--estargz-chunk-size', '8'], convert.spec).flags.get('chunk-size'), '8', 'same value twice is fine')
  const optimize = await (COMMANDS.optimize as () => Promise<Command>)()
  const o = parseCommand(['s', 'd', '--cwd', '/w', '--mount', 'type=bind,src=/a,dst=/b', '--mount=type=bind,src=/c,dst=/d', '--', 'sh', '-c', 'x --y'], optimize.spec)
  t.equal(o.flags.get('workdir'), '/w')
  t.same(o.flags.get('mount'), ['type=bind,src=/a,dst=/b', 'type=bind,src=/c,dst=/d'])
  t.same(o.rest, ['sh', '-c', 'x --y'], 'everything after -- is the command')
})

t.test('optimize: workload flags become OptimizeOptions overrides', async (t) => {
  const { overridesFromArgs, parseEnvFile, spec } = await import('../../src/cli/commands/optimize.js')
  const o = await overridesFromArgs(parseCommand(['s', 'd', '--entrypoint', '["/bin/sh","-c"]', '--args', '["echo hi"]', '--env', 'A=1', '--wait-on-line', 'ready', '--cwd', '/srv', '--mount', 'type=bind,src=/x,dst=/y,options=ro', '--mount', '/a:/b', '--net-host'], spec))
  t.same(o, { entrypoint: ['/bin/sh', '-c'], args: ['echo hi'], env: ['A=1'], workdir: '/srv', mounts: ['/x:/y:ro', '/a:/b'], waitOnLine: 'ready', netHost: true })
  await t.rejects(overridesFromArgs(parseCommand(['s', 'd', '--entrypoint', '/bin/sh'], spec)), UsageError, 'entrypoint must be a JSON array')
  await t.rejects(overridesFromArgs(parseCommand(['s', 'd', '--mount', 'type=bind,src=/x'], spec)), UsageError, 'a mount needs dst')
  await t.rejects(overridesFromArgs(parseCommand(['s', 'd', '--mount', 'type=tmpfs,dst=/x'], spec)), UsageError, 'only bind mounts')
  await t.rejects(overridesFromArgs(parseCommand(['s', 'd', '--mount', 'rel:/x'], spec)), UsageError, 'absolute source')
  await t.rejects(overridesFromArgs(parseCommand(['s', 'd', '--args', '["x"]', '--', 'y'], spec)), UsageError, '-- and --args exclude each other')
  t.same(parseEnvFile('# comment\nA=1\n\n  C=\nD=x=y\r\n', 'f'), ['A=1', 'C=', 'D=x=y'], 'K=V lines; blanks and comments skipped')
  t.throws(() => parseEnvFile('JUSTKEY\n', 'f'), UsageError)
})

t.test('stargzd: every flag is in the usage; --help/-h/--version; unknown flags are errors', async (t) => {
  const { USAGE } = await import('../../daemon/args.js')
  for (const f of DAEMON_FLAGS) t.match(USAGE, `--${f.name}`, `usage lists --${f.name}`)
  t.equal(parseDaemonArgs(['-h']).help, true)
  t.equal(parseDaemonArgs(['--version']).version, true)
  t.same(parseDaemonArgs(['--root=/r', '--log-level', 'debug']).overrides, { root: '/r', log_level: 'debug' })
  t.throws(() => parseDaemonArgs(['--nope']), /unknown flag --nope/)
  t.throws(() => parseDaemonArgs(['--root']), /--root needs a value/)
  t.throws(() => parseDaemonArgs(['stray']), /unexpected argument "stray"/)
})

function runDaemon(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--import', 'tsx', 'daemon/stargzd.ts', ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
    c.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    c.on('error', reject)
    c.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('the real binaries: exit codes and --version', async (t) => {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }
  t.equal(VERSION, pkg.version, 'VERSION matches package.json')
  const v = await runStargz(['--version'])
  t.equal(v.code, 0)
  t.equal(v.stdout.toString(), `stargz ${pkg.version}\n`)
  const top = await runStargz(['--help'])
  t.equal(top.code, 0)
  for (const name of Object.keys(COMMANDS)) t.match(top.stdout.toString(), new RegExp(`^  ${name} `, 'm'), `top-level help lists ${name}`)
  t.equal((await runStargz([])).code, 2, 'no command: exit 2')
  t.equal((await runStargz(['frobnicate'])).code, 2, 'unknown command: exit 2')
  const helpToc = await runStargz(['help', 'toc'])
  t.equal(helpToc.code, 0)
  t.match(helpToc.stdout.toString(), /^usage: stargz toc BLOB\|REF/, 'stargz help CMD = stargz CMD --help')
  const toc = await runStargz(['toc', '--help'])
  t.equal(toc.code, 0, 'stargz toc --help exits 0 (it used to be refused)')
  t.equal((await runStargz(['verify', '--bogus'])).code, 2, 'unknown flag: exit 2 from the binary')
  const dv = await runDaemon(['--version'])
  t.equal(dv.code, 0)
  t.equal(dv.stdout, `stargzd ${pkg.version}\n`)
  const dh = await runDaemon(['-h'])
  t.equal(dh.code, 0)
  t.match(dh.stdout, /^usage: stargzd/)
  const du = await runDaemon(['--bogus'])
  t.equal(du.code, 2, 'stargzd: unknown flag exits 2')
  t.match(du.stderr, /unknown flag --bogus/)
})
