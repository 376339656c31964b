/**
 * The Go-compatibility layer (this folder): gorilla/rpc v1 and Go encoding/json, byte for byte.
 * No JSON-RPC library can do this: Go matches keys case-insensitively, ids above 2^53 must be
 * echoed as written, clients depend on gorilla's exact error texts and plain-text 400s, and Go's
 * encoder escapes HTML. json-rpc-2.0 (rpc/server.ts) runs the calls; this layer parses and decodes
 * each request before it, and encodes each answer after it. Here: body → calls.
 */import { METHOD_ALIASES } from '../method.js'
import type { StructSpec } from '../schema.js'
import { compactJson, JsonNumber, JsonObject, JsonSyntaxError, parseJsonPrefix, type JsonValue, type ParsedJson } from './json.js'
import { decodeParams, matchField, ParamsTypeError } from './decode.js'
import { goQuote, type V2ErrorObject } from './codec.js'
import { RPC } from '../error-codes.js'

export const SERVICE_NAME = 'ImageStore'

export { METHOD_ALIASES }

/** What the parser needs of the method table: each method's request struct. */
export type MethodSpecs = ReadonlyMap<string, { readonly params: StructSpec }>

/**
 * Most calls one 2.0 batch may carry. Each call may start a zfs command, and
 * a 1 MiB body holds some 25,000 of them; a larger batch runs nothing and is
 * answered with one Invalid Request error.
 */
export const MAX_BATCH = 100

const JSON_TYPES = new Set(['application/json'])
const JSONRPC_TYPES = new Set(['application/json-rpc', 'application/jsonrequest'])

export type ContentTypeCheck =
  /** `only2`: a JSON-RPC-specific type, fine for 2.0 bodies only. `type` as sent, for the 415 text. */
  | { readonly ok: true; readonly only2: boolean; readonly type: string }
  | { readonly ok: false; readonly status: 415; readonly text: string }

/**
 * gorilla: the media type (up to `;`, case folded) must be application/json
 * (both dialects), or application/json-rpc / application/jsonrequest (2.0
 * bodies only); a missing Content-Type is refused like any other. The 415
 * text echoes the type as sent.
 */
export function checkContentType(header: string | undefined): ContentTypeCheck {
  const raw = header ?? ''
  const cut = raw.indexOf(';')
  const type = cut === -1 ? raw : raw.slice(0, cut)
  const folded = type.toLowerCase()
  if (JSON_TYPES.has(folded)) return { ok: true, only2: false, type }
  if (JSONRPC_TYPES.has(folded)) return { ok: true, only2: true, type }
  return { ok: false, status: 415, text: `rpc: unrecognized Content-Type: ${type}` }
}

export type Lookup =
  | { readonly ok: true; readonly name: string; readonly params: StructSpec }
  | { readonly ok: false; readonly message: string }

/** `ImageStore.X` or bare `X`, exact and case-sensitive, or an alias; with gorilla's error texts. */
export function lookupMethod(methods: MethodSpecs, requested: string): Lookup {
  const parts = requested.split('.')
  if (requested === '' || parts.length > 2) return { ok: false, message: `rpc: service/method request ill-formed: ${goQuote(requested)}` }
  if (parts.length === 2 && parts[0] !== SERVICE_NAME) return { ok: false, message: `rpc: can't find service ${goQuote(requested)}` }
  const bare = parts[parts.length - 1]!
  const name = methods.has(bare) ? bare : METHOD_ALIASES.get(bare) ?? bare
  const method = methods.get(name)
  return method ? { ok: true, name, params: method.params } : { ok: false, message: `rpc: can't find method ${goQuote(requested)}` }
}

export interface PreparedCall {
  /** Canonical table name. */
  readonly name: string
  /** Decoded from the method's request struct. */
  readonly params: Record<string, unknown>
}

/** A gorilla 1.0 request: a call (id null = notification), or a plain-text 4xx. */
export type LegacyRequest =
  | { readonly kind: 'call'; readonly call: PreparedCall; readonly id: string | null }
  | { readonly kind: 'reject'; readonly status: 400 | 415; readonly text: string }

/**
 * One 2.0 request: a call, or an error to answer. `id` is the raw id text;
 * undefined = notification (no response, even for an error), null = `"id":null`.
 */
export type V2Item =
  | { readonly kind: 'call'; readonly call: PreparedCall; readonly id: string | null | undefined }
  | { readonly kind: 'error'; readonly error: V2ErrorObject; readonly id: string | null | undefined }

export type ParsedRequest =
  | { readonly dialect: '1.0'; readonly request: LegacyRequest }
  | { readonly dialect: '2.0'; readonly batch: boolean; readonly items: readonly V2Item[] }

const GO_KIND: Record<string, string> = { string: 'string', boolean: 'bool', number: 'number', array: 'array', object: 'object' }
function jsonKind(v: JsonValue): string {
  if (v === null) return 'null'
  if (v instanceof JsonNumber) return 'number'
  if (Array.isArray(v)) return 'array'
  if (v instanceof JsonObject) return 'object'
  return GO_KIND[typeof v]!
}

