/** Outbound HTTP GET for image bodies: the agent's fetch and the image service's fetch-from-URL. */
import http from 'node:http'
import https from 'node:https'
import { checkUrl, guardedLookup, SourceDeniedError, type SourcePolicy } from './address-policy.js'

/** What went wrong, for callers that word it their own way (`mapError`). */
export type HttpErrorKind =
  | 'denied' // the address policy refused a hop (nothing was sent to it)
  | 'scheme' // a hop that is not http(s)
  | 'bad-redirect' // a Location that is not a URL
  | 'redirects' // a redirect past maxRedirects
  | 'status' // a status other than the one asked for
  | 'content-range' // a 206 for another range than the one asked for
  | 'network' // the request failed before its response (connect, reset, abort)
  | 'stalled' // the source sent nothing for idleTimeoutMs
  | 'body' // the body failed part way
  | 'truncated' // the connection closed before the body's end
  | 'short' // (resumable) the body ended before the size first announced
  | 'changed' // (resumable) the ETag changed between connections
  | 'resume' // (resumable) no reconnection got the body going again
  | 'replicas' // (resumable, several URLs) every replica failed before its body

export interface HttpErrorDetail {
  /** status, redirects: the status received and the one that was wanted. */
  status?: number
  expected?: number
  /** body, truncated, short, resume: bytes delivered before it broke; content-range: the start asked for. */
  bytes?: number
  /** short: the size first announced. */
  size?: number
  /** network, body: the underlying error's message; bad-redirect: the Location; content-range: the header (if any). */
  reason?: string
  idleTimeoutMs?: number
  /** changed: the first ETag and the new one. */
  etags?: readonly [string, string]
  /** resume: the failure that was being resumed from (its `cause` is the last reconnection's). */
  interrupted?: HttpClientError
  /** replicas: each replica's failure, in the order tried; resume: the last failure of each replica asked to resume. */
  failures?: readonly HttpClientError[]
}

export class HttpClientError extends Error {
  override name = 'HttpClientError'
  constructor(readonly kind: HttpErrorKind, message: string, readonly url: string, readonly detail: HttpErrorDetail = {}, options?: ErrorOptions) {
    super(message, options)
  }
}

export interface GetOptions {
  /** A source silent this long fails: while connecting, before the headers, and while the reader waits for body bytes. */
  idleTimeoutMs: number
  signal?: AbortSignal | undefined
  /** Redirects (301, 302, 303, 307, 308) followed; default 5. */
  maxRedirects?: number | undefined
  /** Ask for the body from this byte on (a 206 with a matching Content-Range is then required). */
  rangeStart?: number | undefined
  /** With rangeStart: `If-Range` (a strong ETag): a server whose body is no longer that one answers 200, refused as 'changed'. */
  ifRange?: string | undefined
  /** Which hosts may be connected to (address-policy.ts), checked on every hop. Unset: any. */
  policy?: SourcePolicy | undefined
  headers?: http.OutgoingHttpHeaders | undefined
  /** Turns this client's errors into the caller's, wherever they surface (the open or the body). */
  mapError?: ((e: HttpClientError) => Error) | undefined
}

