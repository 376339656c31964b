/**
 * The agent's operational HTTP middlewares: request ids, the Host check,
 * bearer-token access,
 * /metrics, /healthz, counting download bytes, and the per-RPC wrapper that
 * logs and measures every method call. src/http/app.ts mounts them.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import type Koa from 'koa'
import type { MethodTable, RpcMethod } from '../rpc/method.js'
import type { Pool } from '../../zfs/types.js'
import { outcomeOf, type Metrics } from '../ops/metrics.js'

export const REQUEST_ID_HEADER = 'X-Request-Id'
export const HEALTH_PATH = '/healthz'
export const METRICS_PATH = '/metrics'

/** The request being served, for code that has no ctx (RPC methods). */
export const requestContext = new AsyncLocalStorage<{ readonly requestId: string }>()

/** A client's id is kept when it is short and plain; otherwise we make one. */
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/

export function requestId(): Koa.Middleware {
  return async (ctx, next) => {
    const given = ctx.get(REQUEST_ID_HEADER)
    const id = CLIENT_ID.test(given) ? given : randomUUID()
    ctx.state.requestId = id
    ctx.set(REQUEST_ID_HEADER, id) // on res before any raw writeHead, so streamed responses carry it too
    await requestContext.run({ requestId: id }, next)
  }
}

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

/** 421 Misdirected Request unless hostAllowed; before anything else runs. `allowed()` is read per request. */
export function hostCheck(allowed: () => readonly string[] | undefined): Koa.Middleware {
  return async (ctx, next) => {
    const header = ctx.req.headers.host
    if (hostAllowed(header, allowed())) return next()
    ctx.status = 421
    ctx.set('Connection', 'close')
    ctx.set('X-Content-Type-Options', 'nosniff')
    ctx.type = 'text/plain; charset=utf-8'
    ctx.body = `misdirected request: this agent does not answer to Host ${JSON.stringify(String(header).slice(0, 100))}; `
      + 'it takes IP addresses, localhost, its hostname and the names given with --allowed-hosts\n'
  }
}

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

/** 401 for everything but /healthz unless the request has the token. `token()` is read per request. */
export function bearerAuth(token: () => string | undefined): Koa.Middleware {
  return async (ctx, next) => {
    const t = token()
    if (t === undefined || ctx.path === HEALTH_PATH || checkBearer(ctx.get('Authorization') || undefined, t)) return next()
    ctx.status = 401
    ctx.set('WWW-Authenticate', 'Bearer realm="mistify-agent-image"')
    ctx.type = 'text/plain; charset=utf-8'
    ctx.body = 'unauthorized: this agent needs Authorization: Bearer <token>\n'
  }
}

export function metricsRoute(metrics: () => Metrics | undefined): Koa.Middleware {
  return async (ctx, next) => {
    if (ctx.path !== METRICS_PATH) return next()
    const m = metrics()
    if (!m || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next()
    ctx.body = await m.registry.metrics()
    ctx.type = m.registry.contentType
  }
}

export interface HealthSource { pools(name?: undefined, x?: { signal?: AbortSignal; timeoutMs?: number }): Promise<Pool[]> }

/**
 * GET /healthz: 200 when the pool is ONLINE, 200 `degraded` when it is
 * DEGRADED (it still serves every request, as start-up accepts it; the body
 * tells monitoring), 503 (with what we saw) otherwise.
 */
export function healthRoute(zfs: HealthSource, pool: () => string | undefined, timeoutMs = 10_000): Koa.Middleware {
  return async (ctx, next) => {
    if (ctx.path !== HEALTH_PATH || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next()
    const name = pool()
    ctx.set('Cache-Control', 'no-store')
    try {
      const pools = await zfs.pools(undefined, { timeoutMs })
      const found = name === undefined ? pools[0] : pools.find((p) => p.name === name)
      const seen = { name: found?.name ?? name ?? '', health: found?.health ?? 'MISSING' }
      const status = found?.health === 'ONLINE' ? 'ok' : found?.health === 'DEGRADED' ? 'degraded' : 'unhealthy'
      ctx.status = status === 'unhealthy' ? 503 : 200
      ctx.body = { status, pool: seen }
    } catch (e) {
      ctx.status = 503
      ctx.body = { status: 'error', pool: { name: name ?? '', health: 'UNKNOWN' }, error: (e as Error).message }
    }
  }
}

/** Count body bytes written on `path`'s responses (the download route writes raw). */
export function countResponseBytes(path: string, add: () => ((n: number) => void) | undefined): Koa.Middleware {
  return async (ctx, next) => {
    const count = ctx.path === path ? add() : undefined
    if (count) {
      const res = ctx.res
      const write = res.write.bind(res) as (...a: unknown[]) => boolean
      res.write = ((chunk: unknown, ...rest: unknown[]) => {
        if (typeof chunk === 'string') count(Buffer.byteLength(chunk))
        else if (chunk instanceof Uint8Array) count(chunk.byteLength)
        return write(chunk, ...rest)
      }) as typeof res.write
    }
    return next()
  }
}

export interface RpcEvent {
  readonly method: string
  readonly durationMs: number
  readonly outcome: string
  readonly requestId: string | undefined
}

/** The same table, each method reporting its name, duration and outcome once per call. */
export function observeMethods(table: MethodTable, report: (e: RpcEvent) => void): MethodTable {
  const out = new Map<string, RpcMethod>()
  for (const [name, m] of table) {
    out.set(name, {
      params: m.params,
      async call(params, ctx) {
        const start = process.hrtime.bigint()
        let err: unknown
        try {
          return await m.call(params, ctx)
        } catch (e) {
          err = e ?? new Error('thrown undefined')
          throw e
        } finally {
          const durationMs = Number(process.hrtime.bigint() - start) / 1e6
          try { report({ method: name, durationMs, outcome: outcomeOf(err), requestId: requestContext.getStore()?.requestId }) } catch { /* never fail a call for its report */ }
        }
      },
    })
  }
  return out
}
