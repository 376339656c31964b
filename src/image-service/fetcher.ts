/**
 * Background fetch of an image from its `source` URL (native `POST /images`), cancellable
 * (image deleted, service stopping); the reason for a failure is kept in the record's `error`.
 */
import { asPending, ImageGoneError, ingest, StaleUploadError, withError, type IngestDeps } from './store/ingest.js'
import { httpGet, type HttpClientError, type HttpResponse } from '../common/http-client.js'
import type { SourcePolicy } from '../common/address-policy.js'
import type { ImageRecord } from './store/store.js'

export interface FetcherOptions {
  maxSize: number
  /** Abort when the source sends nothing for this long (connect, headers or body). */
  idleTimeoutMs: number
  progressIntervalMs: number
  maxRedirects?: number
  /** Which hosts may be fetched from, checked on every hop (address-policy.ts). Unset: any. */
  policy?: SourcePolicy
}

export class FetchError extends Error {
  override name = 'FetchError'
}

export class Fetcher {
  private readonly running = new Map<string, { ctrl: AbortController; done: Promise<void> }>()
  private closed = false

  constructor(private readonly deps: IngestDeps, private readonly o: FetcherOptions) {}

  /** Start fetching the record's source in the background (no-op if already running). */
  start(id: string): void {
    if (this.closed || this.running.has(id)) return
    const ctrl = new AbortController()
    const done = this.run(id, ctrl.signal).finally(() => this.running.delete(id))
    this.running.set(id, { ctrl, done })
  }

  isRunning(id: string): boolean {
    return this.running.has(id)
  }

  cancel(id: string): void {
    this.running.get(id)?.ctrl.abort(new FetchError('fetch cancelled'))
  }

  /** Resolves when no fetch is running (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()].map((r) => r.done))
  }

  async close(): Promise<void> {
    this.closed = true
    for (const r of this.running.values()) r.ctrl.abort(new FetchError('service stopping'))
    await this.idle()
  }

  private async run(id: string, signal: AbortSignal): Promise<void> {
    const rec = await this.deps.store.get(id)
    if (!rec) return
    // Owned from the start (connecting may take long): other replicas' sweeps leave it alone.
    const claim = await this.deps.store.claimTransfer(id).catch(() => undefined)
    try {
      await this.fetch(id, rec, signal)
    } finally {
      await claim?.release().catch(() => {})
    }
  }

  private async fetch(id: string, rec: ImageRecord, signal: AbortSignal): Promise<void> {
    try {
      const res = await this.get(rec.source, signal)
      const expectedSize = res.size ?? -1
      if (expectedSize > this.o.maxSize) {
        res.abandon()
        throw new FetchError(`source is ${expectedSize} bytes, more than the maximum of ${this.o.maxSize}`)
      }
      // The body fails (truncated) rather than ends when the connection closes early.
      await ingest(this.deps, id, res.body, {
        expectedSize, maxSize: this.o.maxSize, signal, progressIntervalMs: this.o.progressIntervalMs, generation: rec.generation,
      })
      this.deps.log.info({ id, source: rec.source }, 'fetched image')
    } catch (err) {
      if (err instanceof ImageGoneError || err instanceof StaleUploadError) return
      if (this.closed) {
        // Stopping, not failing: leave it pending so the next start fetches it again. With
        // records shared by replicas no start-up recovery restarts it: fail it, a POST retries.
        const stopped = this.deps.store.backend.shared ? (r: ImageRecord) => withError(r, 'service replica stopped during the fetch; POST the source again to retry') : asPending
        await this.deps.store.update(id, (r) => (r.generation === rec.generation ? stopped(r) : undefined)).catch(() => {})
        return
      }
      const message = signal.aborted && signal.reason instanceof Error ? signal.reason.message : err instanceof Error ? err.message : String(err)
      this.deps.log.warn({ id, source: rec.source, error: message }, 'image fetch failed')
      // ingest() records its own failures; this covers the ones before it (URL, connect, status).
      await this.deps.store.update(id, (r) => (r.generation !== rec.generation || (r.status === 'error' && r.error === message) ? undefined : withError(r, message))).catch(() => {})
    }
  }

  /** GET the URL through the common client, its failures worded as this service records them. */
  private get(source: string, signal: AbortSignal): Promise<HttpResponse> {
    let url: URL
    try {
      url = new URL(source)
    } catch {
      throw new FetchError(`invalid source URL ${JSON.stringify(source)}`)
    }
    return httpGet(url, {
      signal, idleTimeoutMs: this.o.idleTimeoutMs, maxRedirects: this.o.maxRedirects, policy: this.o.policy,
      headers: { 'accept-encoding': 'identity', 'user-agent': 'mistify-image-service' }, mapError: (e) => this.fetchError(e),
    })
  }

  private fetchError(e: HttpClientError): FetchError {
    switch (e.kind) {
      case 'scheme': return new FetchError(`unsupported source URL scheme ${new URL(e.url).protocol}`)
      case 'redirects': return new FetchError('too many redirects')
      case 'status': return new FetchError(`source answered HTTP ${e.detail.status}`)
      case 'stalled': return new FetchError(`source sent nothing for ${this.o.idleTimeoutMs} ms`)
      case 'truncated': return new FetchError('connection closed before all data arrived')
      // Connect and socket errors as Node words them (ingest words a bare "aborted" itself).
      case 'network': case 'body': return new FetchError(e.detail.reason ?? e.message, { cause: e.cause })
      default: return new FetchError(e.message, { cause: e })
    }
  }
}
