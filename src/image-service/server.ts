/**
 * Wires the service and listens: opens the store, repairs records a previous run left
 * mid-transfer, serves both APIs. Used by main.ts and the tests (ephemeralPorts).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdir } from 'node:fs/promises'
import type Koa from 'koa'
import { createSourcePolicy } from '../common/address-policy.js'
import { jsonLogger, type Logger } from '../common/log.js'
import { createApp, type ServiceDeps } from './app.js'
import type { Config } from './config.js'
import { Fetcher } from './fetcher.js'
import { StoreMetrics, meteredBlobs, meteredRecords } from './store/store-metrics.js'
import { parseBlobsUrl } from './store/blobs-url.js'
import { openBlobs } from './store/open-blobs.js'
import type { BlobStore } from './store/blobs.js'
import { asPending, withError } from './store/ingest.js'
import { ImageStore } from './store/store.js'
import { openRecords } from './store/open-records.js'
import type { RecordBackend } from './store/records.js'

export interface StartOptions {
  log?: Logger
  /** Listen on port 0 for every enabled API (tests). */
  ephemeralPorts?: boolean
  /** How long close() lets running requests finish before cutting them (ms). */
  closeGraceMs?: number
}

export interface RunningService {
  nativeUrl: string
  /** undefined when the Glance API is disabled (--glance-port 0). */
  glanceUrl: string | undefined
  deps: ServiceDeps
  close(): Promise<void>
}

/** Put records a crash or restart interrupted into a state that can make progress. */
export async function recover(deps: ServiceDeps): Promise<void> {
  for (const r of await deps.store.list()) {
    if ((r.status === 'pending' || r.status === 'downloading') && r.source !== '') {
      // A URL fetch: start it again from the beginning.
      await deps.store.update(r.id, asPending)
      deps.fetcher.start(r.id)
      deps.log.info({ id: r.id, source: r.source }, 'restarting interrupted fetch')
    } else if (r.status === 'downloading') {
      // An upload: its client is gone, its staged bytes were dropped by blobs.init().
      await deps.store.update(r.id, (x) => withError(x, 'upload interrupted by a service restart'))
    } else if (r.status === 'complete' && !(await deps.blobs.exists(r.id))) {
      await deps.store.update(r.id, (x) => withError(x, 'image data missing'))
      deps.log.warn({ id: r.id }, 'image data missing')
    }
  }
}

interface Listening {
  server: Server
  url: string
  /** Requests whose handlers have not finished yet. */
  inflight: () => number
  drained: () => Promise<void>
}

async function listen(app: Koa, port: number, host: string, idleTimeoutMs: number): Promise<Listening> {
  let inflight = 0
  let waiters: Array<() => void> = []
  const handle = app.callback()
  const server = createServer((req, res) => {
    inflight++
    res.once('close', () => {
      // 'close' fires when the handler's response is done or the client went away;
      // give the handler a tick to persist what it was writing.
      setImmediate(() => {
        inflight--
        if (inflight === 0) for (const w of waiters.splice(0)) w()
      })
    })
    void handle(req, res)
  })
  // Uploads may take hours: no whole-request limit, but an idle limit, so a
  // stalled client cannot hold an upload (and its temp file) forever.
  server.requestTimeout = 0
  server.headersTimeout = 60_000
  server.keepAliveTimeout = 5_000
  server.setTimeout(idleTimeoutMs)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const a = server.address() as AddressInfo
  const h = a.family === 'IPv6' ? `[${a.address}]` : a.address
  return {
    server,
    url: `http://${h}:${a.port}`,
    inflight: () => inflight,
    drained: () => (inflight === 0 ? Promise.resolve() : new Promise((r) => waiters.push(r))),
  }
}

