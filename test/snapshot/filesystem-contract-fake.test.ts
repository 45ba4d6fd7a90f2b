import t from 'tap'
import { access, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeFileSystem } from './fake-fs.js'
import { dirMaker, fileSystemContract } from './filesystem-contract.js'

fileSystemContract(t, 'fake', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'sgd-fs-contract-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const fs = new FakeFileSystem()
  fs.failDigests.add('sha256:bad')
  return {
    fs,
    good: { imageRef: 'r/x:1', layerDigest: 'sha256:good', labels: {} },
    bad: { imageRef: 'r/x:1', layerDigest: 'sha256:bad', labels: {} },
    mountedAt: (d) => access(join(d, '.fake-mounted')).then(() => true, () => false),
    dir: dirMaker(root),
  }
})
