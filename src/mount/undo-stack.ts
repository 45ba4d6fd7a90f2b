/**
 * Set-up steps register how to undo themselves; on failure (or at close) the undo steps run in
 * reverse order, each attempted even if an earlier one failed (stargz `Resolve` with deferred
 * cleanup). Running it twice is a no-op.
 */
export class UndoStack {
  private steps: Array<{ what: string; undo: () => Promise<unknown> }> = []

  push(what: string, undo: () => Promise<unknown>): void {
    this.steps.push({ what, undo })
  }

  /** Runs every undo step, last first; resolves with the failures (never rejects). */
  async run(): Promise<Array<{ what: string; error: unknown }>> {
    const steps = this.steps.reverse()
    this.steps = []
    const failures: Array<{ what: string; error: unknown }> = []
    for (const s of steps) {
      try { await s.undo() } catch (error) { failures.push({ what: s.what, error }) }
    }
    return failures
  }
}
