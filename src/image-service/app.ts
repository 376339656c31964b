/** The two Koa apps (native API, Glance API) over shared dependencies; server.ts (or a test) decides where they listen. */
import Koa from 'koa'
import type { SourcePolicy } from '../common/address-policy.js'
import type { Fetcher } from './fetcher.js'
import { glanceApp } from './glance/routes.js'
import { nativeApp } from './native/routes.js'
import type { IngestDeps } from './store/ingest.js'
import type { StoreMetrics } from './store/store-metrics.js'

export interface ServiceDeps extends IngestDeps {
  fetcher: Fetcher
  /** Blob bytes read and written (GET /metrics on the native API); absent in tests that build deps by hand. */
  metrics?: StoreMetrics | undefined
  /** Largest image accepted by an upload or a fetch, in bytes. */
  maxUploadSize: number
  /** Hosts a fetch-from-URL may reach (address-policy.ts); unset: any. */
  sourcePolicy?: SourcePolicy | undefined
  /** false: POST /images (fetch from a URL) is refused. */
  urlSources?: boolean | undefined
  /** true: /images/<id>/download answers 302 to /blobs/sha256/<hex> (cluster mode, behind a cache). */
  redirectDownloads?: boolean | undefined
}

export interface Apps {
  native: Koa
  glance: Koa
}

export function createApp(deps: ServiceDeps): Apps {
  const build = (middleware: Koa.Middleware[]): Koa => {
    const app = new Koa()
    // Our middleware answers every error itself; Koa's default logger would only duplicate it.
    app.silent = true
    for (const m of middleware) app.use(m)
    return app
  }
  return { native: build(nativeApp(deps)), glance: build(glanceApp(deps)) }
}
