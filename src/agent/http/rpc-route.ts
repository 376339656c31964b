/**
 * POST /_mistify_RPC_: the HTTP side of both wire dialects (rpc/dispatch.ts). Checks in gorilla/rpc
 * v1's order: Content-Type (415), body (ours: size limit → 413), then what dispatch answers.
 */
import type Koa from 'koa'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { BodyTooLarge, readBody } from '../../common/body.js'
import type { RpcServer } from '../rpc/server.js'
import { checkContentType, dispatch, TEXT_CONTENT_TYPE } from '../rpc/dispatch.js'
import { wireError } from '../rpc/error-codes.js'

export const RPC_PATH = '/_mistify_RPC_'
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024
/** Below this, chunks are joined: one copy of a small answer costs less than a stream or several writes. */
const JOIN_BELOW_BYTES = 64 * 1024

export interface RpcRouteOptions {
  log?: (obj: object, msg: string) => void
  /** Largest request body accepted; more gets 413. Default 1 MiB. */
  maxBodyBytes?: number
}

/** What one POST gets back, every header spelt out, so Koa and the fast path (fast-rpc.ts) send the same bytes. */
export interface RpcHttpAnswer {
  readonly status: number
  readonly headers: ReadonlyArray<readonly [string, string]>
  /** null: no body (204). Chunks (64 KiB or more): a result's bytes made once, written as they are. */
  readonly body: string | Buffer | readonly Buffer[] | null
}

/** An answer on Koa: status, body (chunks as a stream), then the headers, so Koa's own type for a body is replaced. */
function toKoa(ctx: Koa.Context, a: RpcHttpAnswer): void {
  ctx.status = a.status
  const body = a.body
  if (body === null || typeof body === 'string' || Buffer.isBuffer(body)) ctx.body = body
  else {
    ctx.body = Readable.from(body, { objectMode: false })
    ctx.length = bodyLength(body)
  }
  for (const [k, v] of a.headers) ctx.set(k, v)
}

const text = (status: number, body: string, more: ReadonlyArray<readonly [string, string]> = []): RpcHttpAnswer =>
  ({ status, body, headers: [['Content-Type', TEXT_CONTENT_TYPE], ...more] })

/** gorilla's answer to anything but POST on the RPC path. */
export const rpcMethodNotAllowed: Koa.Middleware = async (ctx) => {
  toKoa(ctx, text(405, `rpc: POST method required, received ${ctx.method}`))
}

/**
 * Aborted only if the connection closes before our response is complete. The
 * AbortController is made when a call first reads the signal: most calls
 * (GetImage, ListImages) never do, and making one was a measurable share of them.
 */
function callSignal(req: IncomingMessage, res: ServerResponse): { readonly signal: AbortSignal; clientGone(): boolean } {
  let gone = req.socket.destroyed
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
 * Answer one POST already routed here (path, method, Host and token checked).
 * The calls get a signal, aborted when the client goes away before its
 * response is written; null when it went away and nobody is left to answer.
 */
export async function answerRpc(
  rpc: RpcServer, req: IncomingMessage, res: ServerResponse, requestId: string | undefined, opts: RpcRouteOptions = {},
): Promise<RpcHttpAnswer | null> {
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const log = opts.log ?? (() => {})
  try {
    const ct = checkContentType(req.headers['content-type'] || undefined)
    if (!ct.ok) return text(ct.status, ct.text)

    const declared = Number(req.headers['content-length'] || NaN)
    let body: Buffer
    try {
      if (declared > limit) throw new BodyTooLarge(limit)
      body = await readBody(req, limit)
    } catch (e) {
      if (!(e instanceof BodyTooLarge)) return text(400, '') // the client went away mid-body
      return text(413, `rpc: request body larger than ${limit} bytes`, [['Connection', 'close']])
    }

    const client = callSignal(req, res) // not spread: that would read the signal, and so make it
    const reply = await dispatch(rpc, body, ct, { get signal() { return client.signal }, clientGone: client.clientGone, requestId, log })
    if (reply === null) return null
    const headers: Array<readonly [string, string]> = []
    if (reply.nosniff) headers.push(['X-Content-Type-Options', 'nosniff'])
    if (reply.body === null) return { status: reply.status, headers, body: null }
    // Koa's own type for a body without one, which the original's clients have always seen.
    headers.push(['Content-Type', reply.contentType ?? TEXT_CONTENT_TYPE])
    const out = reply.body
    if (typeof out === 'string') return { status: reply.status, headers, body: out }
    const length = bodyLength(out)
    return { status: reply.status, headers, body: length < JOIN_BELOW_BYTES ? Buffer.concat(out, length) : out }
  } catch (err) {
    // A bug of ours (a parser or codec throwing): still a controlled answer.
    const w = wireError(err)
    log({ err, ref: w.data?.ref }, 'rpc route failed')
    return text(500, w.message)
  }
}

/** How many bytes a body is. */
export function bodyLength(body: string | Buffer | readonly Buffer[]): number {
  return typeof body === 'string' ? Buffer.byteLength(body) : Buffer.isBuffer(body) ? body.length : body.reduce((n, b) => n + b.length, 0)
}

/** The POST handler on Koa; the router checks path and method, the middleware before it Host and token. */
export function rpcHandler(rpc: RpcServer, opts: RpcRouteOptions = {}): Koa.Middleware {
  return async (ctx) => {
    const requestId = typeof ctx.state.requestId === 'string' ? ctx.state.requestId : undefined
    const a = await answerRpc(rpc, ctx.req, ctx.res, requestId, opts)
    if (a !== null) toKoa(ctx, a) // null: nobody to answer
  }
}
