/** Where stargz-fused listens and records its pid, shared by stargzd, stargz-fused and the units. */
import { join } from 'node:path'

export function fusedSocket(arg: string, root: string): string {
  return arg === 'default' ? join(root, 'fused.sock') : arg
}

export function fusedPidFile(socket: string): string {
  return `${socket}.pid`
}

export function fusedLogFile(socket: string): string {
  return `${socket}.log`
}

/** The fd holder's socket (src/fuseproto/holder.ts), beside stargz-fused's; its pid and log beside it. */
export function fdHolderSocket(fusedSocket: string): string {
  return `${fusedSocket}.holder`
}
