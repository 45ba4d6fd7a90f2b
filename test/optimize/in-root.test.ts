/**
 * resolveInRoot / readInRoot (#10 §5): reading the image's /etc/passwd from the host must never
 * follow a symlink out of the rootfs, whatever form the symlink takes.
 */
import t from 'tap'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readInRoot, resolveInRoot } from '../../src/optimize/in-root.js'

t.test('symlinks resolve inside the root', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-in-root-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const root = join(dir, 'root')
  const outside = join(dir, 'outside')
  await mkdir(join(root, 'etc'), { recursive: true })
  await mkdir(outside)
  await writeFile(join(outside, 'secret'), 'host secret\n')
  await writeFile(join(root, 'etc', 'real'), 'image file\n')
  await mkdir(join(root, outside), { recursive: true })
  await writeFile(join(root, outside, 'secret'), 'the image\'s own file at that path\n')
  await symlink(join(outside, 'secret'), join(root, 'etc', 'abs'))
  await symlink('../../../../../../../..' + join(outside, 'secret'), join(root, 'etc', 'rel'))
  await symlink('real', join(root, 'etc', 'plain'))
  await symlink('/etc', join(root, 'etclink'))
  await symlink('loop', join(root, 'loop'))
  await symlink('/nowhere/x', join(root, 'etc', 'dangling'))

  t.equal((await readInRoot(root, '/etc/abs'))?.toString(), 'the image\'s own file at that path\n', 'absolute target: the rootfs\'s path, not the host\'s')
  t.equal((await readInRoot(root, 'etc/rel'))?.toString(), 'the image\'s own file at that path\n', '../ target stops at the rootfs root')
  t.equal((await readInRoot(root, 'etc/plain'))?.toString(), 'image file\n')
  t.equal((await readInRoot(root, 'etclink/real'))?.toString(), 'image file\n', 'a symlinked directory component')
  t.equal(await readInRoot(root, 'etc/dangling'), undefined, 'dangling inside the root: missing, not the host')
  t.equal(await readInRoot(root, 'etc/none'), undefined)
  t.equal(await resolveInRoot(root, '/../../etc/real'), join(root, 'etc/real'), '.. never climbs out')
  await t.rejects(resolveInRoot(root, 'loop'), { code: 'ELOOP' })
})
