/**
 * containerd filter expressions (containerd/filters parser.go), as used by snapshots List/Walk:
 *
 *   filter    := selector ("," selector)*          all selectors must match
 *   selector  := fieldpath (operator value)?       no operator: the field must be present
 *   fieldpath := field ("." field)*
 *   field     := quoted | [A-Za-z0-9_-]+
 *   operator  := "==" | "!=" | "~="
 *   value     := quoted | [^\s,]+
 *
 * Several filter strings (the repeated `filters` field of ListSnapshotsRequest) are ORed; no
 * filter string matches everything. In containerd `|` is not "or": it is an alternative quote
 * for regular expressions (`name~=|^a.*|`), like `/.../`.
 *
 * Regular expressions are JavaScript's; a leading Go-style `(?i)` becomes the `i` flag.
 */
import { InvalidArgumentError } from '../errors.js'
import { FilterScanner, unquote, type Token } from './filter-scanner.js'

export type Operator = 'present' | '==' | '!=' | '~='

export interface Selector {
  fieldpath: string[]
  operator: Operator
  value: string
  re?: RegExp
}

/** Returns the value at a field path, or undefined when the object has no such field. */
export type Adaptor = (fieldpath: string[]) => string | undefined

export interface Filter {
  /** ORed list of ANDed selectors; empty means "match everything". */
  readonly alternatives: readonly (readonly Selector[])[]
  match(adaptor: Adaptor): boolean
}

function parseError(input: string, pos: number, msg: string): InvalidArgumentError {
  const where = pos < input.length ? `[${input.slice(0, pos)} >|${input.slice(pos, pos + 1)}|< ${input.slice(pos + 1)}]` : `[${input}]`
  return new InvalidArgumentError(`filters: parse error: ${where}: ${msg}`)
}

function compileRegex(input: string, pos: number, source: string): RegExp {
  let flags = ''
  let body = source
  if (body.startsWith('(?i)')) {
    flags = 'i'
    body = body.slice(4)
  }
  try {
    return new RegExp(body, flags)
  } catch (e) {
    throw parseError(input, pos, `invalid regular expression ${JSON.stringify(source)}: ${(e as Error).message}`)
  }
}

class Parser {
  private readonly sc: FilterScanner
  constructor(private readonly input: string) {
    this.sc = new FilterScanner(input)
  }

  parse(): Selector[] {
    const out = [this.selector()]
    for (;;) {
      const t = this.sc.peek()
      if (t.kind === 'eof') return out
      if (t.kind === 'separator' && t.text === ',') {
        this.sc.scan()
        out.push(this.selector())
        continue
      }
      throw parseError(this.input, t.pos, `unexpected input: ${t.text}`)
    }
  }

  private selector(): Selector {
    const fieldpath = this.fieldpath()
    const t = this.sc.peek()
    if (t.kind === 'eof' || (t.kind === 'separator' && t.text === ',')) return { fieldpath, operator: 'present', value: '' }
    const op = this.sc.scan()
    if (op.kind !== 'operator') throw parseError(this.input, op.pos, 'expected an operator ("=="|"!="|"~=")')
    if (op.text !== '==' && op.text !== '!=' && op.text !== '~=') throw parseError(this.input, op.pos, `unsupported operator ${JSON.stringify(op.text)}`)
    const v = this.sc.scan()
    let value: string
    if (v.kind === 'value' || v.kind === 'field') value = v.text
    else if (v.kind === 'quoted') value = this.unquote(v)
    else if (v.kind === 'eof') throw parseError(this.input, v.pos, 'unexpected end of input: expected value or quoted')
    else throw parseError(this.input, v.pos, v.error ?? 'expected value or quoted')
    const sel: Selector = { fieldpath, operator: op.text, value }
    if (op.text === '~=') sel.re = compileRegex(this.input, v.pos, value)
    return sel
  }

  private fieldpath(): string[] {
    const out = [this.field()]
    for (;;) {
      const t = this.sc.peek()
      if (t.kind !== 'separator' || t.text !== '.') return out
      this.sc.scan()
      out.push(this.field())
    }
  }

  private field(): string {
    const t = this.sc.scan()
    if (t.kind === 'field') return t.text
    if (t.kind === 'quoted') {
      if (t.text[0] !== '"') throw parseError(this.input, t.pos, 'field names must be quoted with "')
      return this.unquote(t)
    }
    throw parseError(this.input, t.pos, t.error ?? 'expected field or quoted')
  }

  private unquote(t: Token): string {
    try {
      return unquote(t.text)
    } catch (e) {
      throw parseError(this.input, t.pos, `unquoting failed: ${(e as Error).message}`)
    }
  }
}

export function matchSelector(s: Selector, adaptor: Adaptor): boolean {
  const value = adaptor(s.fieldpath)
  switch (s.operator) {
    case 'present':
      return value !== undefined
    case '==':
      return value !== undefined && value === s.value
    case '!=':
      // As in containerd: an absent field compares as "" (so `labels.x!=y` matches when x is unset).
      return (value ?? '') !== s.value
    case '~=':
      return (s.re ?? compileRegex(s.value, 0, s.value)).test(value ?? '')
  }
}

/** Parse filter strings (ORed). Throws InvalidArgumentError naming the position. */
export function parseFilters(filters: readonly string[]): Filter {
  const alternatives = filters.filter((f) => f !== '').map((f) => new Parser(f).parse())
  // containerd: an empty filter string matches everything, so one among others makes them moot.
  const matchAll = filters.length === 0 || filters.some((f) => f === '')
  return {
    alternatives,
    match: (adaptor) => matchAll || alternatives.some((sels) => sels.every((s) => matchSelector(s, adaptor))),
  }
}