export interface HttpResponse {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  /** The bytes as sent (no decoding), read once; iterating drives the download, stopping early ends it. */
  readonly body: AsyncIterable<Buffer>
  /** Of the whole body (for a 206 from Content-Range), when given. */
  readonly size: number | undefined
  readonly etag: string | undefined
  readonly acceptRanges: boolean
  /** Give up on the body (one never iterated would hold its connection until the idle timeout). */
  abandon(): void
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

/** A kept-alive connection the server closed just as it was reused: nothing came back, so asking again is safe. */
class StaleSocket extends Error {}

const mapped = (o: GetOptions) => (e: unknown): unknown => (e instanceof HttpClientError && o.mapError ? o.mapError(e) : e)

/** GET `url`, following redirects; resolves once the wanted status (200, or 206 for a range) has arrived. */
export async function httpGet(url: string | URL, o: GetOptions): Promise<HttpResponse> {
  const fail = mapped(o)
  const { res, url: at, ...head } = await open(url, o).catch((e: unknown) => { throw fail(e) })
  return { ...head, body: chunksOf(res, at, o.idleTimeoutMs, fail) }
}

interface Opened extends Omit<HttpResponse, 'body'> {
  readonly res: http.IncomingMessage
  /** The last hop's URL. */
  readonly url: string
}

async function open(first: string | URL, o: GetOptions): Promise<Opened> {
  let u = new URL(first)
  let redirects = o.maxRedirects ?? 5
  let staleRetried = false
  for (;;) {
    const url = u.toString()
    let req: http.ClientRequest, res: http.IncomingMessage
    try {
      ({ req, res } = await request(u, o))
    } catch (e) {
      if (e instanceof StaleSocket && !staleRetried) { staleRetried = true; continue }
      throw e instanceof StaleSocket ? e.cause : e
    }
    const status = res.statusCode ?? 0
    const location = res.headers.location
    if (REDIRECTS.has(status) && location !== undefined) {
      res.resume()
      if (redirects-- <= 0) throw new HttpClientError('redirects', `${url}: more than ${o.maxRedirects ?? 5} redirects`, url, { status, expected: o.rangeStart ? 206 : 200 })
      // A Location that is not a URL fails this fetch, not the process.
      try { u = new URL(location, u) } catch {
        throw new HttpClientError('bad-redirect', `${url}: redirect to an invalid URL ${JSON.stringify(location)}`, url, { reason: location })
      }
      continue
    }
    const want = o.rangeStart ? 206 : 200
    if (want === 206 && status === 200 && o.ifRange !== undefined && res.headers.etag !== o.ifRange) {
      res.resume()
      const now = String(res.headers.etag ?? '(none)')
      throw new HttpClientError('changed', `${url}: serves another body under this name (ETag ${o.ifRange} → ${now}); not spliced in`, url, { etags: [o.ifRange, now] })
    }
    if (status !== want) {
      res.resume()
      throw new HttpClientError('status', `${url}: expected HTTP ${want}, received ${status}`, url, { status, expected: want })
    }
    let size = Number(res.headers['content-length'])
    if (o.rangeStart) {
      const range = res.headers['content-range']
      const m = /^bytes (\d+)-\d+\/(\d+)$/.exec(String(range ?? ''))
      if (!m || Number(m[1]) !== o.rangeStart) {
        res.resume()
        throw new HttpClientError('content-range', `${url}: bad Content-Range ${JSON.stringify(range)} for bytes ${o.rangeStart}-`, url, { bytes: o.rangeStart, ...(range === undefined ? {} : { reason: range }) })
      }
      size = Number(m[2])
    }
    // From here the body's reader times the source, and only while it waits for bytes: a reader
    // that is slow on purpose (backpressure) is not the source stalling.
    req.setTimeout(0)
    const etag = res.headers.etag
    return {
      res, url, status, headers: res.headers,
      size: Number.isSafeInteger(size) ? size : undefined,
      etag: typeof etag === 'string' ? etag : undefined,
      acceptRanges: res.headers['accept-ranges'] === 'bytes',
      // Also a body that arrived whole but was never read: its socket is freed, not left until the server hangs up.
      abandon: () => { if (!res.readableEnded) res.destroy() },
    }
  }
}

/** One request to one hop; resolves with its response head. */
function request(u: URL, o: GetOptions): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const url = u.toString()
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(new HttpClientError('scheme', `${url}: not an http(s) URL`, url))
      return
    }
    let lookup: ReturnType<typeof guardedLookup> | undefined
    if (o.policy) {
      const v = checkUrl(u, o.policy)
      if (v.kind === 'denied') {
        reject(new HttpClientError('denied', `source ${u.protocol}//${u.host}: ${v.reason}; not fetched (allow it with --allow-source-hosts)`, url))
        return
      }
      // A name: its addresses are checked as the socket connects, so what is checked is what is used.
      if (v.kind === 'resolve') lookup = guardedLookup(o.policy)
    }
    const headers = { ...o.headers, ...(o.rangeStart ? { Range: `bytes=${o.rangeStart}-`, ...(o.ifRange ? { 'If-Range': o.ifRange } : {}) } : {}) }
    let response: http.IncomingMessage | undefined
    const req = (u.protocol === 'https:' ? https : http).get(u, {
      ...(o.signal ? { signal: o.signal } : {}), ...(lookup ? { lookup } : {}), timeout: o.idleTimeoutMs, headers,
    }, (res) => {
      response = res
      resolve({ req, res })
    })
    req.on('timeout', () => {
      const e = new HttpClientError('stalled', `${url}: nothing received for ${o.idleTimeoutMs} ms`, url, { idleTimeoutMs: o.idleTimeoutMs })
      response?.destroy(e)
      req.destroy(e)
    })
    // Stays attached: an error after the response must not go unhandled.
    req.on('error', (e) => {
      if (!response && req.reusedSocket && (e as NodeJS.ErrnoException).code === 'ECONNRESET') {
        reject(new StaleSocket('stale keep-alive connection', { cause: network(url, e) }))
      } else if (e instanceof HttpClientError) reject(e)
      else if (e instanceof SourceDeniedError) reject(new HttpClientError('denied', e.message, url))
      else reject(network(url, e))
    })
  })
}

const network = (url: string, e: Error) => new HttpClientError('network', `${url}: ${e.message}`, url, { reason: e.message }, { cause: e })

