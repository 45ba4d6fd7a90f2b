import t from 'tap'
import { parseFilters } from '../../src/snapshot/filter.js'
import { infoAdaptor } from '../../src/snapshot/snapshotter.js'
import type { Info } from '../../src/snapshot/types.js'

const info: Info = {
  name: 'default/3/sha256:abc',
  parent: 'sha256:def',
  kind: 'committed',
  labels: { 'containerd.io/snapshot.ref': 'sha256:abc', 'a.b': 'x y', empty: '' },
  createdUs: 0,
  updatedUs: 0,
}
const noLabels: Info = { ...info, labels: {} }

const cases: [string, boolean, Info?][] = [
  ['', true],
  ['kind==committed', true],
  ['kind==active', false],
  ['kind!=active', true],
  ['name~=^default/', true],
  ['name~=/^default\\/3/', true],
  ['name~=|sha256:a.c$|', true],
  ['name~="(?i)DEFAULT"', true],
  ['parent==sha256:def', true],
  ['parent=="sha256:def"', true],
  ['parent==""', false],
  ['parent', true],
  ['labels."containerd.io/snapshot.ref"==sha256:abc', true],
  ['labels."containerd.io/snapshot.ref"==sha256:abc,parent=="sha256:def"', true],
  ['labels."containerd.io/snapshot.ref"==sha256:abc,parent==""', false],
  ['labels."containerd.io/snapshot.ref"', true],
  ['labels.missing', false],
  ['labels.missing!=x', true],
  ['labels.missing==""', false],
  ['labels.empty', true],
  ['labels.empty==""', true],
  ['labels.a.b=="x y"', true],
  ['labels."a.b"=="x y"', true],
  [' kind == committed , name ~= abc ', true],
  ['labels."containerd.io/snapshot.ref"', false, noLabels],
  ['nosuchfield', false],
  ['nosuchfield!=x', true],
]

t.test('filter matching (table)', async (t) => {
  for (const [expr, want, target] of cases) {
    t.equal(parseFilters(expr === '' ? [] : [expr]).match(infoAdaptor(target ?? info)), want, expr || '(no filter)')
  }
})

t.test('several filter strings are ORed', async (t) => {
  t.ok(parseFilters(['kind==active', 'kind==committed']).match(infoAdaptor(info)))
  t.notOk(parseFilters(['kind==active', 'kind==view']).match(infoAdaptor(info)))
})

const bad = ['kind==', 'kind=', 'kind=>x', '==x', 'kind==x,', ',kind', 'labels."unterminated', 'name~=/[/', 'labels./x/==y', 'kind==x y', 'labels."\\q"==x']

t.test('syntax errors are InvalidArgument naming the position', async (t) => {
  for (const expr of bad) {
    t.throws(() => parseFilters([expr]), { code: 'ERR_INVALID_ARGUMENT', message: /filters: parse error/ }, expr)
  }
})
