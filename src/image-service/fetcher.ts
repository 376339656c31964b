/**
 * Background fetch of an image from its `source` URL (native `POST /images`).
 * Uses node:http(s) rather than fetch() so the bytes are stored exactly as
 * served (fetch() would silently gunzip a `Content-Encoding: gzip` response,
 * and a gzipped zfs stream must stay gzipped). Every fetch has an idle
 * timeout, follows a few redirects, and can be cancelled (image deleted,
 * service stopping). The reason for a failure is kept in the record's `error`.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { asPending, ImageGoneError, ingest, StaleUploadError, withError, type IngestDeps } from './store/ingest.js'
import { checkUrl, guardedLookup, SourceDeniedError, type SourcePolicy } from '../common/address-policy.js'

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
    try {
      const res = await this.get(rec.source, signal)
      const len = res.headers['content-length']
      const expectedSize = len !== undefined && /^\d+$/.test(len) ? Number(len) : -1
      if (expectedSize > this.o.maxSize) {
        res.destroy()
        throw new FetchError(`source is ${expectedSize} bytes, more than the maximum of ${this.o.maxSize}`)
      }
      await ingest(this.deps, id, res, {
        expectedSize, maxSize: this.o.maxSize, signal, progressIntervalMs: this.o.progressIntervalMs,
        isComplete: () => res.complete, generation: rec.generation,
      })
      this.deps.log.info({ id, source: rec.source }, 'fetched image')
    } catch (err) {
      if (err instanceof ImageGoneError || err instanceof StaleUploadError) return
      if (this.closed) {
        // Stopping, not failing: leave it pending so the next start fetches it again.
        await this.deps.store.update(id, asPending).catch(() => {})
        return
      }
      const message = signal.aborted && signal.reason instanceof Error ? signal.reason.message : err instanceof Error ? err.message : String(err)
      this.deps.log.warn({ id, source: rec.source, error: message }, 'image fetch failed')
      // ingest() records its own failures; this covers the ones before it (URL, connect, status).
      await this.deps.store.update(id, (r) => (r.generation !== rec.generation || (r.status === 'error' && r.error === message) ? undefined : withError(r, message))).catch(() => {})
    }
  }

  /** GET the URL, following redirects; resolves with a 200 response. */
  private async get(source: string, signal: AbortSignal): Promise<IncomingMessage> {
    let url: URL
    try {
      url = new URL(source)
    } catch {
      throw new FetchError(`invalid source URL ${JSON.stringify(source)}`)
    }
    for (let hop = 0; ; hop++) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FetchError(`unsupported source URL scheme ${url.protocol}`)
      const res = await this.once(url, signal)
      const loc = res.headers.location
      if ([301, 302, 303, 307, 308].includes(res.statusCode ?? 0) && loc !== undefined) {
        res.resume()
        if (hop >= (this.o.maxRedirects ?? 5)) throw new FetchError('too many redirects')
        url = new URL(loc, url)
        continue
      }
      if (res.statusCode !== 200) {
        res.resume()
        throw new FetchError(`source answered HTTP ${res.statusCode ?? '?'}`)
      }
      return res
    }
  }

  private once(url: URL, signal: AbortSignal): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      let lookup: ReturnType<typeof guardedLookup> | undefined
      if (this.o.policy) {
        const v = checkUrl(url, this.o.policy)
        if (v.kind === 'denied') {
          reject(new FetchError(`source ${url.protocol}//${url.host}: ${v.reason}; not fetched (allow it with --allow-source-hosts)`))
          return
        }
        // A name: every address it resolves to is checked as the socket connects (no rebinding in between).
        if (v.kind === 'resolve') lookup = guardedLookup(this.o.policy)
      }
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
        method: 'GET', signal, headers: { 'accept-encoding': 'identity', 'user-agent': 'mistify-image-service' }, ...(lookup ? { lookup } : {}),
      })
      let response: IncomingMessage | undefined
      // The socket timeout is an idle timeout: it also covers a stalled body.
      req.setTimeout(this.o.idleTimeoutMs, () => {
        const err = new FetchError(`source sent nothing for ${this.o.idleTimeoutMs} ms`)
        // Destroying the response with the reason makes the body reader fail with it.
        response?.destroy(err)
        req.destroy(err)
      })
      req.once('response', (res) => {
        response = res
        resolve(res)
      })
      // Stays attached: an error after the response must not go unhandled.
      req.on('error', (e) => reject(e instanceof SourceDeniedError ? new FetchError(e.message) : e))
      req.end()
    })
  }
}
