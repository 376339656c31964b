/** One request body in, one reply out: the gorilla layer parses and encodes, the json-rpc-2.0 server runs the calls. */
import type { RpcServer } from './server.js'
import type { Dialect } from './error-codes.js'
import { parseRequest, type ContentTypeCheck, type PreparedCall } from './gorilla/protocol.js'
import {
  JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, legacyError, legacyResult, v2Body, v2Error, v2Result, type Body, type V2ErrorObject,
} from './gorilla/codec.js'

export { checkContentType } from './gorilla/protocol.js'
export { TEXT_CONTENT_TYPE }

export interface RpcReply {
  readonly status: number
  /** null: no body (204). */
  readonly body: Body | null
  readonly contentType?: string
  /** X-Content-Type-Options: nosniff (answers from a call; not on gorilla's plain-text errors). */
  readonly nosniff: boolean
}

export interface DispatchOptions {
  /**
   * Aborted when the client goes away: the running call sees it, the next ones
   * do not start. Read only when a call needs it (it may be made on first read).
   */
  readonly signal: AbortSignal
  /** The client went away (without making the signal). */
  readonly clientGone?: (() => boolean) | undefined
  readonly requestId?: string | undefined
  readonly log: (obj: object, msg: string) => void
}

const text = (status: number, body: string): RpcReply => ({ status, body, contentType: TEXT_CONTENT_TYPE, nosniff: false })

/**
 * Answer a body already past the Content-Type check. Batch calls run one after
 * another, in order; null when the client went away before the batch ended.
 */
export async function dispatch(
  rpc: RpcServer, body: Uint8Array, ct: Extract<ContentTypeCheck, { ok: true }>, o: DispatchOptions,
): Promise<RpcReply | null> {
  /**
   * Run one call and encode its answer; raw ids stay here, the library sees a
   * stand-in. A result that cannot be encoded (a cycle, a BigInt) is an error too.
   */
  async function answer(call: PreparedCall, dialect: Dialect, ok: (result: unknown) => Body, fail: (e: V2ErrorObject) => Body): Promise<Body> {
    const ctx = { get signal() { return o.signal }, dialect, requestId: o.requestId }
    const res = await rpc.call(call.name, call.params, ctx)
    if (res.error) return fail(res.error)
    try {
      return ok(res.result)
    } catch (err) {
      return fail(rpc.errorObject(err, call.name, ctx))
    }
  }

  const parsed = parseRequest(body, rpc.methods, ct)
  if (parsed.dialect === '1.0') {
    const r = parsed.request
    if (r.kind === 'reject') return text(r.status, r.text)
    const id = r.id
    const out = await answer(r.call, '1.0',
      (result) => id === null ? '' : legacyResult(result, id),
      (e) => id === null ? '' : legacyError(e.message, id))
    // Empty for a notification: it ran, there is nothing to say.
    return id === null ? { status: 200, body: out, nosniff: true } : { status: 200, body: out, contentType: JSON_CONTENT_TYPE, nosniff: true }
  }

  const responses: Body[] = []
  for (const [n, item] of parsed.items.entries()) {
    if (o.clientGone ? o.clientGone() : o.signal.aborted) {
      o.log({ started: n, of: parsed.items.length }, 'rpc batch cut short: the client went away')
      return null
    }
    if (item.kind === 'error') {
      if (item.id !== undefined) responses.push(v2Error(item.error, item.id))
      continue
    }
    const id = item.id
    const out = await answer(item.call, '2.0',
      (result) => id === undefined ? '' : v2Result(result, id),
      (e) => id === undefined ? '' : v2Error(e, id))
    if (id !== undefined) responses.push(out) // notifications get no response
  }
  const bodyText = v2Body(responses, parsed.batch)
  return bodyText === null ? { status: 204, body: null, nosniff: true } : { status: 200, body: bodyText, contentType: JSON_CONTENT_TYPE, nosniff: true }
}
