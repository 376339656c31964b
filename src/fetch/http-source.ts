/**
 * Outbound HTTP for image bodies. Plain node:http(s) so the body arrives as
 * sent (no transparent decompression); a stalled source fails after an idle
 * timeout instead of hanging a RequestImage forever (the original had none).
 */
import http from 'node:http'
import https from 'node:https'
import { PassThrough, type Readable } from 'node:stream'
import { UpstreamError } from '../errors.js'

export interface Source {
  readonly body: Readable
  /** From Content-Length, when given. */
  readonly size: number | undefined
  /** From X-Image-Sha256, when the image service sends it. */
  readonly sha256: string | undefined
}

export function openSource(url: string, o: { signal?: AbortSignal; idleTimeoutMs: number; redirects?: number }): Promise<Source> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const get = u.protocol === 'https:' ? https.get : http.get
    let response: http.IncomingMessage | undefined
    const req = get(u, { ...(o.signal ? { signal: o.signal } : {}), timeout: o.idleTimeoutMs }, (res) => {
      response = res
      const status = res.statusCode ?? 0
      const location = res.headers.location
      if (status >= 300 && status < 400 && location && (o.redirects ?? 5) > 0) {
        res.resume()
        openSource(new URL(location, u).toString(), { ...o, redirects: (o.redirects ?? 5) - 1 }).then(resolve, reject)
        return
      }
      if (status !== 200) {
        res.resume()
        reject(new UpstreamError(`unexpected http response code: expected 200, received ${status}, url: ${url}`))
        return
      }
      // The socket's idle timeout keeps applying while the body streams.
      const len = Number(res.headers['content-length'])
      const sha = res.headers['x-image-sha256']
      resolve({ body: upstreamBody(res, url), size: Number.isSafeInteger(len) ? len : undefined, sha256: typeof sha === 'string' ? sha.toLowerCase() : undefined })
    })
    req.on('timeout', () => {
      const e = new UpstreamError(`image source stalled for ${o.idleTimeoutMs} ms: ${url}`)
      // Once the body streams, its reader must see why it stopped.
      response?.destroy(e)
      req.destroy(e)
    })
    req.on('error', (e) => reject(e instanceof UpstreamError ? e : new UpstreamError(`fetching ${url}: ${e.message}`, { cause: e })))
  })
}

/**
 * The response body, with its failures as UpstreamErrors that say how far it
 * got, and a connection closed before the end treated as a failure rather
 * than a short but "complete" body.
 */
function upstreamBody(res: http.IncomingMessage, url: string): Readable {
  const out = new PassThrough()
  let bytes = 0
  res.on('data', (c: Buffer) => { bytes += c.length })
  const fail = (why: string) => out.destroy(new UpstreamError(`image source ${url}: ${why} after ${bytes} bytes`))
  res.on('error', (e) => (e instanceof UpstreamError ? out.destroy(e) : fail(e.message)))
  res.on('close', () => { if (!res.complete && !out.destroyed) fail('connection closed early') })
  res.pipe(out)
  return out
}
