import t from 'tap'
import { lstat, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startStargzd } from '../../harness/stargzd.js'

t.test('start, ready, socket 0660, SIGTERM exits 0 and removes the socket', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sgd-d-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const sock = join(dir, 's.sock')
  const p = await startStargzd(['--root', join(dir, 'root'), '--address', sock])
  t.teardown(() => p.close())
  const ready = await p.waitFor((l) => l.msg === 'ready')
  t.equal(ready.systemd, 'no-systemd')
  t.notOk(p.logs.some((l) => /lazy mounts are unavailable/.test(String(l.msg))), 'lazy mounts are available (/dev/fuse is here)')
  const st = await lstat(sock)
  t.ok(st.isSocket())
  t.equal(st.mode & 0o777, 0o660)
  // A second daemon on the same socket must refuse, not steal it.
  const p2 = await startStargzd(['--root', join(dir, 'root2'), '--address', sock])
  t.teardown(() => p2.close())
  t.not((await p2.exited()).code, 0, 'second daemon on a live socket fails')
  const r = await p.close()
  t.equal(r.code, 0)
  await t.rejects(lstat(sock), 'socket removed')
})

t.test('bad config: exit 2 with the key in the message', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sgd-d-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const cfg = join(dir, 'c.toml')
  await writeFile(cfg, '[blob]\nmax_retries = "many"\n')
  const p = await startStargzd(['--config', cfg])
  t.teardown(() => p.close())
  t.equal((await p.exited()).code, 2)
  t.match(p.raw.join('\n'), /config key blob.max_retries: expected an integer/)
})
