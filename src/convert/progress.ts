/**
 * Per-layer progress on stderr. On a TTY, one line per layer redrawn in place (bytes read,
 * bytes written, read rate); elsewhere one line per layer when it finishes.
 */
const MiB = 1024 * 1024

export interface ProgressTask {
  read(n: number): void
  wrote(n: number): void
  done(note: string): void
}

interface TaskState { label: string; total: number; read: number; written: number; started: number; note: string | undefined }

function mib(n: number): string { return (n / MiB).toFixed(1) }

export class Progress {
  private readonly tasks: TaskState[] = []
  private drawn = 0
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly out: NodeJS.WritableStream & { isTTY?: boolean }, private readonly enabled = true) {}

  private get live(): boolean { return this.enabled && this.out.isTTY === true }

  task(label: string, total: number): ProgressTask {
    const t: TaskState = { label, total, read: 0, written: 0, started: performance.now(), note: undefined }
    this.tasks.push(t)
    if (this.live && !this.timer) {
      this.timer = setInterval(() => this.draw(), 200)
      this.timer.unref()
    }
    return {
      read: (n) => { t.read += n },
      wrote: (n) => { t.written += n },
      done: (note) => {
        t.note = note
        if (this.live) this.draw()
        else if (this.enabled) this.out.write(this.line(t) + '\n')
      },
    }
  }

  private line(t: TaskState): string {
    const secs = Math.max(1e-3, (performance.now() - t.started) / 1000)
    const rate = `${mib(t.read / secs)} MiB/s`
    const total = t.total > 0 ? `/${mib(t.total)}` : ''
    return `${t.label}  ${(t.note ?? 'converting').padEnd(10)}  read ${mib(t.read)}${total} MiB  wrote ${mib(t.written)} MiB  ${t.note ? '' : rate}`.trimEnd()
  }

  private draw(): void {
    let s = this.drawn > 0 ? `\x1b[${this.drawn}A` : ''
    for (const t of this.tasks) s += `\x1b[2K${this.line(t)}\n`
    this.drawn = this.tasks.length
    this.out.write(s)
  }

  close(): void {
    if (this.timer) { clearInterval(this.timer); this.timer = undefined }
    if (this.live && this.tasks.length > 0) this.draw()
  }
}
