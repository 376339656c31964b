#!/usr/bin/env node
/** The agent's process: configuration, preflight, the agent, listen; SIGTERM/SIGINT close gracefully. */
import http from 'node:http'
import { parseConfig, ConfigError, usage, wantsHelp } from './config.js'
import { createAgent, StartupError } from './app.js'
import { jsonLogger } from '../common/log.js'
import { preflight, PreflightError } from './ops/preflight.js'
import { listen, ListenError } from './ops/listen.js'

const log = jsonLogger()

async function main(): Promise<void> {
  if (wantsHelp(process.argv.slice(2))) { process.stdout.write(usage()); return }
  const config = parseConfig(process.argv.slice(2), process.env)
  preflight()
  const agent = await createAgent(config, { log, processMetrics: true })
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

main().catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e)
  const known = e instanceof ConfigError || e instanceof StartupError || e instanceof PreflightError || e instanceof ListenError
  log.error({ err: msg }, known ? 'cannot start' : 'crashed')
  if (known) process.stderr.write(`mistify-agent-image: ${msg}\n`)
  process.exit(e instanceof ConfigError ? 2 : 1)
})
