/**
 * POST /_mistify_RPC_: both wire dialects on one path (see rpc/protocol.ts).
 * Order of checks, as gorilla/rpc v1: method (405), Content-Type (415), then
 * the body (ours: size limit → 413), then envelope, method name and params
 * (400, plain text, for 1.0). Each request is answered in its own dialect;
 * nothing thrown by a method escapes raw: rpc/error-codes.ts maps it.
 *
 * Every call gets `ctx.signal`, aborted when the client goes away before its
 * response is written. Batch calls run one after another, in order; once the
 * client is gone the calls not yet started are not started (nobody would read
 * their answers, and each may run zfs). A batch holds at most MAX_BATCH calls
 * (rpc/protocol.ts).
 */
import type Koa from 'koa'
import { BodyTooLarge, readBody } from '../../common/body.js'
import type { MethodTable } from '../rpc/method.js'
import { checkContentType, parseRequest, type PreparedCall } from '../rpc/gorilla/protocol.js'
import { wireError, type Dialect, type WireError } from '../rpc/error-codes.js'
import {
  JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, legacyError, legacyResult, v2Body, v2Error, v2ErrorObject, v2Result,
} from '../rpc/gorilla/codec.js'

export const RPC_PATH = '/_mistify_RPC_'
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024

export interface RpcRouteOptions {
  log?: (obj: object, msg: string) => void
  /** Largest request body accepted; more gets 413. Default 1 MiB. */
  maxBodyBytes?: number
}

export function rpcRoute(methods: MethodTable, opts: RpcRouteOptions = {}): Koa.Middleware {
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const log = opts.log ?? (() => {})

  const text = (ctx: Koa.Context, status: number, body: string) => {
    ctx.status = status
    ctx.body = body
    ctx.set('Content-Type', TEXT_CONTENT_TYPE)
  }

  /**
   * Run one call and encode its answer. Encoding happens inside the try, so a
   * result that cannot be serialised (a cycle, a BigInt) is an error too.
   */
  async function answer(
    call: PreparedCall, signal: AbortSignal, dialect: Dialect,
    ok: (result: unknown) => string, fail: (w: WireError) => string,
  ): Promise<string> {
    try {
      return ok(await call.method.call(call.params, { signal }))
    } catch (err) {
      const w = wireError(err, dialect)
      if (!w.expose) log({ err, method: call.name, ref: w.data?.ref, aborted: signal.aborted }, 'rpc method failed')
      return fail(w)
    }
  }

  return async (ctx, next) => {
    if (ctx.path !== RPC_PATH) return next()
    try {
      if (ctx.method !== 'POST') return text(ctx, 405, `rpc: POST method required, received ${ctx.method}`)
      const ct = checkContentType(ctx.get('Content-Type') || undefined)
      if (!ct.ok) return text(ctx, ct.status, ct.text)

      const declared = Number(ctx.get('Content-Length') || NaN)
      let body: Buffer
      try {
        if (declared > limit) throw new BodyTooLarge(limit)
        body = await readBody(ctx.req, limit)
      } catch (e) {
        if (!(e instanceof BodyTooLarge)) { ctx.status = 400; ctx.body = ''; return } // the client went away mid-body
        ctx.set('Connection', 'close')
        return text(ctx, 413, `rpc: request body larger than ${limit} bytes`)
      }

      // Aborted only if the connection closes before our response is complete.
      const ac = new AbortController()
      const res = ctx.res
      const onClose = () => { if (!res.writableFinished) ac.abort(new Error('client closed the connection')) }
      res.once('close', onClose)
      if (ctx.req.socket.destroyed) ac.abort(new Error('client closed the connection'))

      const parsed = parseRequest(body, methods, ct)
      if (parsed.dialect === '1.0') {
        const r = parsed.request
        if (r.kind === 'reject') return text(ctx, r.status, r.text)
        const id = r.id
        const out = await answer(r.call, ac.signal, '1.0',
          (result) => id === null ? '' : legacyResult(result, id),
          (w) => id === null ? '' : legacyError(w.message, id))
        ctx.status = 200
        ctx.body = out // empty for a notification: it ran, there is nothing to say
        if (id !== null) ctx.set('Content-Type', JSON_CONTENT_TYPE)
        ctx.set('X-Content-Type-Options', 'nosniff')
        return
      }

      const responses: string[] = []
      for (const [n, item] of parsed.items.entries()) {
        if (ac.signal.aborted) {
          log({ started: n, of: parsed.items.length }, 'rpc batch cut short: the client went away')
          return
        }
        if (item.kind === 'error') {
          if (item.id !== undefined) responses.push(v2Error(item.error, item.id))
          continue
        }
        const id = item.id
        const out = await answer(item.call, ac.signal, '2.0',
          (result) => id === undefined ? '' : v2Result(result, id),
          (w) => id === undefined ? '' : v2Error(v2ErrorObject(w), id))
        if (id !== undefined) responses.push(out) // notifications get no response
      }
      const bodyText = v2Body(responses, parsed.batch)
      ctx.set('X-Content-Type-Options', 'nosniff')
      if (bodyText === null) { ctx.status = 204; ctx.body = null; return }
      ctx.status = 200
      ctx.body = bodyText
      ctx.set('Content-Type', JSON_CONTENT_TYPE)
    } catch (err) {
      // A bug of ours (a parser or codec throwing): still a controlled answer.
      const w = wireError(err)
      log({ err, ref: w.data?.ref }, 'rpc route failed')
      text(ctx, 500, w.message)
    }
  }
}
