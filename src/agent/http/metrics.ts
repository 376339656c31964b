import type Koa from 'koa'
import type { Metrics } from '../ops/metrics.js'

/** GET /metrics: the registry in Prometheus text form. */
export function metricsPage(m: Metrics): Koa.Middleware {
  return async (ctx) => {
    ctx.body = await m.registry.metrics()
    ctx.type = m.registry.contentType
  }
}

/**
 * Count every request by the route it matched (the router's pattern, so
 * labels stay bounded) and its final status, refusals (421, 401) included;
 * a route that writes the raw response (the download) has its status there.
 */
export function countRequests(m: Metrics): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next()
    } finally {
      const route = (ctx as { _matchedRoute?: unknown })._matchedRoute
      countRequest(m, typeof route === 'string' ? route : undefined, ctx.respond === false ? ctx.res.statusCode : ctx.status)
    }
  }
}

/** One request counted; `route` is the router's pattern, undefined when none matched. */
export function countRequest(m: Metrics, route: string | undefined, status: number): void {
  m.httpRequests.inc({ route: route ?? 'unmatched', status: String(status) })
}
