/** ttyProgress draws only on a terminal, and clears its line when stopped. */
import t from 'tap'
import { ttyProgress } from '../../src/cli/progress.js'

function fakeStream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
  const s = { isTTY, text: '', write(c: string) { s.text += c; return true } }
  return s as unknown as NodeJS.WriteStream & { text: string }
}

t.test('not a TTY: nothing written', async (t) => {
  const s = fakeStream(false)
  ttyProgress('verify', 100 << 20, () => 50 << 20, s).stop()
  t.equal(s.text, '')
})

t.test('a TTY: draws the line at once (then every tick), clears it once', async (t) => {
  const s = fakeStream(true)
  const p = ttyProgress('stargz verify', 100 << 20, () => 25 << 20, s)
  p.stop()
  p.stop()
  t.match(s.text, /\rstargz verify: 25\.0 of 100\.0 MiB \(25%\)/)
  t.ok(s.text.endsWith('\r\x1b[K'), 'line cleared at the end')
  t.equal(s.text.split('\r\x1b[K').length, 2, 'cleared once')
})

t.test('nothing to measure (local file): no progress', async (t) => {
  const s = fakeStream(true)
  ttyProgress('cat', 0, () => 0, s).stop()
  t.equal(s.text, '')
})