export async function startService(cfg: Config, o: StartOptions = {}): Promise<RunningService> {
  const log = o.log ?? jsonLogger()
  await mkdir(cfg.dataDir, { recursive: true, mode: 0o750 })
  const db: RecordBackend = await openRecords(cfg.metadata, { dataDir: cfg.dataDir, leaseTtlS: cfg.metadataLeaseTtlS })
  const listening: Listening[] = []
  let fetcher: Fetcher | undefined
  let sweeper: NodeJS.Timeout | undefined
  let blobs: BlobStore | undefined
  try {
    const spec = parseBlobsUrl(cfg.blobs)
    const metrics = new StoreMetrics()
    blobs = meteredBlobs(await openBlobs(cfg.blobs, cfg.dataDir), metrics, spec.kind)
    // Replicas sharing the records may share the blob store: init must not drop
    // another replica's uploads in progress.
    await blobs.init({ shared: db.shared })
    const store = new ImageStore(meteredRecords(db, metrics))
    // Loopback, link-local and private hosts only when allowlisted: the service stores and re-serves what it fetches.
    const sourcePolicy = createSourcePolicy({ allow: cfg.allowSourceHosts })
    fetcher = new Fetcher({ store, blobs, log }, {
      maxSize: cfg.maxUploadSize, idleTimeoutMs: cfg.fetchTimeoutMs, progressIntervalMs: cfg.progressIntervalMs, policy: sourcePolicy,
    })
    const deps: ServiceDeps = { store, blobs, metrics, log, fetcher, maxUploadSize: cfg.maxUploadSize, sourcePolicy, urlSources: cfg.urlSources, redirectDownloads: cfg.downloadRedirect }
    if (db.shared) {
      // Other replicas' transfers may be live: a dead replica's are found by their expired lease instead.
      let sweeping = false
      const sweep = (): void => {
        if (sweeping) return
        sweeping = true
        store.sweepOrphans((r) => withError(r, 'owner replica went away; retry the upload'))
          .then((ids) => { for (const id of ids) log.warn({ id }, 'transfer orphaned by a dead replica marked error') })
          .catch((err: unknown) => log.warn({ err: String(err) }, 'orphan sweep failed'))
          .finally(() => { sweeping = false })
      }
      sweeper = setInterval(sweep, Math.max(500, (cfg.metadataLeaseTtlS * 1000) / 2))
      sweeper.unref()
    } else {
      await recover(deps)
    }
    const apps = createApp(deps)
    const native = await listen(apps.native, o.ephemeralPorts ? 0 : cfg.port, cfg.listen, cfg.idleTimeoutMs)
    listening.push(native)
    const glance = cfg.glancePort === 0 ? undefined : await listen(apps.glance, o.ephemeralPorts ? 0 : cfg.glancePort, cfg.listen, cfg.idleTimeoutMs)
    if (glance) listening.push(glance)
    let closing: Promise<void> | undefined
    return {
      nativeUrl: native.url,
      glanceUrl: glance?.url,
      deps,
      close: () => (closing ??= (clearInterval(sweeper), shutdown(listening, fetcher as Fetcher, db, o.closeGraceMs ?? 5_000).finally(() => blobs?.close?.()))),
    }
  } catch (err) {
    clearInterval(sweeper)
    await shutdown(listening, fetcher, db, 0)
    blobs?.close?.()
    throw err
  }
}

async function shutdown(listening: Listening[], fetcher: Fetcher | undefined, db: RecordBackend, graceMs: number): Promise<void> {
  const closed = listening.map((l) => new Promise<void>((r) => l.server.close(() => r())))
  for (const l of listening) l.server.closeIdleConnections()
  const drained = Promise.all(listening.map((l) => l.drained()))
  let timer: NodeJS.Timeout | undefined
  await Promise.race([drained, new Promise<void>((r) => { timer = setTimeout(r, graceMs) })])
  clearTimeout(timer)
  // Cut what is still running; handlers then record their failure before the db closes.
  for (const l of listening) l.server.closeAllConnections()
  await fetcher?.close()
  await Promise.race([drained, new Promise<void>((r) => { timer = setTimeout(r, 2_000) })])
  clearTimeout(timer)
  await Promise.all(closed)
  await db.close()
}
