/**
 * systemd readiness for Type=notify: `systemd-notify --ready` when NOTIFY_SOCKET is set. Node has
 * no datagram unix sockets, hence the helper binary. With NotifyAccess=all in the unit the
 * helper's (short-lived) pid is accepted; --pid names us as the main process anyway.
 */
import { execFile } from 'node:child_process'

export function notifyReady(): Promise<'notified' | 'no-systemd'> {
  if (!process.env.NOTIFY_SOCKET) return Promise.resolve('no-systemd')
  return new Promise((resolve, reject) => {
    execFile('systemd-notify', ['--ready', `--pid=${process.pid}`], { timeout: 10_000 }, (err, _o, stderr) => {
      if (err) reject(new Error(`systemd-notify --ready failed: ${String(stderr).trim() || err.message}`))
      else resolve('notified')
    })
  })
}

export function notifyStopping(): void {
  if (!process.env.NOTIFY_SOCKET) return
  execFile('systemd-notify', ['STOPPING=1', `--pid=${process.pid}`], { timeout: 5_000 }, () => undefined)
}
