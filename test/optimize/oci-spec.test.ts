/** buildSpec (#10 §5): the runc spec an optimize workload gets. */
import t from 'tap'
import { buildSpec, DEFAULT_CAPABILITIES } from '../../src/optimize/oci-spec.js'
import { parseMount } from '../../src/optimize/workload.js'

const input = { rootfs: '/state/rootfs', argv: ['/bin/sh'], env: ['PATH=/bin'], uid: 1000, gid: 1000, cwd: '/work', mounts: [], netHost: false }

t.test('isolated by default', async (t) => {
  const s = buildSpec(input)
  const ns = (s.linux.namespaces as Array<{ type: string }>).map((n) => n.type)
  t.same(ns.sort(), ['ipc', 'mount', 'network', 'pid', 'uts'])
  t.equal(s.process.noNewPrivileges, true)
  const caps = s.process.capabilities as Record<string, string[]>
  t.same(caps.bounding, [...DEFAULT_CAPABILITIES])
  t.notOk(caps.bounding?.includes('CAP_SYS_ADMIN'), 'no CAP_SYS_ADMIN')
  t.same(s.process.user, { uid: 1000, gid: 1000 })
  t.equal(s.process.cwd, '/work', 'cwd is a spec field (runc makes it inside the rootfs)')
  const dev = s.mounts.find((m) => m.destination === '/dev')
  t.equal(dev?.type, 'tmpfs', 'a fresh /dev, not the host\'s')
  t.notOk(s.mounts.some((m) => m.type === 'bind' && m.source.startsWith('/dev')), 'no bind of host /dev')
  t.equal((s.linux.seccomp as { defaultAction: string }).defaultAction, 'SCMP_ACT_ALLOW')
})

t.test('--net-host and --mount', async (t) => {
  const s = buildSpec({ ...input, netHost: true, mounts: [parseMount('/srv/data:/data:ro')] })
  t.notOk((s.linux.namespaces as Array<{ type: string }>).some((n) => n.type === 'network'), 'host network namespace')
  t.same(s.mounts.find((m) => m.destination === '/data'), { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind', 'nosuid', 'nodev', 'ro'] })
  t.same(parseMount('/a:/b'), { source: '/a', destination: '/b', readonly: false })
  t.throws(() => parseMount('/a'), { code: 'ERR_INVALID_ARGUMENT' })
  t.throws(() => parseMount('/a:rel'), { code: 'ERR_INVALID_ARGUMENT' })
  t.throws(() => parseMount('/a:/b:rx'), { code: 'ERR_INVALID_ARGUMENT' })
})
