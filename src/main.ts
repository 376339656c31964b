#!/usr/bin/env node
/** Process entry: config → agent → listen; SIGTERM/SIGINT close gracefully. */
import { parseConfig, ConfigError } from './config.js'
import { createAgent, StartupError } from './agent.js'
import { jsonLogger } from './log.js'

const log = jsonLogger()

async function main(): Promise<void> {
  const config = parseConfig(process.argv.slice(2), process.env)
  const agent = await createAgent(config, { log })
  const server = agent.app.listen(config.port, config.listen)
  await new Promise<void>((resolve, reject) => { server.once('listening', resolve); server.once('error', reject) })
  log.info({ listen: config.listen, port: config.port, zpool: config.zpool, imageServer: config.imageServer }, 'mistify-agent-image listening')
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down')
    // Stop accepting, answer waiting fetches with 'fetcher quit', then let open requests finish (5 s, as the original).
    server.close()
    const force = setTimeout(() => { server.closeAllConnections(); }, 5000)
    force.unref()
    agent.close().then(() => process.exit(0), (e: Error) => { log.error({ err: e.message }, 'close failed'); process.exit(1) })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

main().catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e)
  log.error({ err: msg }, e instanceof ConfigError || e instanceof StartupError ? 'cannot start' : 'crashed')
  process.exit(e instanceof ConfigError ? 2 : 1)
})
