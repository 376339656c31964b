/**
 * Outbound HTTP for image bodies. Plain node:http(s) so the body arrives as
 * sent (no transparent decompression); a stalled source fails after an idle
 * timeout instead of hanging a RequestImage forever (the original had none).
 */
import http from 'node:http'
import https from 'node:https'
import { InvalidParamsError, UpstreamError } from '../errors.js'
import { checkUrl, guardedLookup, SourceDeniedError, type SourcePolicy } from '../../common/address-policy.js'

export interface Source {
  /** The bytes, read once; iterating drives the download (backpressure), stopping early ends it. */
  readonly body: AsyncIterable<Buffer>
  /** From Content-Length (of the whole body, also for a 206), when given. */
  readonly size: number | undefined
  /** From X-Image-Sha256, when the image service sends it. */
  readonly sha256: string | undefined
  readonly etag: string | undefined
  readonly acceptRanges: boolean
  /** Give up on the body (a body never iterated would hold its connection until the idle timeout). */
  abandon(): void
}

export interface OpenOptions {
  signal?: AbortSignal | undefined
  idleTimeoutMs: number
  redirects?: number
  /** Ask for the body from this byte on (a 206 is then required). */
  rangeStart?: number
  /**
   * Which hosts may be connected to (address-policy.ts), checked on every
   * hop: the first request, each redirect and each Range resume. Unset: any.
   */
  policy?: SourcePolicy | undefined
  /** Internal: this request already replaced one lost on a stale keep-alive connection. */
  staleRetried?: boolean
}

/** The policy's refusal as the agent's error: the caller's source names a forbidden host. */
function denied(u: URL, reason: string): InvalidParamsError {
  return new InvalidParamsError(`source ${u.protocol}//${u.host}: ${reason}`)
}

export function openSource(url: string, o: OpenOptions): Promise<Source> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    // A redirect may name any scheme; only http(s) is fetched.
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(new UpstreamError(`image source: will not follow a redirect to a ${u.protocol} URL`))
      return
    }
    let lookup: ReturnType<typeof guardedLookup> | undefined
    if (o.policy) {
      const v = checkUrl(u, o.policy)
      if (v.kind === 'denied') {
        reject(denied(u, `${v.reason}; not fetched (allow it with --allow-source-hosts)`))
        return
      }
      // A name: its addresses are checked as the socket connects, so what is checked is what is used.
      if (v.kind === 'resolve') lookup = guardedLookup(o.policy)
    }
    const get = u.protocol === 'https:' ? https.get : http.get
    let response: http.IncomingMessage | undefined
    const headers = o.rangeStart ? { Range: `bytes=${o.rangeStart}-` } : {}
    const req = get(u, { ...(o.signal ? { signal: o.signal } : {}), ...(lookup ? { lookup } : {}), timeout: o.idleTimeoutMs, headers }, (res) => {
      response = res
      const status = res.statusCode ?? 0
      const location = res.headers.location
      if (status >= 300 && status < 400 && location && (o.redirects ?? 5) > 0) {
        res.resume()
        // A Location that is not a URL must fail this fetch, not throw out of the response handler.
        let next: string
        try { next = new URL(location, u).toString() } catch {
          reject(new UpstreamError(`image source ${u.protocol}//${u.host}: redirect to an invalid URL ${JSON.stringify(location)}`))
          return
        }
        openSource(next, { ...o, redirects: (o.redirects ?? 5) - 1 }).then(resolve, reject)
        return
      }
      const want = o.rangeStart ? 206 : 200
      if (status !== want) {
        res.resume()
        reject(new UpstreamError(`unexpected http response code: expected ${want}, received ${status}, url: ${url}`))
        return
      }
      let size = Number(res.headers['content-length'])
      if (o.rangeStart) {
        const m = /^bytes (\d+)-\d+\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''))
        if (!m || Number(m[1]) !== o.rangeStart) {
          res.resume()
          reject(new UpstreamError(`image source ${url}: bad Content-Range ${JSON.stringify(res.headers['content-range'])} for bytes ${o.rangeStart}-`))
          return
        }
        size = Number(m[2])
      }
      // From here the body's reader times the source, and only while it waits for bytes: while
      // zfs receive is slow the socket is paused on purpose, and that is not the source stalling.
      req.setTimeout(0)
      const sha = res.headers['x-image-sha256']
      const etag = res.headers.etag
      resolve({
        body: chunksOf(res, url, o.idleTimeoutMs),
        size: Number.isSafeInteger(size) ? size : undefined,
        sha256: typeof sha === 'string' ? sha.toLowerCase() : undefined,
        etag: typeof etag === 'string' ? etag : undefined,
        acceptRanges: res.headers['accept-ranges'] === 'bytes',
        abandon: () => { if (!res.complete) res.destroy() },
      })
    })
    req.on('timeout', () => {
      const e = new UpstreamError(`image source stalled for ${o.idleTimeoutMs} ms: ${url}`)
      // Once the body streams, its reader must see why it stopped.
      response?.destroy(e)
      req.destroy(e)
    })
    req.on('error', (e) => {
      // A pooled keep-alive connection the server closed just as we reused it: nothing was sent back, ask once more.
      if (!response && req.reusedSocket && (e as NodeJS.ErrnoException).code === 'ECONNRESET' && !o.staleRetried) {
        openSource(url, { ...o, staleRetried: true }).then(resolve, reject)
        return
      }
      if (e instanceof SourceDeniedError) reject(new InvalidParamsError(e.message))
      else reject(e instanceof UpstreamError ? e : new UpstreamError(`fetching ${url}: ${e.message}`, { cause: e }))
    })
  })
}

