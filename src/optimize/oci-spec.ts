/**
 * The OCI runtime spec (config.json, runtime-spec 1.0) that `stargz optimize` hands to runc for
 * its workload. An image's workload is untrusted code; it gets what a default container gets
 * from containerd and no more:
 *   - its own pid, ipc, uts, mount and network namespaces (network: only loopback, which runc
 *     brings up; the host's with `netHost`);
 *   - a fresh tmpfs /dev with runc's default device nodes (null, zero, full, random, urandom,
 *     tty) plus devpts, shm and mqueue: never the host's /dev;
 *   - containerd's default capability set, no_new_privs, /proc and /sys paths masked or read-only
 *     as containerd masks them, a small seccomp deny-list for the calls that reach kernel
 *     configuration (the rootfs is a mount we own, so mount, pivot_root and the like are out);
 *   - user, working directory, environment and bind mounts as spec fields, which runc applies
 *     inside the container (cwd and mount destinations resolved in the rootfs, created there).
 */

/** containerd's (and Docker's) default capability set. */
export const DEFAULT_CAPABILITIES: readonly string[] = Object.freeze([
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
])

const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
]
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']

/** Refused with EPERM: these change the kernel or the mount table, not the workload's files. */
const SECCOMP_DENY = [
  'mount', 'umount2', 'pivot_root', 'move_mount', 'open_tree', 'fsopen', 'fsmount', 'fsconfig', 'fspick',
  'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'reboot', 'swapon', 'swapoff',
  'bpf', 'perf_event_open', 'open_by_handle_at', 'name_to_handle_at', 'setns', 'unshare', 'keyctl', 'add_key',
  'request_key', 'ptrace', 'process_vm_readv', 'process_vm_writev', 'userfaultfd', 'acct', 'settimeofday',
  'clock_settime', 'clock_adjtime', 'adjtimex', 'syslog', 'iopl', 'ioperm', 'lookup_dcookie', 'quotactl',
]

export interface BindMount {
  /** Host path (absolute). */
  source: string
  /** Path inside the container (absolute); runc resolves it within the rootfs. */
  destination: string
  readonly: boolean
}

export interface SpecInput {
  rootfs: string
  argv: string[]
  env: string[]
  uid: number
  gid: number
  additionalGids?: number[]
  cwd: string
  mounts: BindMount[]
  netHost: boolean
  hostname?: string
}

export interface OciSpec {
  ociVersion: string
  process: Record<string, unknown>
  root: { path: string; readonly: boolean }
  hostname: string
  mounts: Array<{ destination: string; type: string; source: string; options: string[] }>
  linux: Record<string, unknown>
}

export function buildSpec(s: SpecInput): OciSpec {
  const caps = [...DEFAULT_CAPABILITIES]
  const namespaces = ['pid', 'ipc', 'uts', 'mount', ...(s.netHost ? [] : ['network'])].map((type) => ({ type }))
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: s.uid, gid: s.gid, ...(s.additionalGids && s.additionalGids.length > 0 ? { additionalGids: s.additionalGids } : {}) },
      args: s.argv,
      env: s.env,
      cwd: s.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    // The rootfs is our overlay of the image with a scratch upper dir: writes land there, never
    // in a layer, and it is removed with the state dir.
    root: { path: s.rootfs, readonly: false },
    hostname: s.hostname ?? 'stargz-optimize',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      // A new network namespace may mount its own sysfs; with the host's network it may not.
      s.netHost
        ? { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] }
        : { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      ...s.mounts.map((m) => ({ destination: m.destination, type: 'bind', source: m.source, options: ['rbind', 'nosuid', 'nodev', m.readonly ? 'ro' : 'rw'] })),
    ],
    linux: {
      namespaces,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      // No device access beyond runc's defaults (null, zero, full, random, urandom, tty, ptmx).
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      seccomp: {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
        syscalls: [{ names: SECCOMP_DENY, action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      },
    },
  }
}
