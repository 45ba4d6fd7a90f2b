/**
 * Tokenizer for containerd's filter syntax (containerd/filters scanner.go), e.g.
 *
 *   labels."containerd.io/snapshot.ref"==sha256:abc,parent=="default/3/sha256:def"
 *
 * Tokens: field  [A-Za-z0-9_-]+
 *         quoted "go string", /alt quoted/, |alt quoted|   (alt quotes are for regex values)
 *         separator  ',' (between selectors) or '.' (between fields of a path)
 *         operator   a run of '=', '!', '~' (the parser accepts ==, != and ~=)
 *         value      after an operator: everything up to ',' or white space
 * White space between tokens is skipped.
 */
export type TokenKind = 'eof' | 'quoted' | 'value' | 'field' | 'separator' | 'operator' | 'illegal'

export interface Token {
  kind: TokenKind
  /** Offset of the token's first character in the input. */
  pos: number
  text: string
  /** Why an illegal token is illegal. */
  error?: string
}

const isField = (c: string): boolean => /^[A-Za-z0-9_-]$/.test(c)
const isOperator = (c: string): boolean => c === '=' || c === '!' || c === '~'
export const isQuote = (c: string): boolean => c === '"' || c === '/' || c === '|'
const isSeparator = (c: string): boolean => c === ',' || c === '.'
const isSpace = (c: string): boolean => /^\s$/u.test(c)
const isValue = (c: string): boolean => c !== ',' && !isSpace(c) && c !== '\0'

export class FilterScanner {
  private pos = 0
  /** Set after an operator: the next bare token is a value, not a field. */
  private inValue = false

  constructor(private readonly input: string) {}

  peek(): Token {
    const pos = this.pos
    const inValue = this.inValue
    const t = this.scan()
    this.pos = pos
    this.inValue = inValue
    return t
  }

  scan(): Token {
    const s = this.input
    while (this.pos < s.length && isSpace(s[this.pos] as string)) this.pos++
    const start = this.pos
    if (start >= s.length) return { kind: 'eof', pos: start, text: '' }
    const c = s[start] as string
    if (c === '\0') {
      this.pos++
      return { kind: 'illegal', pos: start, text: c, error: 'unexpected null' }
    }
    if (isQuote(c)) {
      const end = this.scanQuoted(start, c)
      if (typeof end === 'string') {
        this.pos = s.length
        return { kind: 'illegal', pos: start, text: s.slice(start), error: end }
      }
      this.pos = end
      this.inValue = false
      return { kind: 'quoted', pos: start, text: s.slice(start, end) }
    }
    if (isSeparator(c)) {
      this.pos++
      this.inValue = false
      return { kind: 'separator', pos: start, text: c }
    }
    if (isOperator(c)) {
      let end = start
      while (end < s.length && isOperator(s[end] as string)) end++
      this.pos = end
      this.inValue = true
      return { kind: 'operator', pos: start, text: s.slice(start, end) }
    }
    if (this.inValue) {
      let end = start
      while (end < s.length && isValue(s[end] as string)) end++
      this.pos = end
      this.inValue = false
      return { kind: 'value', pos: start, text: s.slice(start, end) }
    }
    if (isField(c)) {
      let end = start
      while (end < s.length && isField(s[end] as string)) end++
      this.pos = end
      return { kind: 'field', pos: start, text: s.slice(start, end) }
    }
    this.pos++
    return { kind: 'illegal', pos: start, text: c, error: `unexpected character ${JSON.stringify(c)}` }
  }

  /** End offset (exclusive) of the quoted literal at `start`, or an error message. */
  private scanQuoted(start: number, quote: string): number | string {
    const s = this.input
    let i = start + 1
    while (i < s.length) {
      const c = s[i] as string
      if (c === quote) return i + 1
      if (c === '\n') return 'quoted literal not terminated'
      i += c === '\\' ? 2 : 1
    }
    return 'quoted literal not terminated'
  }
}

const SIMPLE_ESCAPES: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' }

/**
 * Unquote a literal produced by the scanner: Go string escapes (\n, \t, \xHH, \uHHHH, \UHHHHHHHH,
 * \OOO, \\ and the quote character). In /alt/ and |alt| literals an unknown escape keeps its
 * backslash, so regular expressions such as /^a\.b$/ work; in "..." it is an error, as in Go.
 */
export function unquote(lit: string): string {
  const quote = lit[0] as string
  if (!isQuote(quote) || lit.length < 2 || lit[lit.length - 1] !== quote) throw new Error(`invalid quoted literal ${lit}`)
  const body = lit.slice(1, -1)
  let out = ''
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string
    if (c !== '\\') {
      out += c
      continue
    }
    const e = body[++i]
    if (e === undefined) throw new Error('unterminated escape')
    if (e === quote) { out += e; continue }
    const simple = SIMPLE_ESCAPES[e]
    if (simple !== undefined) { out += simple; continue }
    const hexLen = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0
    if (hexLen > 0) {
      const h = body.slice(i + 1, i + 1 + hexLen)
      if (!new RegExp(`^[0-9A-Fa-f]{${hexLen}}$`).test(h)) throw new Error(`invalid \\${e} escape`)
      out += String.fromCodePoint(parseInt(h, 16))
      i += hexLen
      continue
    }
    if (/[0-7]/.test(e)) {
      const o = body.slice(i, i + 3)
      if (!/^[0-7]{3}$/.test(o)) throw new Error('invalid octal escape')
      out += String.fromCharCode(parseInt(o, 8))
      i += 2
      continue
    }
    if (quote === '"') throw new Error(`invalid escape \\${e}`)
    out += '\\' + e
  }
  return out
}
