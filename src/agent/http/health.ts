import type Koa from 'koa'
import type { Pool } from '../../zfs/types.js'

export interface HealthSource { pools(name?: undefined, x?: { signal?: AbortSignal; timeoutMs?: number }): Promise<Pool[]> }

/**
 * GET /healthz: 200 when the pool is ONLINE, 200 `degraded` when it is
 * DEGRADED (it still serves every request, as start-up accepts it; the body
 * tells monitoring), 503 (with what we saw) otherwise.
 */
export function health(zfs: HealthSource, pool: string | undefined, timeoutMs = 10_000): Koa.Middleware {
  return async (ctx) => {
    ctx.set('Cache-Control', 'no-store')
    try {
      const pools = await zfs.pools(undefined, { timeoutMs })
      const found = pool === undefined ? pools[0] : pools.find((p) => p.name === pool)
      const seen = { name: found?.name ?? pool ?? '', health: found?.health ?? 'MISSING' }
      const status = found?.health === 'ONLINE' ? 'ok' : found?.health === 'DEGRADED' ? 'degraded' : 'unhealthy'
      ctx.status = status === 'unhealthy' ? 503 : 200
      ctx.body = { status, pool: seen }
    } catch (e) {
      ctx.status = 503
      ctx.body = { status: 'error', pool: { name: pool ?? '', health: 'UNKNOWN' }, error: (e as Error).message }
    }
  }
}
