/**
 * Every key of the schema has a reader (issue #9 §5): a key that is validated and documented but
 * read by nothing is a promise the daemon does not keep. Walks TOP_KEYS and SECTION_KEYS and
 * looks for a read of each (`.key` for top-level keys, `.section.key` for section keys) in the
 * product code that consumes the config: daemon/ and src/ outside src/config/.
 */
import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { SECTION_KEYS, TOP_KEYS } from '../../src/config/schema.js'
import { REPO } from '../../harness/cli.js'

/**
 * Keys whose reader is being built in another branch, with who builds it. The test fails when a
 * listed key gets a reader, so the entry cannot outlive its reason.
 */
const PENDING: Record<string, string> = {}

async function sources(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...await sources(p))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

t.test('every config key is read by the product', async (t) => {
  const files = [...await sources(join(REPO, 'src')), ...await sources(join(REPO, 'daemon'))]
    .filter((f) => !relative(REPO, f).startsWith('src/config/'))
  const text = (await Promise.all(files.map(async (f) => [relative(REPO, f), await readFile(f, 'utf8')] as const)))
  const readers = (pattern: RegExp): string[] => text.filter(([, s]) => pattern.test(s)).map(([f]) => f)
  const keys: Array<[string, RegExp]> = [
    ...Object.keys(TOP_KEYS).map((k) => [k, new RegExp(`\\.${k}\\b`)] as [string, RegExp]),
    ...Object.entries(SECTION_KEYS).flatMap(([s, ks]) => Object.keys(ks).map((k) => [`${s}.${k}`, new RegExp(`\\.${s}\\.${k}\\b`)] as [string, RegExp])),
  ]
  t.ok(keys.length > 20, `${keys.length} keys`)
  for (const [key, re] of keys) {
    const found = readers(re)
    if (key in PENDING) t.same(found, [], `${key}: no reader yet, pending ${PENDING[key]} (remove it from PENDING once read)`)
    else t.ok(found.length > 0, `${key} is read (${found.join(', ') || 'by nothing'})`)
  }
})
