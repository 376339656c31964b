/**
 * Where an image's bytes come from: the image service (by id, the original's
 * only way), an http(s) URL, or a local file:// path.
 */
import { constants } from 'node:fs'
import { open, readlink, realpath, type FileHandle } from 'node:fs/promises'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { InvalidParamsError, UpstreamError } from '../errors.js'
import { openResumableSource, openSource, type Source } from './http-source.js'
import { checkUrl, type SourcePolicy } from '../../common/address-policy.js'
import { imageServers } from '../config.js'

export interface OpenedSource extends Source {
  /** Bytes delivered so far (for progress). */
  delivered(): number
}

export interface UrlSourceRules {
  /** Hosts http(s) sources may name (address-policy.ts); checked here for literal addresses, and again as they connect. */
  policy?: SourcePolicy | undefined
  /** false: no http(s) sources at all (the operator turned them off). */
  urlSources?: boolean | undefined
}

/**
 * The URL to fetch for a RequestImage: `source` when given, else the image
 * service's download URL. A file:// source must lie in `fileSources`. An
 * http(s) source is refused here when URL sources are off or it names a
 * denied address literally; a name is checked when it is resolved.
 */
export function sourceUrl(imageServer: string, id: string, source: string, fileSources?: string, rules: UrlSourceRules = {}): URL {
  if (!source) return downloadUrl(imageServers(imageServer)[0]!, id)
  let u: URL
  try { u = new URL(source) } catch { throw new InvalidParamsError(`source: not a URL: ${JSON.stringify(source)}`) }
  if (!['http:', 'https:', 'file:'].includes(u.protocol)) throw new InvalidParamsError(`source: only http(s):// and file:// URLs, got ${u.protocol}`)
  if (u.protocol !== 'file:') {
    if (rules.urlSources === false) throw new InvalidParamsError('source: http(s) sources are disabled on this agent (--url-sources off); request the image by id from the image service')
    const v = rules.policy ? checkUrl(u, rules.policy) : undefined
    if (v?.kind === 'denied') throw new InvalidParamsError(`source: ${v.reason}; not fetched (allow it with --allow-source-hosts)`)
  }
  if (u.protocol === 'file:') {
    if (u.host !== '' && u.host !== 'localhost') throw new InvalidParamsError('source: a file:// URL names a local path')
    if (fileSources === undefined) throw new InvalidParamsError('source: file:// sources are disabled (start the agent with --file-sources DIR)')
    if (!within(fileSources, fileURLToPath(u))) throw new InvalidParamsError(`source: ${u} is outside ${fileSources}, the file-sources directory`)
  }
  return u
}

/** What of an image the image service serves: its full stream, its record (JSON), or its increment from its origin. */
export type ServiceResource = 'download' | 'record' | 'increment'

const downloadUrl = (server: string, id: string, what: ServiceResource = 'download') =>
  new URL(`${server}/images/${encodeURIComponent(id)}${what === 'record' ? '' : `/${what}`}`)

/**
 * The image's URL (its download by default) on every replica of the image
 * service, starting with replica `start` (modulo their number) and going
 * round: the order a fetch tries them in.
 */
export function replicaUrls(imageServer: string, id: string, start: number, what: ServiceResource = 'download'): URL[] {
  const all = imageServers(imageServer)
  const first = ((start % all.length) + all.length) % all.length
  return [...all.slice(first), ...all.slice(0, first)].map((s) => downloadUrl(s, id, what))
}

/** Whether `path` (already normalised) lies below directory `dir`. */
function within(dir: string, path: string): boolean {
  const d = resolve(dir)
  return resolve(path).startsWith(d === '/' ? '/' : `${d}/`)
}

