import { randomUUID } from 'node:crypto'
import type Koa from 'koa'

export const REQUEST_ID_HEADER = 'X-Request-Id'

/** A client's id is kept when it is short and plain; otherwise we make one. */
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/

export function requestId(): Koa.Middleware {
  return async (ctx, next) => {
    const given = ctx.get(REQUEST_ID_HEADER)
    const id = CLIENT_ID.test(given) ? given : randomUUID()
    ctx.state.requestId = id
    ctx.set(REQUEST_ID_HEADER, id) // on res before any raw writeHead, so streamed responses carry it too
    await next()
  }
}
