/**
 * POST /_mistify_RPC_: the HTTP side of both wire dialects (rpc/dispatch.ts). Checks in gorilla/rpc
 * v1's order: Content-Type (415), body (ours: size limit → 413), then what dispatch answers.
 */
import type Koa from 'koa'
import { Readable } from 'node:stream'
import { BodyTooLarge, readBody } from '../../common/body.js'
import type { RpcServer } from '../rpc/server.js'
import { checkContentType, dispatch, TEXT_CONTENT_TYPE } from '../rpc/dispatch.js'
import { wireError } from '../rpc/error-codes.js'

export const RPC_PATH = '/_mistify_RPC_'
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024
/** Below this, chunks are joined: one copy of a small answer costs less than a stream. */
const STREAM_FROM_BYTES = 64 * 1024

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
 * Aborted only if the connection closes before our response is complete. The
 * AbortController is made when a call first reads the signal: most calls
 * (GetImage, ListImages) never do, and making one was a measurable share of them.
 */
function callSignal(ctx: Koa.Context): { readonly signal: AbortSignal; clientGone(): boolean } {
  const res = ctx.res
  let gone = ctx.req.socket.destroyed
  let ac: AbortController | undefined
  const reason = () => new Error('client closed the connection')
  res.once('close', () => { if (!res.writableFinished) { gone = true; ac?.abort(reason()) } })
  return {
    get signal() {
      if (!ac) { ac = new AbortController(); if (gone) ac.abort(reason()) }
      return ac.signal
    },
    clientGone: () => gone,
  }
}

/**
 * The POST handler; the router checks path and method. The calls get a
 * signal, aborted when the client goes away before its response is written.
 */
export function rpcHandler(rpc: RpcServer, opts: RpcRouteOptions = {}): Koa.Middleware {
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const log = opts.log ?? (() => {})

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

      const requestId = typeof ctx.state.requestId === 'string' ? ctx.state.requestId : undefined
      const client = callSignal(ctx) // not spread: that would read the signal, and so make it
      const reply = await dispatch(rpc, body, ct, { get signal() { return client.signal }, clientGone: client.clientGone, requestId, log })
      if (reply === null) return // nobody to answer
      if (reply.nosniff) ctx.set('X-Content-Type-Options', 'nosniff')
      ctx.status = reply.status
      if (typeof reply.body === 'string' || reply.body === null) ctx.body = reply.body
      else {
        // Chunks around a result's bytes made once: a large one is written as it is, never copied again.
        const length = reply.body.reduce((n, b) => n + b.length, 0)
        ctx.body = length < STREAM_FROM_BYTES ? Buffer.concat(reply.body, length) : Readable.from(reply.body, { objectMode: false })
        ctx.length = length
      }
      if (reply.contentType) ctx.set('Content-Type', reply.contentType)
    } catch (err) {
      // A bug of ours (a parser or codec throwing): still a controlled answer.
      const w = wireError(err)
      log({ err, ref: w.data?.ref }, 'rpc route failed')
      text(ctx, 500, w.message)
    }
  }
}
