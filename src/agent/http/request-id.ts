import { randomUUID } from 'node:crypto'
import type Koa from 'koa'

export const REQUEST_ID_HEADER = 'X-Request-Id'

/** A client's id is kept when it is short and plain; otherwise we make one. */
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The id a request goes by: the client's (its X-Request-Id header) or a new one. */
export function requestIdOf(given: string | undefined): string {
  return given !== undefined && CLIENT_ID.test(given) ? given : randomUUID()
}

export function requestId(): Koa.Middleware {
  return async (ctx, next) => {
    const id = requestIdOf(ctx.get(REQUEST_ID_HEADER))
    ctx.state.requestId = id
    ctx.set(REQUEST_ID_HEADER, id) // on res before any raw writeHead, so streamed responses carry it too
    await next()
  }
}
