import t from 'tap'
import { execFile } from 'node:child_process'
import { copyFile, mkdir, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { convertFile } from '../../harness/convert.js'
import { createTar } from '../../harness/tree.js'
import { mountBlob, scratch } from '../../harness/fuse-fixtures.js'

const execFileP = promisify(execFile)
const BUSYBOX = '/bin/busybox'

t.test('a busybox rootfs layer runs under chroot', async (t) => {
  const dir = await scratch(t)
  const root = join(dir, 'rootfs')
  await mkdir(join(root, 'bin'), { recursive: true })
  await copyFile(BUSYBOX, join(root, 'bin/busybox'))
  await execFileP('chmod', ['0755', join(root, 'bin/busybox')])
  for (const applet of ['sh', 'echo', 'ls', 'cat']) await symlink('busybox', join(root, 'bin', applet))
  await mkdir(join(root, 'etc'))
  await execFileP('sh', ['-c', `echo 'from the layer' > ${join(root, 'etc/motd')}`])
  const tar = join(dir, 'rootfs.tar')
  await createTar(root, tar)
  const blob = join(dir, 'rootfs.estargz')
  await convertFile(tar, blob, { chunkSize: 256 * 1024 })

  const { mnt, layer } = await mountBlob(t, dir, blob)
  const hello = await execFileP('chroot', [mnt, '/bin/busybox', 'sh', '-c', 'echo hello'])
  t.equal(hello.stdout, 'hello\n')
  const viaApplets = await execFileP('chroot', [mnt, '/bin/sh', '-c', 'cat /etc/motd; ls /bin'])
  t.equal(viaApplets.stdout, 'from the layer\nbusybox\ncat\necho\nls\nsh\n')
  t.ok(layer.firstAccessed.includes('bin/busybox'), 'exec went through the layer')
})
