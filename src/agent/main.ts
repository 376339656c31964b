#!/usr/bin/env node
/**
 * Process entry: config → preflight → agent → listen (TCP or unix socket);
 * SIGTERM/SIGINT close gracefully.
 */
import http from 'node:http'
import { isIP } from 'node:net'
import { parseConfig, ConfigError } from './config.js'
import { createAgent, StartupError } from './app.js'
import { configureOps } from './http/app.js'
import { createZfs, createZfsRunner } from '../zfs/index.js'
import { jsonLogger } from '../common/log.js'
import { preflight, PreflightError } from './ops/preflight.js'
import { createMetrics } from './ops/metrics.js'
import { instrumentRunner } from './ops/zfs-metrics.js'
import { listen, ListenError } from './ops/listen.js'

const log = jsonLogger()

async function main(): Promise<void> {
  const config = parseConfig(process.argv.slice(2), process.env)
  preflight()
  const metrics = createMetrics({ defaultMetrics: true })
  const zfs = createZfs(instrumentRunner(createZfsRunner({ timeoutMs: config.zfsTimeoutMs }), metrics))
  const agent = await createAgent(config, { log, zfs })
  metrics.setFetchQueue(() => agent.fetches.size)
  configureOps(agent.app, { token: config.token, metrics, pool: config.zpool, allowedHosts: allowedHosts(config) })
  const server = http.createServer(agent.app.callback())
  await listen(server, config.socket !== undefined ? { socket: config.socket } : { port: config.port, host: config.listen })
  log.info({
    ...(config.socket !== undefined ? { socket: config.socket } : { listen: config.listen, port: config.port }),
    zpool: config.zpool, imageServer: config.imageServer, auth: config.token !== undefined,
  }, 'mistify-agent-image listening')
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down')
    // Stop accepting, answer waiting fetches with 'fetcher quit', then let open requests finish (5 s, as the original).
    server.close() // also removes a unix socket file
    const force = setTimeout(() => { server.closeAllConnections(); }, 5000)
    force.unref()
    agent.close().then(() => process.exit(0), (e: Error) => { log.error({ err: e.message }, 'close failed'); process.exit(1) })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

/**
 * The Host check's extra names: none on a unix socket (no browser can reach
 * it, and clients send any Host there); otherwise --allowed-hosts plus the
 * listen address when it is a name (clients then use it as Host).
 */
function allowedHosts(c: ReturnType<typeof parseConfig>): string[] {
  if (c.socket !== undefined) return ['*']
  return [...(c.allowedHosts ?? []), ...(isIP(c.listen) === 0 ? [c.listen] : [])]
}

main().catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e)
  const known = e instanceof ConfigError || e instanceof StartupError || e instanceof PreflightError || e instanceof ListenError
  log.error({ err: msg }, known ? 'cannot start' : 'crashed')
  if (known) process.stderr.write(`mistify-agent-image: ${msg}\n`)
  process.exit(e instanceof ConfigError ? 2 : 1)
})
