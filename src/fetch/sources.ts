/**
 * Where an image's bytes come from: the image service (by id, the original's
 * only way), an http(s) URL, or a local file:// path.
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { InvalidParamsError, UpstreamError } from '../errors.js'
import { openResumableSource, type Source } from './http-source.js'

export interface OpenedSource extends Source {
  /** Bytes delivered so far (for progress). */
  delivered(): number
}

/** The URL to fetch for a RequestImage: `source` when given, else the image service's download URL. */
export function sourceUrl(imageServer: string, id: string, source: string): URL {
  if (!source) return new URL(`${imageServer}/images/${encodeURIComponent(id)}/download`)
  let u: URL
  try { u = new URL(source) } catch { throw new InvalidParamsError(`source: not a URL: ${JSON.stringify(source)}`) }
  if (!['http:', 'https:', 'file:'].includes(u.protocol)) throw new InvalidParamsError(`source: only http(s):// and file:// URLs, got ${u.protocol}`)
  if (u.protocol === 'file:' && (u.host !== '' && u.host !== 'localhost')) throw new InvalidParamsError('source: a file:// URL names a local path')
  return u
}

export async function openImageSource(u: URL, o: { signal: AbortSignal; idleTimeoutMs: number }): Promise<OpenedSource> {
  if (u.protocol !== 'file:') return openResumableSource(u.toString(), o)
  const path = fileURLToPath(u)
  const st = await stat(path).catch((e: Error) => { throw new UpstreamError(`source ${u}: ${e.message}`) })
  if (!st.isFile()) throw new UpstreamError(`source ${u}: not a regular file`)
  let bytes = 0
  async function* body(): AsyncGenerator<Buffer> {
    for await (const c of createReadStream(path, { signal: o.signal, highWaterMark: 1 << 20 })) { bytes += (c as Buffer).length; yield c as Buffer }
  }
  // The file is opened only when the body is read: nothing to abandon before that.
  return { body: body(), size: st.size, sha256: undefined, etag: undefined, acceptRanges: false, abandon: () => {}, delivered: () => bytes }
}
