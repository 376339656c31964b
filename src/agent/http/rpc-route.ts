/**
 * POST /_mistify_RPC_: both wire dialects over one json-rpc-2.0 server
 * (rpc/server.ts). Checks in gorilla/rpc v1's order: Content-Type (415), body
 * (ours: size limit → 413), then envelope, method name and params (400, plain text, for 1.0).
 */
import type Koa from 'koa'
import { BodyTooLarge, readBody } from '../../common/body.js'
import type { MethodTable } from '../rpc/method.js'
import { rpcServer, type RpcServer } from '../rpc/server.js'
import { checkContentType, parseRequest, type PreparedCall } from '../rpc/gorilla/protocol.js'
import { wireError, type Dialect } from '../rpc/error-codes.js'
import {
  JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, legacyError, legacyResult, v2Body, v2Error, v2Result, type V2ErrorObject,
} from '../rpc/gorilla/codec.js'

export const RPC_PATH = '/_mistify_RPC_'
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024

export interface RpcRouteOptions {
  log?: (obj: object, msg: string) => void
  /** Largest request body accepted; more gets 413. Default 1 MiB. */
  maxBodyBytes?: number
}

function text(ctx: Koa.Context, status: number, body: string): void {
  ctx.status = status
  ctx.body = body
  ctx.set('Content-Type', TEXT_CONTENT_TYPE)
}

/** gorilla's answer to anything but POST on the RPC path. */
export const rpcMethodNotAllowed: Koa.Middleware = async (ctx) => {
  text(ctx, 405, `rpc: POST method required, received ${ctx.method}`)
}

/**
 * The POST handler; the router checks path and method. Every call gets a
 * signal, aborted when the client goes away before its response is written.
 * Batch calls run one after another, in order; once the client is gone the
 * calls not yet started are not started (nobody would read their answers,
 * and each may run zfs).
 */
export function rpcHandler(rpc: RpcServer, opts: RpcRouteOptions = {}): Koa.Middleware {
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const log = opts.log ?? (() => {})

  /**
   * Run one call and encode its answer; raw ids stay here, the library sees a
   * stand-in. A result that cannot be encoded (a cycle, a BigInt) is an error too.
   */
  async function answer(
    call: PreparedCall, signal: AbortSignal, dialect: Dialect, requestId: string | undefined,
    ok: (result: unknown) => string, fail: (e: V2ErrorObject) => string,
  ): Promise<string> {
    const ctx = { signal, dialect, requestId }
    const res = await rpc.call(call.name, call.params, ctx)
    if (res.error) return fail(res.error)
    try {
      return ok(res.result)
    } catch (err) {
      return fail(rpc.errorObject(err, call.name, ctx))
    }
  }

  return async (ctx) => {
    try {
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
      const requestId = typeof ctx.state.requestId === 'string' ? ctx.state.requestId : undefined

      const parsed = parseRequest(body, rpc.methods, ct)
      if (parsed.dialect === '1.0') {
        const r = parsed.request
        if (r.kind === 'reject') return text(ctx, r.status, r.text)
        const id = r.id
        const out = await answer(r.call, ac.signal, '1.0', requestId,
          (result) => id === null ? '' : legacyResult(result, id),
          (e) => id === null ? '' : legacyError(e.message, id))
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
        const out = await answer(item.call, ac.signal, '2.0', requestId,
          (result) => id === undefined ? '' : v2Result(result, id),
          (e) => id === undefined ? '' : v2Error(e, id))
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

/**
 * Until app.ts mounts rpcHandler on its router: the old middleware over an
 * already observed method table, with its own path and 405 checks.
 */
export function rpcRoute(methods: MethodTable, opts: RpcRouteOptions = {}): Koa.Middleware {
  const handler = rpcHandler(rpcServer(methods, opts.log ? { log: opts.log } : {}), opts)
  return async (ctx, next) => {
    if (ctx.path !== RPC_PATH) return next()
    if (ctx.method !== 'POST') return rpcMethodNotAllowed(ctx, next)
    return handler(ctx, next)
  }
}
