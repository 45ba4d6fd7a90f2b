/** Runs at most `n` async jobs at once, in the order they were asked for. */
export class Limiter {
  private active = 0
  private readonly waiting: Array<() => void> = []
  constructor(readonly n: number) {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`limiter size must be a positive integer, got ${n}`)
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.active >= this.n) await new Promise<void>((resolve) => this.waiting.push(resolve))
    this.active++
    try {
      return await job()
    } finally {
      this.active--
      this.waiting.shift()?.()
    }
  }
}
