/**
 * Response bytes of both dialects. The one place that decides whether an
 * error goes out as a gorilla 1.0 string or a JSON-RPC 2.0 object.
 *
 * 1.0 (gorilla/rpc json codec + Go's json.Encoder):
 *   `{"result":R,"error":null,"id":ID}` + "\n", or on a method error
 *   `{"result":null,"error":"<text>","id":ID}` + "\n", where ID is the
 *   request's raw id text (compacted, as Go re-encodes a RawMessage).
 * 2.0: `{"jsonrpc":"2.0","result":R,"id":ID}` or
 *   `{"jsonrpc":"2.0","error":{"code":C,"message":M,"data":D},"id":ID}`; a
 *   batch is `[a,b,...]`. Bodies end with "\n" like Go's encoder output.
 *
 * Strings are written the way Go's encoder writes them (HTML-safe: <, >, &
 * and U+2028/2029 escaped; \b and \f as \u0008/\u000c).
 */
import type { WireError } from '../error-codes.js'

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'
export const TEXT_CONTENT_TYPE = 'text/plain; charset=utf-8'

const GO_ESCAPES: Record<string, string> = {
  '\\b': '\\u0008', '\\f': '\\u000c',
  '<': '\\u003c', '>': '\\u003e', '&': '\\u0026', '\u2028': '\\u2028', '\u2029': '\\u2029',
}

/** Bytes, encoded once, of each result marked reusable. */
const encoded = new WeakMap<object, Buffer>()

/**
 * Mark a result that is never mutated (ListImages' answer, one object per
 * catalog state): it is encoded to bytes once however often it is sent, and
 * goes out as those bytes, so a large answer costs neither a JSON and UTF-8
 * encoding nor a copy per request.
 */
export function reuseEncoding<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !encoded.has(value)) encoded.set(value, Buffer.from(goJson(value)))
  return value
}

const NEWLINE = Buffer.from('\n')

/** A response body: text, or byte chunks to send in order when a reusable result went into it. */
export type Body = string | readonly Buffer[]

/** `before` + the result's JSON + `after`, as text, or as chunks around a reusable result's bytes. */
function around(before: string, result: unknown, after: string): Body {
  const bytes = typeof result === 'object' && result !== null ? encoded.get(result) : undefined
  return bytes === undefined ? `${before}${goJson(result)}${after}` : [Buffer.from(before), bytes, Buffer.from(after)]
}

/**
 * JSON text of `value` as Go's json.Encoder would write it. `undefined` is
 * `null` (a method with nothing to say). Throws if the value cannot be
 * serialised (cycles, BigInt).
 */
export function goJson(value: unknown): string {
  const s = JSON.stringify(value)
  if (s === undefined) return 'null'
  // Each escape pair is consumed whole, so `\\b` (backslash, b) is left alone.
  // JSON.stringify writes lone surrogates as \udXXX; Go writes U+FFFD there.
  return s.replace(/\\u(d[89a-f][0-9a-f]{2})|\\.|[<>&\u2028\u2029]/g, (m, sur: string | undefined) =>
    sur !== undefined ? '\\ufffd' : GO_ESCAPES[m] ?? m)
}

/** Go's IsPrint, close enough: letters, marks, numbers, punctuation, symbols, ASCII space. */
const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u

/** Go's `%q` / strconv.Quote, as gorilla's error texts use it. */
export function goQuote(s: string): string {
  let out = '"'
  for (const ch of s) {
    const cp = ch.codePointAt(0)!
    if (ch === '"' || ch === '\\') out += '\\' + ch
    else if (cp >= 0xd800 && cp < 0xe000) out += '\ufffd' // a lone surrogate was U+FFFD in Go
    else if (PRINTABLE.test(ch)) out += ch
    else if (ch === '\x07') out += '\\a'
    else if (ch === '\b') out += '\\b'
    else if (ch === '\f') out += '\\f'
    else if (ch === '\n') out += '\\n'
    else if (ch === '\r') out += '\\r'
    else if (ch === '\t') out += '\\t'
    else if (ch === '\v') out += '\\v'
    else if (cp < 0x20 || cp === 0x7f) out += '\\x' + cp.toString(16).padStart(2, '0')
    else if (cp < 0x10000) out += '\\u' + cp.toString(16).padStart(4, '0')
    else out += '\\U' + cp.toString(16).padStart(8, '0')
  }
  return out + '"'
}

/** 1.0 success: keys in gorilla's order, one line. */
export function legacyResult(result: unknown, rawId: string): Body {
  return around('{"result":', result, `,"error":null,"id":${rawId}}\n`)
}

/** 1.0 method error: HTTP 200, the error as a bare string, result null. */
export function legacyError(message: string, rawId: string): string {
  return `{"result":null,"error":${goJson(message)},"id":${rawId}}\n`
}

export interface V2ErrorObject {
  readonly code: number
  readonly message: string
  readonly data?: unknown
}

/** 2.0 error object from the table's mapping. */
export function v2ErrorObject(w: WireError): V2ErrorObject {
  return w.data === undefined ? { code: w.rpcCode, message: w.message } : { code: w.rpcCode, message: w.message, data: w.data }
}

/** One 2.0 response object (no newline: it may go into a batch). `rawId` null → `"id":null`. */
export function v2Result(result: unknown, rawId: string | null): Body {
  return around('{"jsonrpc":"2.0","result":', result, `,"id":${rawId ?? 'null'}}`)
}

export function v2Error(error: V2ErrorObject, rawId: string | null): string {
  const e = error.data === undefined
    ? `{"code":${error.code},"message":${goJson(error.message)}}`
    : `{"code":${error.code},"message":${goJson(error.message)},"data":${goJson(error.data)}}`
  return `{"jsonrpc":"2.0","error":${e},"id":${rawId ?? 'null'}}`
}

/**
 * The 2.0 HTTP body: a single response, or an array for a batch; null when
 * there is nothing to send (only notifications).
 */
export function v2Body(responses: readonly Body[], batch: boolean): Body | null {
  if (responses.length === 0) return null
  if (!batch) { const r = responses[0]!; return typeof r === 'string' ? `${r}\n` : [...r, NEWLINE] }
  if (responses.every((r) => typeof r === 'string')) return `[${responses.join(',')}]\n`
  const parts = batch ? ['[', ...responses.flatMap((r, i) => (i ? [',', r] : [r])), ']\n'] : [responses[0]!, '\n']
  return parts.flatMap((p) => (typeof p === 'string' ? [Buffer.from(p)] : p))
}