/**
 * The response body's chunks, its failures as UpstreamErrors that say how far
 * it got, and a connection closed before the end treated as a failure rather
 * than a short but "complete" body. A generator, not another stream stage:
 * under emulation every stage a chunk passes through costs.
 */
async function* chunksOf(res: http.IncomingMessage, url: string, idleTimeoutMs: number): AsyncGenerator<Buffer> {
  let bytes = 0
  const chunks = res[Symbol.asyncIterator]()
  try {
    for (;;) {
      const stalled = setTimeout(() => res.destroy(new UpstreamError(`image source stalled for ${idleTimeoutMs} ms: ${url}`)), idleTimeoutMs)
      let r: IteratorResult<Buffer>
      try { r = await chunks.next() } finally { clearTimeout(stalled) }
      if (r.done) break
      bytes += r.value.length
      yield r.value
    }
  } catch (e) {
    throw e instanceof UpstreamError ? e : new UpstreamError(`image source ${url}: ${(e as Error).message} after ${bytes} bytes`, { cause: e })
  } finally {
    await chunks.return?.() // a reader that stops early ends the connection
  }
  if (!res.complete) throw new UpstreamError(`image source ${url}: connection closed early after ${bytes} bytes`)
}

export interface ResumableSource extends Source {
  /** How often a dropped connection was picked up again with a Range request. */
  resumes(): number
  /** Bytes delivered so far (each byte once, however many connections). */
  delivered(): number
}

/**
 * A source whose body survives dropped connections: when the body fails part
 * way, it is asked for again from the first missing byte (Range), up to
 * `maxResumes` times, and the bytes continue as one stream. The consumer (a
 * running `zfs receive`) never notices; nothing is fetched twice or spooled.
 * A server that cannot resume, or whose image changed (ETag), fails the fetch.
 */
export async function openResumableSource(url: string, o: OpenOptions & { maxResumes?: number; backoffMs?: number }): Promise<ResumableSource> {
  const first = await openSource(url, o)
  const maxResumes = o.maxResumes ?? 5
  let offset = 0
  let resumes = 0
  let cur: Source = first
  async function* bytes(): AsyncGenerator<Buffer> {
    for (;;) {
      try {
        for await (const c of cur.body) { offset += (c as Buffer).length; yield c as Buffer }
        if (first.size !== undefined && offset < first.size) throw new UpstreamError(`image source ${url}: body ended after ${offset} of ${first.size} bytes`)
        return
      } catch (e) {
        const resumable = e instanceof UpstreamError && !o.signal?.aborted && first.size !== undefined && resumes < maxResumes
        if (!resumable) throw e
        let reopened: Source | undefined
        let last: unknown
        // A failed attempt to resume is one more try, not the end of the fetch.
        while (!reopened && resumes < maxResumes && !o.signal?.aborted) {
          resumes++
          await new Promise((r) => setTimeout(r, Math.min((o.backoffMs ?? 200) * resumes, 5000)))
          try {
            reopened = await openSource(url, { ...o, rangeStart: offset })
          } catch (again) {
            last = again
          }
        }
        if (!reopened) {
          throw new UpstreamError(`${(e as Error).message}; resuming at byte ${offset} failed: ${(last as Error | undefined)?.message ?? 'aborted'}`, { cause: last })
        }
        cur = reopened
        if (first.etag && cur.etag && cur.etag !== first.etag) {
          cur.abandon()
          throw new UpstreamError(`image source ${url}: the image changed while it was being fetched (ETag ${first.etag} → ${cur.etag})`)
        }
      }
    }
  }
  return { ...first, body: bytes(), abandon: () => cur.abandon(), resumes: () => resumes, delivered: () => offset }
}
