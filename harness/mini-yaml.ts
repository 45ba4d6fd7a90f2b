/**
 * The YAML subset deploy/kubernetes/ is written in, parsed for its tests (no YAML dependency):
 * block mappings and sequences (including "- key: value" items), plain, single- and
 * double-quoted scalars, JSON-style flow sequences/maps, literal block scalars (| and |-), and
 * comments. Anything else throws, naming the line, so a manifest outside the subset is noticed.
 */
type Y = string | number | boolean | null | Y[] | { [k: string]: Y }

interface Line { n: number; indent: number; text: string; raw: string }

function stripComment(s: string): string {
  let q: string | undefined
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (q) { if (c === q) q = undefined; continue }
    if (c === '"' || c === "'") q = c
    else if (c === '#' && (i === 0 || s[i - 1] === ' ')) return s.slice(0, i).trimEnd()
  }
  return s.trimEnd()
}

function scalar(s: string, n: number): Y {
  if (s.startsWith('"')) return JSON.parse(s) as string
  if (s.startsWith("'")) {
    if (!s.endsWith("'")) throw new Error(`line ${n}: unterminated '`)
    return s.slice(1, -1).replace(/''/g, "'")
  }
  if (s.startsWith('[') || s.startsWith('{')) {
    try { return JSON.parse(s) as Y } catch { throw new Error(`line ${n}: flow collection outside the subset: ${s}`) }
  }
  if (s === 'true' || s === 'false') return s === 'true'
  if (s === 'null' || s === '~') return null
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s)
  if (/^[&*!|>%@`]/.test(s)) throw new Error(`line ${n}: ${s[0]} is outside the YAML subset`)
  return s
}

const KEY = /^([A-Za-z0-9_./-]+|"[^"]*"):(?: (.*)|)$/

export function parseYaml(src: string): Y {
  const raw = src.split('\n')
  const lines: Line[] = raw.map((r, i) => ({ n: i + 1, raw: r, indent: r.length - r.trimStart().length, text: stripComment(r).trim() }))
  let i = 0
  const skip = (): void => { while (i < lines.length && (lines[i] as Line).text === '') i++ }

  /** A literal block scalar: the lines indented deeper than `at`, dedented. */
  function literal(at: number, style: string): string {
    const body: string[] = []
    let bodyIndent = -1
    while (i < lines.length) {
      const b = lines[i] as Line
      if (b.raw.trim() !== '' && b.indent <= at) break
      if (b.raw.trim() !== '' && bodyIndent < 0) bodyIndent = b.indent
      body.push(b.raw)
      i++
    }
    while (body.length && (body[body.length - 1] as string).trim() === '') body.pop()
    const text = body.map((b) => b.slice(Math.max(bodyIndent, 0))).join('\n')
    return style === '|' ? text + '\n' : text
  }

  function block(indent: number): Y {
    skip()
    const first = lines[i]
    if (!first || first.indent < indent) return null
    if (first.text === '---') { i++; return block(indent) }
    const at = first.indent
    if (first.text === '-' || first.text.startsWith('- ')) {
      const out: Y[] = []
      for (skip(); i < lines.length && (lines[i] as Line).indent === at && /^-( |$)/.test((lines[i] as Line).text); skip()) {
        const l = lines[i] as Line
        const rest = l.text.slice(1).trim()
        if (rest === '') { i++; out.push(block(at + 1)); continue }
        if (rest === '|' || rest === '|-') { i++; out.push(literal(at, rest)); continue }
        if (KEY.test(rest)) {
          // "- key: v": a mapping whose first key sits two columns right of the dash.
          lines[i] = { ...l, indent: at + 2, text: rest }
          out.push(block(at + 2))
          continue
        }
        i++
        out.push(scalar(rest, l.n))
      }
      return out
    }
    const out: { [k: string]: Y } = {}
    for (skip(); i < lines.length && (lines[i] as Line).indent === at; skip()) {
      const l = lines[i] as Line
      const m = KEY.exec(l.text)
      if (!m) throw new Error(`line ${l.n}: expected "key: value": ${l.raw}`)
      const key = (m[1] as string).startsWith('"') ? JSON.parse(m[1] as string) as string : m[1] as string
      if (key in out) throw new Error(`line ${l.n}: duplicate key ${key}`)
      const rest = (m[2] ?? '').trim()
      i++
      if (rest === '|' || rest === '|-') {
        out[key] = literal(at, rest)
      } else if (rest === '') {
        skip()
        const next = lines[i]
        const seqSameIndent = next !== undefined && next.indent === at && /^-( |$)/.test(next.text)
        out[key] = next && (next.indent > at || seqSameIndent) ? block(next.indent) : null
      } else {
        out[key] = scalar(rest, l.n)
      }
    }
    return out
  }

  const v = block(0)
  skip()
  if (i < lines.length) throw new Error(`line ${(lines[i] as Line).n}: unexpected indentation: ${(lines[i] as Line).raw}`)
  return v
}
