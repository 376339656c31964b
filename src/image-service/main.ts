#!/usr/bin/env node
/**
 * mistify-image-service: serves guest images to mistify-agent-image over the
 * mistify API (port 20000) and to OpenStack clients over the Image API v2
 * (port 9292). See config.ts for flags and environment.
 */
import { parseConfig, UsageError, USAGE } from './config.js'
import { stderrLogger } from './log.js'
import { startService } from './server.js'

const log = stderrLogger()

async function main(): Promise<number> {
  let cfg
  try {
    cfg = parseConfig(process.argv.slice(2), process.env)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`mistify-image-service: ${err.message}\n\n${USAGE}`)
    return 2
  }
  if (cfg === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  const svc = await startService(cfg, { log })
  log.info(`native API listening on ${svc.nativeUrl}`)
  if (svc.glanceUrl) log.info(`glance API listening on ${svc.glanceUrl}`)
  log.info('data directory', { dir: cfg.dataDir })
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      log.info(`${sig}: shutting down`)
      resolve()
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  await svc.close()
  return 0
}

main().then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    log.error('fatal', { err: err instanceof Error ? err.stack ?? err.message : String(err) })
    process.exitCode = 1
  },
)
