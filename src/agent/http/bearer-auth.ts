import { createHash, timingSafeEqual } from 'node:crypto'
import type Koa from 'koa'

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest()

/**
 * Does an Authorization header carry `Bearer <token>`? Compares digests with
 * timingSafeEqual, so the time taken says nothing about the token.
 */
export function checkBearer(header: string | undefined, token: string): boolean {
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '')
  const given = m?.[1] ?? ''
  // Always compare, even with nothing given, so a missing header costs the same.
  return timingSafeEqual(digest(given), digest(token)) && m !== null
}

/** 401 unless the request has the token (no token configured: open) or its path is one of `open` (any method). */
export function bearerAuth(token: string | undefined, o: { open?: readonly string[] } = {}): Koa.Middleware {
  const open = new Set(o.open)
  return async (ctx, next) => {
    if (token === undefined || open.has(ctx.path) || checkBearer(ctx.get('Authorization') || undefined, token)) return next()
    ctx.status = 401
    ctx.set('WWW-Authenticate', 'Bearer realm="mistify-agent-image"')
    ctx.type = 'text/plain; charset=utf-8'
    ctx.body = 'unauthorized: this agent needs Authorization: Bearer <token>\n'
  }
}
