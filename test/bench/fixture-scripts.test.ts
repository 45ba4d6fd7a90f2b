/**
 * `stargz bench` from an installed tree: its rootfs builders are shell scripts of the source tree,
 * not part of the package, so it finds them in a checkout or says exactly what it needs.
 */
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findFixtureScripts } from '../../src/bench/image/images.js'
import { REPO } from '../../harness/cli.js'

t.test('found above the module in a checkout (source or dist/)', async (t) => {
  t.equal(findFixtureScripts(undefined, {}), join(REPO, 'scripts', 'fixtures'))
  t.equal(findFixtureScripts(join(REPO, 'dist', 'src', 'bench', 'image'), {}), join(REPO, 'scripts', 'fixtures'))
})

t.test('an installed tree: STARGZD_SOURCE_DIR names the checkout, or the error says what is needed', async (t) => {
  const opt = await mkdtemp(join(tmpdir(), 'stargz-installed-'))
  t.teardown(() => rm(opt, { recursive: true, force: true }))
  const here = join(opt, 'dist', 'src', 'bench', 'image')
  t.equal(findFixtureScripts(here, { STARGZD_SOURCE_DIR: REPO }), join(REPO, 'scripts', 'fixtures'))
  t.throws(() => findFixtureScripts(here, {}), /scripts\/fixtures\/busybox-rootfs\.sh.*debootstrap and busybox-static.*STARGZD_SOURCE_DIR/)
  t.throws(() => findFixtureScripts(here, { STARGZD_SOURCE_DIR: opt }), /STARGZD_SOURCE_DIR=.* has no scripts\/fixtures\/lib\.sh/)
})