/**
 * The response body's chunks, its failures as HttpClientErrors that say how
 * far it got, and a connection closed before the end a failure rather than a
 * short but "complete" body. A generator, not another stream stage: under
 * emulation every stage a chunk passes through costs.
 */
async function* chunksOf(res: http.IncomingMessage, url: string, idleTimeoutMs: number, fail: (e: unknown) => unknown): AsyncGenerator<Buffer> {
  let bytes = 0
  const chunks = res[Symbol.asyncIterator]()
  // One timer re-armed per wait (not one made per chunk); it counts only while the reader waits.
  let waiting = false
  const stalled = setTimeout(() => {
    if (waiting) res.destroy(new HttpClientError('stalled', `${url}: nothing received for ${idleTimeoutMs} ms`, url, { idleTimeoutMs, bytes }))
  }, idleTimeoutMs)
  // A server that dies mid-body (a replica killed) closes the connection; the bytes that had arrived
  // but were not read yet sit in the response's buffer, which the close destroys. They are taken
  // out as the socket ends, and delivered before the failure: a resume must not fetch them again.
  const salvaged: Buffer[] = []
  const socket = res.socket
  const salvage = () => {
    if (res.complete || res.destroyed) return
    for (let c = res.read() as Buffer | null; c !== null; c = res.read() as Buffer | null) salvaged.push(c)
  }
  socket?.on('end', salvage)
  socket?.on('error', salvage)
  try {
    for (;;) {
      let r: IteratorResult<Buffer>
      waiting = true
      stalled.refresh()
      try { r = await chunks.next() } finally { waiting = false }
      if (r.done) break
      bytes += r.value.length
      yield r.value
    }
  } catch (e) {
    for (const c of salvaged.splice(0)) { bytes += c.length; yield c }
    const reason = (e as Error).message
    throw fail(e instanceof HttpClientError ? e : new HttpClientError('body', `${url}: ${reason} after ${bytes} bytes`, url, { reason, bytes }, { cause: e }))
  } finally {
    clearTimeout(stalled)
    socket?.off('end', salvage)
    socket?.off('error', salvage)
    await chunks.return?.() // a reader that stops early ends the connection
  }
  for (const c of salvaged.splice(0)) { bytes += c.length; yield c }
  if (!res.complete) throw fail(new HttpClientError('truncated', `${url}: connection closed early after ${bytes} bytes`, url, { bytes }))
}

export interface ResumableOptions extends GetOptions {
  /** Reconnections allowed over the whole body, all replicas together (default 5, at least one per other replica). */
  maxResumes?: number | undefined
  /** The wait before the n-th reconnection to a replica that already failed is n times this (default 200 ms, at most 5 s). */
  backoffMs?: number | undefined
  /**
   * Response headers that name the body's content (e.g. a digest): a
   * reconnection that answers with another value is a different body. Their
   * presence also lets a body resume on another replica when there is no
   * strong ETag.
   */
  identityHeaders?: readonly string[] | undefined
}

export interface ResumableResponse extends HttpResponse {
  /** How often a dropped connection was picked up again with a Range request. */
  resumes(): number
  /** Bytes delivered so far (each byte once, however many connections). */
  delivered(): number
  /** The URL whose bytes are being read now (a replica's, after a failover). */
  servedBy(): string
}

/** A failure of that server rather than of the request: another replica may answer it. */
export function replicaFault(e: unknown): e is HttpClientError {
  if (!(e instanceof HttpClientError)) return false
  if (e.kind === 'status') return (e.detail.status ?? 0) >= 500
  return e.kind === 'network' || e.kind === 'stalled' || e.kind === 'body' || e.kind === 'truncated'
}

/**
 * A GET whose body survives dropped connections: when the body fails part
 * way, it is asked for again from the first missing byte (Range, a new hop
 * through the same checks), and the bytes continue as one stream. Nothing
 * delivered is fetched again, nothing is spooled.
 *
 * `urls` may list replicas serving the same body under the same path: the
 * first answers unless it fails as a server does (replicaFault), then the
 * next; a body that breaks resumes on the next replica after the one that
 * broke, round and round within maxResumes. A resume carries `If-Range` with
 * the first answer's strong ETag, so a replica holding other bytes answers
 * 200 instead of 206 and is refused; ETag, size and identityHeaders are
 * compared as well. Without a strong ETag or an identity header the body
 * cannot be proven the same elsewhere: it resumes only where it started.
 */
