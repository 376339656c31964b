/** Both servers route with @koa/router; the router's bare 404/405 answers get each API's own error bodies. */
import { METHODS } from 'node:http'
import type Koa from 'koa'
import Router from '@koa/router'

export interface RouterAnswers {
  notFound(ctx: Koa.Context): void
  /** The router has set `Allow` already. */
  methodNotAllowed(ctx: Koa.Context): void
}

/**
 * Paths match case-sensitively and exactly (no implied trailing slash). Every method Node
 * parses counts as known, so an unrouted one is a 405, not the router's 501.
 */
export function createRouter(): Router {
  return new Router({ sensitive: true, strict: true, methods: [...METHODS] })
}

/** The router's middleware, with allowedMethods() for 405 + Allow, and the API's bodies on both. */
export function routed(router: Router, a: RouterAnswers): Koa.Middleware[] {
  const answer: Koa.Middleware = async (ctx, next) => {
    await next()
    // OPTIONS is answered as any unrouted method (405), as the original's mux did; allowedMethods() says 200.
    const options = ctx.method === 'OPTIONS' && ctx.response.get('Allow') !== '' && ctx.body === ''
    if (ctx.status === 405 || options) a.methodNotAllowed(ctx)
    else if (ctx.status === 404 && ctx.body == null) a.notFound(ctx)
  }
  // A path that does not percent-decode names nothing (the router would pass its raw text on as a param).
  const decodable: Koa.Middleware = async (ctx, next) => {
    try {
      decodeURIComponent(ctx.path)
    } catch {
      return a.notFound(ctx)
    }
    await next()
  }
  return [answer, decodable, router.allowedMethods() as Koa.Middleware, router.routes() as Koa.Middleware]
}
