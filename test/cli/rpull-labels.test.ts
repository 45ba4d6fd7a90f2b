/** The snapshot labels `stargz rpull` sends, and chain IDs (pure parts of src/cli/rpull.ts). */
import t from 'tap'
import { createHash } from 'node:crypto'
import { chainIDs, layersLabel, snapshotLabels } from '../../src/cli/rpull.js'
import { remoteLayerFromLabels } from '../../src/snapshot/labels.js'

const d = (n: number): string => 'sha256:' + n.toString(16).padStart(64, '0')

t.test('chain IDs per the OCI image spec', async (t) => {
  const [a, b, c] = [d(1), d(2), d(3)]
  const ab = 'sha256:' + createHash('sha256').update(`${a} ${b}`).digest('hex')
  const abc = 'sha256:' + createHash('sha256').update(`${ab} ${c}`).digest('hex')
  t.same(chainIDs([a, b, c]), [a, ab, abc])
  t.same(chainIDs([]), [])
})

t.test('labels are what stargzd reads back as a remote layer', async (t) => {
  const layers = [
    { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d(10), size: 1, annotations: { 'containerd.io/snapshot/stargz/toc.digest': d(99), 'org.example/other': 'x' } },
    { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d(11), size: 1 },
  ]
  const l = snapshotLabels('reg.example/app:v1', layers, 0, d(42))
  t.same(l, {
    'containerd.io/snapshot/stargz/toc.digest': d(99),
    'containerd.io/snapshot.ref': d(42),
    'containerd.io/snapshot/remote/stargz.reference': 'reg.example/app:v1',
    'containerd.io/snapshot/remote/stargz.digest': d(10),
    'containerd.io/snapshot/remote/stargz.layers': `${d(10)},${d(11)}`,
  }, 'ctr-remote\'s labels; only containerd.io/snapshot/* annotations are forwarded')
  const back = remoteLayerFromLabels(l)
  t.ok('layer' in back && back.layer.imageRef === 'reg.example/app:v1' && back.layer.layerDigest === d(10) && back.layer.tocDigest === d(99))
  t.same(snapshotLabels('r/a:1', layers, 1, d(43))['containerd.io/snapshot/remote/stargz.layers'], d(11), 'from this layer up')
})

t.test('the layers label is cut to fit containerd\'s 4096-byte limit', async (t) => {
  const many = Array.from({ length: 100 }, (_, i) => d(i))
  const v = layersLabel(many, 0)
  t.ok(Buffer.byteLength('containerd.io/snapshot/remote/stargz.layers') + Buffer.byteLength(v) <= 4096)
  t.ok(v.split(',').length > 10 && v.split(',').length < 100)
  t.same(v.split(','), many.slice(0, v.split(',').length), 'whole digests, in order')
})