export async function httpGetResumable(urls: string | URL | ReadonlyArray<string | URL>, o: ResumableOptions): Promise<ResumableResponse> {
  const fail = mapped(o)
  const list = (typeof urls === 'string' || urls instanceof URL ? [urls] : [...urls]).map((u) => new URL(u).toString())
  if (list.length === 0) throw new TypeError('httpGetResumable: no URL')
  const { opened: first, index } = await openAny(list, o).catch((e: unknown) => { throw fail(e) })
  const at = list[index]!
  const maxResumes = Math.max(o.maxResumes ?? 5, list.length - 1)
  const strongEtag = first.etag !== undefined && !first.etag.startsWith('W/') ? first.etag : undefined
  const identity = (o.identityHeaders ?? []).filter((h) => typeof first.headers[h.toLowerCase()] === 'string').map((h) => h.toLowerCase())
  const acrossReplicas = list.length > 1 && (strongEtag !== undefined || identity.length > 0)
  let offset = 0
  let resumes = 0
  let cur = first
  let serving = index
  /** Refuses a reconnection that answers for another body than the first. */
  const sameBody = (r: Opened): HttpClientError | undefined => {
    const was = (h: string) => String(first.headers[h] ?? '')
    const now = (h: string) => String(r.headers[h] ?? '')
    const changed = [
      ...(first.etag && r.etag && r.etag !== first.etag ? [['ETag', first.etag, r.etag]] : []),
      ...(r.size !== first.size ? [['size', String(first.size), String(r.size)]] : []),
      ...identity.filter((h) => now(h) !== was(h)).map((h) => [h, was(h), now(h) || '(none)']),
    ]
    if (changed.length === 0) return undefined
    const [what, a, b] = changed[0]!
    return new HttpClientError('changed', `${r.url}: the body changed while it was being fetched (${what} ${a} → ${b})`, r.url, what === 'ETag' ? { etags: [a!, b!] } : { reason: `${what} ${a} → ${b}` })
  }
  async function* bytes(): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        try {
          for await (const c of chunksOf(cur.res, cur.url, o.idleTimeoutMs, (e) => e)) { offset += c.length; yield c }
          if (first.size !== undefined && offset < first.size) throw new HttpClientError('short', `${list[serving]}: body ended after ${offset} of ${first.size} bytes`, list[serving]!, { bytes: offset, size: first.size })
          return
        } catch (e) {
          const resumable = e instanceof HttpClientError && !o.signal?.aborted && first.size !== undefined && resumes < maxResumes
          if (!resumable) throw e
          // The last failure of each replica tried, for the message when none resumes.
          const failures = new Map<string, unknown>()
          let reopened: Opened | undefined
          let last: unknown
          // A failed attempt to resume is one more try, not the end of the fetch.
          for (let k = 1; !reopened && resumes < maxResumes && !o.signal?.aborted; k++) {
            resumes++
            const next = acrossReplicas ? (serving + k) % list.length : serving
            // Another replica is asked at once; one that already failed gets time to recover.
            if (!acrossReplicas || k >= list.length) await new Promise((r) => setTimeout(r, Math.min((o.backoffMs ?? 200) * resumes, 5000)))
            try {
              const r = await open(list[next]!, { ...o, rangeStart: offset, ifRange: strongEtag })
              const other = sameBody(r)
              if (other) { r.abandon(); throw other }
              reopened = r
              serving = next
            } catch (again) {
              last = again
              failures.set(list[next]!, again)
              // A replica serving other bytes under this name is refused, never spliced in; alone, it ends the fetch.
              if (!acrossReplicas && again instanceof HttpClientError && again.kind === 'changed') throw again
            }
          }
          if (!reopened) {
            const why = [...failures.values()].map((f) => (f as Error).message).join('; ') || 'aborted'
            throw new HttpClientError('resume', `${e.message}; resuming at byte ${offset} failed: ${why}`, at, { bytes: offset, interrupted: e, failures: [...failures.values()].filter((f): f is HttpClientError => f instanceof HttpClientError) }, { cause: last })
          }
          cur = reopened
        }
      }
    } catch (e) {
      throw fail(e)
    }
  }
  const { res: _res, url: _url, ...head } = first
  return { ...head, body: bytes(), abandon: () => cur.abandon(), resumes: () => resumes, delivered: () => offset, servedBy: () => list[serving]! }
}

/** The first replica that answers; past one that fails as a server does, the next. */
async function openAny(list: readonly string[], o: GetOptions): Promise<{ opened: Opened; index: number }> {
  const failures: HttpClientError[] = []
  for (let i = 0; i < list.length; i++) {
    try {
      return { opened: await open(list[i]!, o), index: i }
    } catch (e) {
      // One URL fails as it always did; a request the replica refused (4xx, policy) is every replica's answer.
      if (list.length === 1 || !replicaFault(e) || o.signal?.aborted) throw e
      failures.push(e)
    }
  }
  throw new HttpClientError('replicas', `every replica failed: ${failures.map((f) => f.message).join('; ')}`, list[0]!, { failures })
}
