import { isIP } from 'node:net'
import { hostname } from 'node:os'
import type Koa from 'koa'

const HOSTNAME = hostname().toLowerCase().replace(/\.$/, '')

/** The host name of a Host header: port and IPv6 brackets stripped, case and a trailing dot folded; null when malformed. */
export function hostOf(header: string): string | null {
  const h = header.trim().toLowerCase()
  const m = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/.exec(h) ?? /^([^:\[\]]+)(?::\d{1,5})?$/.exec(h)
  return m ? m[1]!.replace(/\.$/, '') : null
}

/**
 * May a request with this Host header be served? A web page can reach the
 * agent through DNS rebinding (its own name made to resolve to 127.0.0.1),
 * but the browser then sends that name as Host. So: an IP literal (rebinding
 * always uses a name; mistify-agent connects by address), `localhost`, this
 * machine's hostname, or a name in `allowed` (`*` in it: any). No Host at
 * all (HTTP/1.0) is fine: browsers always send one.
 */
export function hostAllowed(header: string | undefined, allowed: readonly string[] = []): boolean {
  if (header === undefined || allowed.includes('*')) return true
  const h = hostOf(header)
  if (h === null) return false
  return isIP(h) !== 0 || h === 'localhost' || h === HOSTNAME || allowed.some((a) => a.toLowerCase() === h)
}

/** 421 Misdirected Request unless hostAllowed; mounted before any route, so a rebound browser request runs nothing. */
export function hostCheck(allowed: readonly string[] | undefined): Koa.Middleware {
  return async (ctx, next) => {
    const header = ctx.req.headers.host
    if (hostAllowed(header, allowed)) return next()
    ctx.status = 421
    ctx.set('Connection', 'close')
    ctx.set('X-Content-Type-Options', 'nosniff')
    ctx.type = 'text/plain; charset=utf-8'
    ctx.body = `misdirected request: this agent does not answer to Host ${JSON.stringify(String(header).slice(0, 100))}; `
      + 'it takes IP addresses, localhost, its hostname and the names given with --allowed-hosts\n'
  }
}
