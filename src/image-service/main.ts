#!/usr/bin/env node
/** mistify-image-service: guest images over the mistify API (port 20000) and the OpenStack Image API v2 (port 9292). */
import { jsonLogger } from '../common/log.js'
import { parseConfig, UsageError, USAGE } from './config.js'
import { startService } from './server.js'

const log = jsonLogger()

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
  log.info({ url: svc.nativeUrl }, `native API listening on ${svc.nativeUrl}`)
  if (svc.glanceUrl) log.info({ url: svc.glanceUrl }, `glance API listening on ${svc.glanceUrl}`)
  log.info({ dir: cfg.dataDir }, 'data directory')
  log.info({ blobs: svc.deps.blobs.where }, 'blob store')
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      log.info({ signal: sig }, 'shutting down')
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
    log.error({ err: err instanceof Error ? err.stack ?? err.message : String(err) }, 'fatal')
    process.exitCode = 1
  },
)