/** Open an image's bytes; several URLs are replicas of the image service, tried in that order. */
export async function openImageSource(where: URL | readonly URL[], o: { signal: AbortSignal; idleTimeoutMs: number; fileSources?: string | undefined; policy?: SourcePolicy | undefined }): Promise<OpenedSource> {
  const all = where instanceof URL ? [where] : where
  const u = all[0]
  if (u === undefined) throw new TypeError('openImageSource: no URL')
  if (u.protocol !== 'file:') return openResumableSource(all.map((x) => x.toString()), o)
  const dir = await realpath(o.fileSources ?? '/nonexistent').catch(() => undefined)
  if (dir === undefined) throw new InvalidParamsError(`source: ${u} leads outside the file-sources directory`)
  // Open first, then check what was opened: a path checked and then opened
  // could be switched (a symlink swapped) in between. The descriptor's real
  // path and type are checked, and the bytes are read from that descriptor.
  const fh = await openFileSource(u, dir)
  let size: number
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new UpstreamError(`source ${u}: not a regular file`)
    size = st.size
  } catch (e) {
    await fh.close().catch(() => {})
    throw e
  }
  let bytes = 0
  const stream = fh.createReadStream({ start: 0, highWaterMark: 1 << 20, autoClose: true })
  async function* body(): AsyncGenerator<Buffer> {
    for await (const c of stream) {
      o.signal.throwIfAborted()
      bytes += (c as Buffer).length
      yield c as Buffer
    }
  }
  // A body never read (or left part way) must still give the descriptor back.
  const abandon = () => { if (!stream.destroyed) stream.destroy() }
  o.signal.addEventListener('abort', abandon, { once: true })
  return { body: body(), size, published: { sha256: undefined, blake2b512: undefined }, etag: undefined, acceptRanges: false, abandon, delivered: () => bytes }
}

/**
 * Open a file:// source and prove that the file opened lies in `dir` (a real
 * path): the kernel's name for the descriptor (/proc/self/fd) is what was
 * opened, whatever a symlink on the way pointed to when it was checked.
 */
async function openFileSource(u: URL, dir: string): Promise<FileHandle> {
  const path = fileURLToPath(u)
  // A cheap early refusal that never opens anything outside; the check that counts is after the open.
  const early = await realpath(path).catch((e: Error) => { throw new UpstreamError(`source ${u}: ${e.message}`) })
  if (!within(dir, early)) throw new InvalidParamsError(`source: ${u} leads outside the file-sources directory`)
  // O_NONBLOCK: a FIFO swapped in must not hang the open (it is then refused as not a regular file).
  const fh = await open(path, constants.O_RDONLY | constants.O_NOCTTY | constants.O_NONBLOCK)
    .catch((e: Error) => { throw new UpstreamError(`source ${u}: ${e.message}`) })
  try {
    const opened = await readlink(`/proc/self/fd/${fh.fd}`)
    if (!within(dir, opened)) throw new InvalidParamsError(`source: ${u} leads outside the file-sources directory`)
    return fh
  } catch (e) {
    await fh.close().catch(() => {})
    throw e instanceof InvalidParamsError ? e : new UpstreamError(`source ${u}: cannot tell which file was opened: ${(e as Error).message}`)
  }
}

/** Largest image record read from the image service (one record is a few hundred bytes). */
const RECORD_LIMIT = 1 << 20

/**
 * The image service's record of `id` (its native API), from the first
 * replica that answers; undefined when none does: a fetch then takes the
 * full stream, whose own failure is the one reported.
 */
export async function readServiceRecord(urls: readonly URL[], o: { signal: AbortSignal; idleTimeoutMs: number; policy?: SourcePolicy | undefined }): Promise<string | undefined> {
  for (const u of urls) {
    try {
      const src = await openSource(u.toString(), o)
      const chunks: Buffer[] = []
      let n = 0
      for await (const c of src.body) {
        n += c.length
        if (n > RECORD_LIMIT) { src.abandon(); break }
        chunks.push(c)
      }
      if (n <= RECORD_LIMIT) return Buffer.concat(chunks).toString('utf8')
    } catch {
      if (o.signal.aborted) throw o.signal.reason
    }
  }
  return undefined
}
