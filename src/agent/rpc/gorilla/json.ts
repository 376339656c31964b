/**
 * A small strict JSON parser that behaves like Go's `json.Decoder.Decode`
 * as gorilla/rpc used it:
 *  - only the FIRST value of the input is read; whatever follows is ignored;
 *  - number literals are kept as their source text (`JsonNumber.raw`), so the
 *    decoder can tell `1e10` from `10000000000` and ids above 2^53 survive;
 *  - objects keep every member in document order, duplicates included, with
 *    the byte span of each value (to echo a request id verbatim);
 *  - errors carry Go's decoder texts: `EOF` (nothing but whitespace),
 *    `unexpected EOF` (input ends inside a value) and
 *    `invalid character 'x' <context>`.
 * It works on bytes, like Go's scanner: an error names the offending byte
 * read as a Latin-1 character, exactly as Go's message does.
 */

/** A number literal, as written. */
export class JsonNumber {
  constructor(readonly raw: string) {}
  toJSON(): number { return Number(this.raw) }
}

export interface JsonMember {
  readonly key: string
  readonly value: JsonValue
  /** Byte offsets of the value's text in the parsed input. */
  readonly start: number
  readonly end: number
}

/** An object as written: members in order, duplicate keys kept. */
export class JsonObject {
  constructor(readonly members: readonly JsonMember[]) {}
  /** The last member with exactly this key (JSON.parse's "last wins"). */
  member(key: string): JsonMember | undefined {
    for (let i = this.members.length - 1; i >= 0; i--) if (this.members[i]!.key === key) return this.members[i]
    return undefined
  }
  has(key: string): boolean { return this.member(key) !== undefined }
  get(key: string): JsonValue | undefined { return this.member(key)?.value }
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject

/** Go's decoder text is the whole message (`SyntaxError.Error()` is just msg). */
export class JsonSyntaxError extends Error {
  override name = 'JsonSyntaxError'
  constructor(message: string, readonly offset: number) { super(message) }
}

export interface ParsedJson {
  readonly value: JsonValue
  /** Byte offset just past the first value. */
  readonly end: number
  /** The input as bytes: `text(start, end)` reads spans back. */
  readonly bytes: Uint8Array
  text(start: number, end: number): string
}

/** Go 1.15+ refuses deeper nesting with this text; we need a bound anyway. */
export const MAX_DEPTH = 10000

/**
 * Longest number literal accepted. Go takes any length, but a megabyte of
 * digits then costs BigInt work and error texts that quote it (hundreds of
 * milliseconds of event loop for one request). A uint64 needs 20 digits and
 * a float64 at most 24 characters, so 64 refuses nothing a caller can mean.
 */
export const MAX_NUMBER_LENGTH = 64

// ignoreBOM: a U+FEFF inside a string is content, not a byte-order mark.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true })
const isWs = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d
const isDigit = (c: number) => c >= 0x30 && c <= 0x39
const hexVal = (c: number) =>
  c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1

/**
 * Go's `quoteChar`: the byte as a rune (so 0xC3 shows as 'Ã'), quoted like
 * strconv.Quote but between single quotes.
 */
export function quoteByte(c: number): string {
  if (c === 0x27) return `'\\''`
  if (c === 0x22) return `'"'`
  const short: Record<number, string> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r', 0x5c: '\\\\' }
  const s = short[c]
  if (s !== undefined) return `'${s}'`
  if (c < 0x20 || c === 0x7f) return `'\\x${c.toString(16).padStart(2, '0')}'`
  // Go's IsPrint: 0x80-0xa0 and the soft hyphen are not printable.
  if ((c >= 0x80 && c <= 0xa0) || c === 0xad) return `'\\u${c.toString(16).padStart(4, '0')}'`
  return `'${String.fromCharCode(c)}'`
}

const SIMPLE_ESCAPES: Record<number, string> = { 0x22: '"', 0x5c: '\\', 0x2f: '/', 0x62: '\b', 0x66: '\f', 0x6e: '\n', 0x72: '\r', 0x74: '\t' }

type Frame =
  | { kind: 'array'; items: JsonValue[]; start: number }
  | { kind: 'object'; members: JsonMember[]; key: string; valueStart: number; start: number }

/**
 * Parse the first JSON value of `input`; ignore anything after it.
 * Throws JsonSyntaxError with Go's message.
 */
export function parseJsonPrefix(input: string | Uint8Array): ParsedJson {
  const b = typeof input === 'string' ? new TextEncoder().encode(input) : input
  const n = b.length
  let i = 0
  const fail = (msg: string): never => { throw new JsonSyntaxError(msg, i) }
  const bad = (context: string): never => fail(`invalid character ${quoteByte(b[i]!)} ${context}`)
  const eof = (): never => fail('unexpected EOF')
  const skipWs = () => { while (i < n && isWs(b[i]!)) i++ }

  function str(): string {
    i++ // opening quote
    let out = ''
    let runStart = i
    for (;;) {
      if (i >= n) eof()
      const c = b[i]!
      if (c === 0x22) break
      if (c < 0x20) bad('in string literal')
      if (c !== 0x5c) { i++; continue }
      out += utf8.decode(b.subarray(runStart, i))
      i++
      if (i >= n) eof()
      const e = b[i]!
      const simple = SIMPLE_ESCAPES[e]
      if (simple !== undefined) { out += simple; i++ } else if (e === 0x75) {
        i++
        const u = hex4()
        if (u >= 0xd800 && u < 0xdc00 && b[i] === 0x5c && b[i + 1] === 0x75) {
          // A surrogate pair only when the next escape is a low surrogate;
          // otherwise Go writes U+FFFD and reads the next escape on its own.
          const save = i
          i += 2
          const lo = hex4()
          if (lo >= 0xdc00 && lo < 0xe000) out += String.fromCharCode(u, lo)
          else { out += '\ufffd'; i = save }
        } else out += u >= 0xd800 && u < 0xe000 ? '\ufffd' : String.fromCharCode(u)
      } else bad('in string escape code')
      runStart = i
    }
    out += utf8.decode(b.subarray(runStart, i))
    i++ // closing quote
    return out
  }

  function hex4(): number {
    let v = 0
    for (let k = 0; k < 4; k++) {
      if (i >= n) eof()
      const h = hexVal(b[i]!)
      if (h < 0) bad('in \\u hexadecimal character escape')
      v = v * 16 + h
      i++
    }
    return v
  }

  // Numbers: Go's grammar. At the very end of the input a complete number
  // is fine (Go feeds the scanner a space at EOF); an incomplete one is not.
  function num(): JsonNumber {
    const start = i
    if (b[i] === 0x2d) { i++; if (i >= n) eof(); if (!isDigit(b[i]!)) bad('in numeric literal') }
    if (b[i] === 0x30) i++
    else while (i < n && isDigit(b[i]!)) i++
    if (i < n && b[i] === 0x2e) {
      i++
      if (i >= n) eof()
      if (!isDigit(b[i]!)) bad('after decimal point in numeric literal')
      while (i < n && isDigit(b[i]!)) i++
    }
    if (i < n && (b[i] === 0x65 || b[i] === 0x45)) {
      i++
      if (i < n && (b[i] === 0x2b || b[i] === 0x2d)) i++
      if (i >= n) eof()
      if (!isDigit(b[i]!)) bad('in exponent of numeric literal')
      while (i < n && isDigit(b[i]!)) i++
    }
    // Checked after the scan (linear, no allocation): the error points at the literal's start.
    if (i - start > MAX_NUMBER_LENGTH) { i = start; fail(`number literal longer than ${MAX_NUMBER_LENGTH} characters`) }
    return new JsonNumber(utf8.decode(b.subarray(start, i)))
  }

  function literal(word: string, value: JsonValue): JsonValue {
    i++
    for (let k = 1; k < word.length; k++) {
      if (i >= n) eof()
      if (b[i] !== word.charCodeAt(k)) bad(`in literal ${word} (expecting '${word[k]}')`)
      i++
    }
    return value
  }

  const stack: Frame[] = []
  let valueStart = 0
  let result: JsonValue = null

  // One loop, explicit stack: deep nesting cannot overflow the JS stack.
  parse: for (;;) {
    // Expecting the beginning of a value.
    skipWs()
    if (i >= n) { if (stack.length === 0) fail('EOF'); eof() }
    valueStart = i
    const c = b[i]!
    let v: JsonValue
    if (c === 0x7b || c === 0x5b) {
      if (stack.length >= MAX_DEPTH) bad('exceeded max depth')
      const start = i
      i++
      skipWs()
      if (i >= n) eof()
      if (c === 0x5b) {
        if (b[i] !== 0x5d) { stack.push({ kind: 'array', items: [], start }); continue parse }
        i++
        v = []
      } else {
        if (b[i] === 0x7d) { i++; v = new JsonObject([]) } else {
          if (b[i] !== 0x22) bad('looking for beginning of object key string')
          const key = str()
          skipWs()
          if (i >= n) eof()
          if (b[i] !== 0x3a) bad('after object key')
          i++
          stack.push({ kind: 'object', members: [], key, valueStart: 0, start })
          continue parse
        }
      }
    } else if (c === 0x22) v = str()
    else if (c === 0x2d || isDigit(c)) v = num()
    else if (c === 0x74) v = literal('true', true)
    else if (c === 0x66) v = literal('false', false)
    else if (c === 0x6e) v = literal('null', null)
    else v = bad('looking for beginning of value')

    // A value is complete: hand it to its container, closing as many as end here.
    let start = valueStart
    for (;;) {
      const top = stack[stack.length - 1]
      if (!top) { result = v; break parse }
      if (top.kind === 'array') top.items.push(v)
      else top.members.push({ key: top.key, value: v, start, end: i })
      skipWs()
      if (i >= n) eof()
      const d = b[i]!
      if (top.kind === 'array') {
        if (d === 0x2c) { i++; continue parse }
        if (d !== 0x5d) bad('after array element')
        i++
        stack.pop()
        v = top.items
      } else {
        if (d === 0x2c) {
          i++
          skipWs()
          if (i >= n) eof()
          if (b[i] !== 0x22) bad('looking for beginning of object key string')
          top.key = str()
          skipWs()
          if (i >= n) eof()
          if (b[i] !== 0x3a) bad('after object key')
          i++
          continue parse
        }
        if (d !== 0x7d) bad('after object key:value pair')
        i++
        stack.pop()
        v = new JsonObject(top.members)
      }
      start = top.start
    }
  }
  const bytes = b
  return { value: result, end: i, bytes, text: (s, e) => utf8.decode(bytes.subarray(s, e)) }
}

/** The first JSON value of `input` (trailing content ignored, as Go's Decoder does). */
export function parseJson(input: string | Uint8Array): JsonValue {
  return parseJsonPrefix(input).value
}

/**
 * Compact valid JSON text the way Go re-encodes a json.RawMessage: drop
 * insignificant whitespace and, inside strings, escape <, >, & and
 * U+2028/U+2029 (Go's HTML-safe encoder). Used to echo a request id.
 */
export function compactJson(raw: string): string {
  let out = ''
  let inStr = false
  for (let k = 0; k < raw.length; k++) {
    const ch = raw[k]!
    if (inStr) {
      if (ch === '\\') { out += ch + (raw[k + 1] ?? ''); k++; continue }
      if (ch === '"') inStr = false
      out += htmlEscape(ch)
      continue
    }
    if (ch === '"') inStr = true
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') continue
    out += ch
  }
  return out
}

const HTML_ESCAPES: Record<string, string> = { '<': '\\u003c', '>': '\\u003e', '&': '\\u0026', '\u2028': '\\u2028', '\u2029': '\\u2029' }
const htmlEscape = (ch: string) => HTML_ESCAPES[ch] ?? ch

/** Plain JS view of a parsed value (numbers as JS numbers); for logs and tests. */
export function toPlain(v: JsonValue): unknown {
  if (v instanceof JsonNumber) return Number(v.raw)
  if (Array.isArray(v)) return v.map(toPlain)
  if (v instanceof JsonObject) {
    const o: Record<string, unknown> = {}
    for (const m of v.members) Object.defineProperty(o, m.key, { value: toPlain(m.value), enumerable: true, writable: true, configurable: true })
    return o
  }
  return v
}