const looksLike2 = (body: Uint8Array) => {
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')
  return /^\s*\[/.test(text) || text.includes('"jsonrpc"')
}

/**
 * Turn a body (already past the Content-Type check) into what to run or
 * answer. A JSON array, or an object with `jsonrpc`, is 2.0; anything else is
 * gorilla 1.0. A body that is not JSON gets 2.0's -32700 when it looks like
 * 2.0 (starts with `[` or mentions "jsonrpc"), else gorilla's plain-text 400.
 */
export function parseRequest(
  body: Uint8Array | string,
  methods: MethodSpecs,
  ct: { readonly only2: boolean; readonly type: string } = { only2: false, type: 'application/json' },
): ParsedRequest {
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body
  let parsed: ParsedJson
  try {
    parsed = parseJsonPrefix(bytes)
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e
    if (ct.only2 || looksLike2(bytes)) {
      return { dialect: '2.0', batch: false, items: [{ kind: 'error', error: { code: RPC.parseError, message: e.message }, id: null }] }
    }
    return { dialect: '1.0', request: { kind: 'reject', status: 400, text: e.message } }
  }
  const v = parsed.value
  if (Array.isArray(v)) {
    if (v.length === 0) return { dialect: '2.0', batch: false, items: [invalid('empty batch', null)] }
    if (v.length > MAX_BATCH) return { dialect: '2.0', batch: false, items: [invalid(`a batch of ${v.length} calls, more than the limit of ${MAX_BATCH}`, null)] }
    // Member spans are absolute, so each element reads its id from the same text.
    return { dialect: '2.0', batch: true, items: v.map((el) => parseV2(el, parsed, methods)) }
  }
  if (v instanceof JsonObject && v.has('jsonrpc')) return { dialect: '2.0', batch: false, items: [parseV2(v, parsed, methods)] }
  if (ct.only2) return { dialect: '1.0', request: { kind: 'reject', status: 415, text: `rpc: unrecognized Content-Type: ${ct.type}` } }
  return { dialect: '1.0', request: parseLegacy(v, parsed, methods) }
}

/** gorilla's serverRequest: {method string; params, id *json.RawMessage}, keys matched the Go way. */
const ENVELOPE = { method: { kind: 'string' }, params: { kind: 'string' }, id: { kind: 'string' } } as const

function parseLegacy(v: JsonValue, parsed: ParsedJson, methods: MethodSpecs): LegacyRequest {
  const reject = (text: string): LegacyRequest => ({ kind: 'reject', status: 400, text })
  let method = ''
  let params: JsonValue = null
  let id: string | null = null
  if (v instanceof JsonObject) {
    let typeError: string | null = null
    for (const m of v.members) {
      const field = matchField(ENVELOPE, m.key)
      if (field === 'method') {
        if (typeof m.value === 'string') method = m.value
        else if (m.value !== null) {
          const text = `json: cannot unmarshal ${jsonKind(m.value)} into Go value of type string`
          // Go stops at a number in the wrong place, and otherwise reports the first mismatch.
          if (m.value instanceof JsonNumber) { typeError = text; break }
          typeError ??= text
        }
      } else if (field === 'params') params = m.value
      // A RawMessage keeps the text; null makes the pointer nil (= notification).
      else if (field === 'id') id = m.value === null ? null : compactJson(parsed.text(m.start, m.end))
    }
    if (typeError !== null) return reject(typeError)
  } else if (v !== null) {
    return reject(`json: cannot unmarshal ${jsonKind(v)} into Go value of type json.serverRequest`)
  }
  const found = lookupMethod(methods, method)
  if (!found.ok) return reject(found.message)
  if (params === null) return reject('rpc: method request ill-formed: missing params field')
  // gorilla unmarshals params into [1]interface{}{&args}: extra elements are
  // skipped, [] and [null] leave args at its zero value.
  if (!Array.isArray(params)) return reject(`json: cannot unmarshal ${jsonKind(params)} into Go value of type [1]interface {}`)
  try {
    return { kind: 'call', call: { name: found.name, params: decodeParams(params[0] ?? null, found.params) }, id }
  } catch (e) {
    if (e instanceof ParamsTypeError) return reject(e.message)
    throw e
  }
}

function invalid(why: string, id: string | null): V2Item {
  return { kind: 'error', error: { code: RPC.invalidRequest, message: `Invalid Request: ${why}` }, id }
}

function parseV2(v: JsonValue, parsed: ParsedJson, methods: MethodSpecs): V2Item {
  if (!(v instanceof JsonObject)) return invalid('not an object', null)
  const idMember = v.member('id')
  let id: string | null | undefined
  if (idMember === undefined) id = undefined
  else if (idMember.value === null || typeof idMember.value === 'string' || idMember.value instanceof JsonNumber) {
    id = idMember.value === null ? null : compactJson(parsed.text(idMember.start, idMember.end))
  } else return invalid('id must be a string, a number or null', null)
  // An invalid request is answered even without an id: we cannot tell it was meant as a notification.
  const answerId = id ?? null
  if (v.get('jsonrpc') !== '2.0') return invalid('jsonrpc must be "2.0"', answerId)
  const method = v.get('method')
  if (typeof method !== 'string') return invalid('method must be a string', answerId)
  const params = v.get('params') ?? null
  if (params !== null && !Array.isArray(params) && !(params instanceof JsonObject)) return invalid('params must be an array or an object', answerId)
  const found = lookupMethod(methods, method)
  if (!found.ok) return { kind: 'error', error: { code: RPC.methodNotFound, message: `Method not found: ${goQuote(method)}` }, id }
  // Params: the 1.0 style one-element array, or the struct itself as an object.
  if (Array.isArray(params) && params.length > 1) {
    return { kind: 'error', error: { code: RPC.invalidParams, message: 'params must be one object (or an array holding one)' }, id }
  }
  const arg = Array.isArray(params) ? params[0] ?? null : params
  try {
    return { kind: 'call', call: { name: found.name, params: decodeParams(arg, found.params) }, id }
  } catch (e) {
    if (e instanceof ParamsTypeError) return { kind: 'error', error: { code: RPC.invalidParams, message: e.message }, id }
    throw e
  }
}
