/**
 * A one-line progress indicator on stderr for long reads of remote blobs (`cat`, `verify`).
 * Shown only when stderr is a terminal, so pipes, logs and tests see no carriage returns.
 */
const TICK_MS = 250

function mib(n: number): string {
  return (n / (1 << 20)).toFixed(1)
}

export interface ProgressLine { stop(): void }

/**
 * Redraw `label: X of Y MiB (P%)` every TICK_MS from `done()`; `stop()` clears the line.
 * Returns a no-op when stderr is not a TTY or there is nothing to measure (total 0).
 */
export function ttyProgress(label: string, total: number, done: () => number, stream: NodeJS.WriteStream = process.stderr): ProgressLine {
  if (!stream.isTTY || total <= 0) return { stop: () => undefined }
  const draw = (): void => {
    const d = Math.min(done(), total)
    stream.write(`\r${label}: ${mib(d)} of ${mib(total)} MiB (${((100 * d) / total).toFixed(0)}%)\x1b[K`)
  }
  draw()
  const timer = setInterval(draw, TICK_MS)
  timer.unref()
  let stopped = false
  return {
    stop: () => {
      if (stopped) return
      stopped = true
      clearInterval(timer)
      stream.write('\r\x1b[K')
    },
  }
}
