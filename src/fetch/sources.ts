/**
 * Where an image's bytes come from: the image service (by id, the original's
 * only way), an http(s) URL, or a local file:// path.
 */
import { createReadStream } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { InvalidParamsError, UpstreamError } from '../errors.js'
import { openResumableSource, type Source } from './http-source.js'

export interface OpenedSource extends Source {
  /** Bytes delivered so far (for progress). */
  delivered(): number
}

/**
 * The URL to fetch for a RequestImage: `source` when given, else the image
 * service's download URL. A file:// source must lie in `fileSources`.
 */
export function sourceUrl(imageServer: string, id: string, source: string, fileSources?: string): URL {
  if (!source) return new URL(`${imageServer}/images/${encodeURIComponent(id)}/download`)
  let u: URL
  try { u = new URL(source) } catch { throw new InvalidParamsError(`source: not a URL: ${JSON.stringify(source)}`) }
  if (!['http:', 'https:', 'file:'].includes(u.protocol)) throw new InvalidParamsError(`source: only http(s):// and file:// URLs, got ${u.protocol}`)
  if (u.protocol === 'file:') {
    if (u.host !== '' && u.host !== 'localhost') throw new InvalidParamsError('source: a file:// URL names a local path')
    if (fileSources === undefined) throw new InvalidParamsError('source: file:// sources are disabled (start the agent with --file-sources DIR)')
    if (!within(fileSources, fileURLToPath(u))) throw new InvalidParamsError(`source: ${u} is outside ${fileSources}, the file-sources directory`)
  }
  return u
}

/** Whether `path` (already normalised) lies below directory `dir`. */
function within(dir: string, path: string): boolean {
  const d = resolve(dir)
  return resolve(path).startsWith(d === '/' ? '/' : `${d}/`)
}

export async function openImageSource(u: URL, o: { signal: AbortSignal; idleTimeoutMs: number; fileSources?: string | undefined }): Promise<OpenedSource> {
  if (u.protocol !== 'file:') return openResumableSource(u.toString(), o)
  // Symlinks resolved: a link inside the directory must not lead out of it.
  const path = await realpath(fileURLToPath(u)).catch((e: Error) => { throw new UpstreamError(`source ${u}: ${e.message}`) })
  const dir = await realpath(o.fileSources ?? '/nonexistent').catch(() => undefined)
  if (dir === undefined || !within(dir, path)) throw new InvalidParamsError(`source: ${u} leads outside the file-sources directory`)
  const st = await stat(path).catch((e: Error) => { throw new UpstreamError(`source ${u}: ${e.message}`) })
  if (!st.isFile()) throw new UpstreamError(`source ${u}: not a regular file`)
  let bytes = 0
  async function* body(): AsyncGenerator<Buffer> {
    for await (const c of createReadStream(path, { signal: o.signal, highWaterMark: 1 << 20 })) { bytes += (c as Buffer).length; yield c as Buffer }
  }
  // The file is opened only when the body is read: nothing to abandon before that.
  return { body: body(), size: st.size, sha256: undefined, etag: undefined, acceptRanges: false, abandon: () => {}, delivered: () => bytes }
}
