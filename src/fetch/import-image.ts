/**
 * One image import: source body → (gunzip) → sha256 → `zfs receive` into a
 * temporary dataset → verify → `zfs rename` into place. The rename is the
 * commit point: a crash before it leaves only an `_incoming-` dataset, which
 * start-up removes; nothing half-received ever carries the image's name.
 */
import { createHash } from 'node:crypto'
import { PassThrough, Readable, Transform, pipeline } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { UpstreamError } from '../errors.js'
import { DatasetBusyError, DatasetNotFoundError, type Zfs } from '../zfs/index.js'

export const INCOMING_PREFIX = '_incoming-'

/**
 * User properties set on a verified import just before the rename. A dataset
 * that carries them was verified by us: start-up adopts it even if the crash
 * came before its record was written.
 */
export const PROP_IMAGE = 'mistify:image'
export const PROP_SHA256 = 'mistify:sha256'

export interface Imported {
  readonly volume: string
  readonly snapshot: string
  readonly volsize: number
  readonly sha256: string
  readonly bytes: number
}

/**
 * The body, gunzipped when its first bytes are the gzip magic. Peeks through
 * the async iterator rather than unshift(): a short body may have ended by
 * the time we would push the bytes back.
 */
async function maybeGunzip(body: Readable): Promise<Readable> {
  const it = body[Symbol.asyncIterator]()
  const first = await it.next()
  if (first.done) throw new UpstreamError('image source sent an empty body')
  const head = first.value as Buffer
  const rest = Readable.from((async function* () {
    yield head
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value as Buffer
  })(), { objectMode: false })
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b ? rest.pipe(createGunzipErrorsForwarded(rest)) : rest
}

/** A gunzip whose input's errors reach its output (pipe() alone would drop them). */
function createGunzipErrorsForwarded(src: Readable) {
  const gz = createGunzip()
  src.once('error', (e) => gz.destroy(e))
  return gz
}

export async function importImage(o: {
  zfs: Zfs
  imagesRoot: string
  id: string
  body: Readable
  signal?: AbortSignal
  /** sha256 of the bytes as served (before any gunzip), when known. */
  expectedSha256?: string | undefined
  /** Length of the body as served, when known. */
  expectedBytes?: number | undefined
}): Promise<Imported> {
  const { zfs } = o
  const temp = `${o.imagesRoot}/${INCOMING_PREFIX}${o.id}`
  const final = `${o.imagesRoot}/${o.id}`
  const x = o.signal ? { signal: o.signal } : {}
  // A leftover from a crashed attempt must not block this one (the original's bug 9).
  if (await zfs.findDataset(temp)) await zfs.destroy(temp, { recursive: true })
  const hash = createHash('sha256')
  let bytes = 0
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) { hash.update(chunk); bytes += chunk.length; cb(null, chunk) },
  })
  try {
    // Hash and count the bytes as served: that is what the image service's checksum covers.
    const served = pipeline(o.body, tap, new PassThrough(), () => {})
    const stream = await maybeGunzip(served)
    // One pipeline so a source failure destroys everything down to zfs's stdin.
    const feed = pipeline(stream, new PassThrough(), () => {})
    await zfs.receive(temp, feed, { noMount: true }, x)
    const sha256 = hash.digest('hex')
    if (o.expectedBytes !== undefined && o.expectedBytes !== bytes) {
      throw new UpstreamError(`image ${o.id}: expected ${o.expectedBytes} bytes, got ${bytes}`)
    }
    if (o.expectedSha256 && o.expectedSha256 !== sha256) {
      throw new UpstreamError(`image ${o.id}: checksum mismatch (expected sha256 ${o.expectedSha256}, got ${sha256})`)
    }
    const dataset = await zfs.getDataset(temp, x)
    if (dataset.type !== 'volume') throw new UpstreamError(`image ${o.id}: the stream holds a ${dataset.type}, not a volume`)
    const snaps = await zfs.listDatasets({ types: ['snapshot'], roots: [temp], depth: 1 }, x)
    if (snaps.length !== 1) throw new UpstreamError(`image ${o.id}: the stream must hold exactly one snapshot, it held ${snaps.length}`)
    const snapName = snaps[0]!.name.slice(temp.length + 1)
    await zfs.setProps(temp, { [PROP_IMAGE]: o.id, [PROP_SHA256]: sha256 }, x)
    await zfs.rename(temp, final, {}, x) // the commit point
    return { volume: final, snapshot: `${final}@${snapName}`, volsize: dataset.volsize ?? 0, sha256, bytes }
  } catch (e) {
    await destroyTemporary(zfs, temp)
    throw e
  }
}

/**
 * Destroy a failed import's temporary. A zvol that was just received may
 * still be open (udev probes new /dev/zd* devices): 'busy' is retried.
 * What still fails is left to start-up's reconcile, which removes it.
 */
async function destroyTemporary(zfs: Zfs, temp: string): Promise<void> {
  for (let attempt = 1; attempt <= 6; attempt++) {
    try {
      await zfs.destroy(temp, { recursive: true })
      return
    } catch (e) {
      if (e instanceof DatasetNotFoundError) return
      if (!(e instanceof DatasetBusyError) || attempt === 6) return
      await new Promise((r) => setTimeout(r, 250 * attempt))
    }
  }
}
