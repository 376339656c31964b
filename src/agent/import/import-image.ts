/**
 * One image import: source body → digest → (gunzip) → by payload format:
 *   zfs send stream → `zfs receive` into a temporary dataset;
 *   raw disk image  → written into a new temporary zvol, then snapshotted;
 *   qcow2           → spooled into a scratch zvol, converted by qemu-img into
 *                     a new temporary zvol, then snapshotted;
 * → verify → `zfs rename` into place. The rename is the commit point: a crash
 * before it leaves only `_incoming-`/`_spool-` datasets, which start-up
 * removes; nothing half-written ever carries the image's name.
 */
import { createHash } from 'node:crypto'
import { pipeline, Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { AgentError, UpstreamError } from '../errors.js'
import { DatasetBusyError, DatasetNotFoundError, ZfsError, type Zfs, zvolPath } from '../../zfs/index.js'
import { assertIncrementFrom, assertPlainStream, decideFormat, isGzip, SNIFF_BYTES, zfsStreamHeader, type PayloadFormat } from './payload.js'
import { waitForDevice, writeToDevice } from './device-write.js'
import { qcow2Check, qcow2Info, qcow2ToDevice } from './qemu-img.js'
import type { ExpectedDigest } from './digest.js'
import { INCOMING_PREFIX, PROP_FORMAT, PROP_IMAGE, PROP_SHA256, SPOOL_PREFIX } from '../catalog.js'

/** The snapshot a raw or qcow2 image gets (a zfs stream brings its own). */
export const DISK_IMAGE_SNAPSHOT = 'image'

/**
 * Properties a received stream may not set on the agent's pool; the image
 * inherits them from `images/` instead. Space: reservations take pool space
 * from the guests, copies multiplies it, dedup costs the whole pool memory.
 * Exposure and integrity: volmode/snapdev decide which devices appear,
 * checksum=off or sync=disabled weaken every clone. Our own markers: a
 * stream that brought `mistify:image` would be adopted as verified after a
 * crash. Plain full streams and increments (the only kinds accepted) carry no properties;
 * this holds even if that check were ever loosened.
 */
export const RECEIVE_EXCLUDED_PROPERTIES = [
  'refreservation', 'reservation', 'volmode', 'snapdev', 'copies', 'dedup', 'checksum', 'compression', 'sync',
  PROP_IMAGE, PROP_SHA256, PROP_FORMAT,
] as const
/** Output piece of the gunzip (zlib's default is 16 KiB): fewer, larger chunks downstream. */
const GUNZIP_CHUNK = 256 * 1024
/** Bytes fetched and hashed ahead of what `zfs receive` has taken. */
const RECEIVE_READ_AHEAD = 2 << 20
/** Multiple of every volblocksize a zvol gets by default: a valid volsize whatever the pool's default. */
const VOLSIZE_STEP = 128 * 1024

export interface Imported {
  readonly volume: string
  readonly snapshot: string
  readonly volsize: number
  /** Computed, or (checked by BLAKE2b) the one published beside it; undefined when neither. */
  readonly sha256: string | undefined
  readonly bytes: number
  readonly format: PayloadFormat
}

/** The first `n` bytes of `src` (fewer if it is shorter) and all of its bytes again, as one iterable. */
async function peek(src: AsyncIterable<Buffer>, n: number): Promise<{ head: Buffer; all: AsyncIterable<Buffer> }> {
  const it = src[Symbol.asyncIterator]()
  const seen: Buffer[] = []
  let have = 0
  let ended = false
  while (have < n) {
    const r = await it.next()
    if (r.done) { ended = true; break }
    seen.push(r.value)
    have += r.value.length
  }
  async function* all(): AsyncGenerator<Buffer> {
    try {
      yield* seen
      if (ended) return
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value
    } finally {
      await it.return?.() // a consumer that stops early ends the source too
    }
  }
  return { head: Buffer.concat(seen), all: all() }
}

export async function importImage(o: {
  zfs: Zfs
  imagesRoot: string
  id: string
  body: AsyncIterable<Buffer>
  signal?: AbortSignal | undefined
  /** Digest of the bytes as served (before any gunzip), when known; without it their sha256 is computed. */
  expected?: ExpectedDigest | undefined
  /** Length of the body as served, when known. */
  expectedBytes?: number | undefined
  /** What the caller says the bytes are; otherwise told by their first bytes. */
  format?: PayloadFormat | undefined
  /** Most decoded bytes (after gunzip) and largest qcow2 virtual size accepted. */
  maxBytes: number
  /** The body is an increment from this image snapshot of ours: received as its clone. */
  origin?: string | undefined
  /** The guid the stream's snapshot must carry, when the image service published one. */
  snapshotGuid?: string | undefined
}): Promise<Imported> {
  const { zfs, id } = o
  const temp = `${o.imagesRoot}/${INCOMING_PREFIX}${id}`
  const spool = `${o.imagesRoot}/${SPOOL_PREFIX}${id}`
  const final = `${o.imagesRoot}/${id}`
  const x = o.signal ? { signal: o.signal } : {}
  // A leftover from a crashed attempt must not block this one (the original's bug 9).
  await removeLeftover(zfs, temp)

  // Hash and count the bytes as served: that is what the image service's digest covers.
  const algorithm = o.expected?.algorithm ?? 'sha256'
  const hash = createHash(algorithm)
  let bytes = 0
  const checkServed = (): string | undefined => {
    const got = hash.digest('hex')
    if (o.expectedBytes !== undefined && o.expectedBytes !== bytes) {
      throw new UpstreamError(`image ${id}: expected ${o.expectedBytes} bytes, got ${bytes}`)
    }
    if (o.expected && o.expected.hex !== got) {
      throw new UpstreamError(`image ${id}: checksum mismatch (expected ${algorithm} ${o.expected.hex}, got ${got})`)
    }
    return algorithm === 'sha256' ? got : o.expected?.sha256
  }

  try {
    // The first bytes tell gzip, and (not gzipped) the format; they are not consumed.
    const body = await peek(o.body, SNIFF_BYTES)
    if (body.head.length === 0) throw new UpstreamError('image source sent an empty body')
    const gzip = isGzip(body.head)
    // One pass over the bytes as served, the only stage a plain body takes: counted, hashed,
    // and (not gzipped: these are the decoded bytes) held to maxBytes.
    const max = gzip ? Infinity : o.maxBytes
    async function* served(): AsyncGenerator<Buffer> {
      for await (const c of body.all) {
        bytes += c.length
        if (bytes > max) throw new UpstreamError(`image ${id}: larger than ${max} bytes decoded (maxImageBytes)`)
        hash.update(c)
        yield c
      }
    }
    // pipeline() so a source failure destroys the gunzip, and a gunzip failure ends the source.
    const payload = gzip
      ? await peek(limited(pipeline(served(), createGunzip({ chunkSize: GUNZIP_CHUNK }), () => {}), o.maxBytes, id), SNIFF_BYTES)
      : { head: body.head, all: served() }
    const format = decideFormat(id, payload.head, o.format)
    let snapName = DISK_IMAGE_SNAPSHOT
    let volsize: number
    const scratchBytes = roundUp(o.maxBytes, VOLSIZE_STEP)
    if (o.origin !== undefined && format !== 'zfs') throw new UpstreamError(`image ${id}: an increment must be a zfs send stream, got ${format}`)
    if (format === 'zfs') {
      const h = zfsStreamHeader(payload.head)
      if (o.origin === undefined) assertPlainStream(id, h)
      else assertIncrementFrom(id, h, { snapshot: o.origin, guid: BigInt((await zfs.getDataset(o.origin, x)).guid) })
      if (o.snapshotGuid && h.toguid !== BigInt(o.snapshotGuid)) {
        throw new UpstreamError(`image ${id}: the stream's snapshot has guid ${h.toguid}, the image service published ${o.snapshotGuid}`)
      }
      // Read-ahead: while zfs drains the pipe, the next bytes are fetched and hashed (one thread does both).
      const feed = Readable.from(payload.all, { objectMode: false, highWaterMark: RECEIVE_READ_AHEAD })
      const asClone = o.origin === undefined ? {} : { props: { origin: o.origin } }
      await zfs.receive(temp, feed, { noMount: true, exclude: RECEIVE_EXCLUDED_PROPERTIES, ...asClone }, x).catch((e: unknown) => {
        // Both are the image's fault, and must say so rather than 'internal error': zfs refusing the stream
        // (unknown feature flags, say), and zfs done with a whole stream while the body goes on (the pipe closed under it).
        if (e instanceof ZfsError && e.kind === 'other') throw new UpstreamError(`image ${id}: zfs receive refused the stream: ${e.message}`, { cause: e })
        if (!(e instanceof AgentError) && !(e instanceof ZfsError)) throw new UpstreamError(`image ${id}: zfs receive ended before the body did (${(e as Error).message})`, { cause: e })
        throw e
      })
      ;({ snapName, volsize } = await onlySnapshot(zfs, id, temp, o.origin, x))
    } else {
      await createScratchVolume(zfs, temp, scratchBytes, x)
      if (format === 'raw') {
        const n = await writeToDevice(zvolPath(temp), payload.all, { limit: scratchBytes, what: `image ${id}`, signal: o.signal })
        if (n === 0) throw new UpstreamError(`image ${id}: the disk image is empty`)
        volsize = roundUp(n, VOLSIZE_STEP)
        await zfs.setProps(temp, { volsize: String(volsize) }, x)
      } else {
        await removeLeftover(zfs, spool) // only qcow2 uses a spool: only it pays for the check
        await createScratchVolume(zfs, spool, scratchBytes, x)
        const n = await writeToDevice(zvolPath(spool), payload.all, { limit: scratchBytes, what: `image ${id}`, signal: o.signal })
        // Shrunk to the bytes received, so qemu-img sees a truncated image end where it ends, not zeros to the limit.
        await zfs.setProps(spool, { volsize: String(roundUp(n, VOLSIZE_STEP)) }, x)
        const info = await qcow2Info(zvolPath(spool), { signal: o.signal })
        // A small qcow2 can expand to terabytes: its virtual size is what convert may write.
        if (info.virtualSize > o.maxBytes) throw new UpstreamError(`image ${id}: qcow2 virtual size ${info.virtualSize} bytes is over the limit of ${o.maxBytes} (maxImageBytes)`)
        const free = (await zfs.getDataset(o.imagesRoot, x)).available ?? 0
        if (info.virtualSize > free) throw new UpstreamError(`image ${id}: qcow2 virtual size ${info.virtualSize} bytes is more than the ${free} bytes ${o.imagesRoot} has available`)
        await qcow2Check(zvolPath(spool), { signal: o.signal })
        volsize = roundUp(info.virtualSize, VOLSIZE_STEP)
        await zfs.setProps(temp, { volsize: String(volsize) }, x)
        await qcow2ToDevice(zvolPath(spool), zvolPath(temp), { signal: o.signal })
        await destroyTemporary(zfs, spool)
      }
    }
    const sha256 = checkServed()
    if (format !== 'zfs') await zfs.snapshot(`${temp}@${snapName}`, {}, x)
    await zfs.setProps(temp, { [PROP_IMAGE]: id, ...(sha256 ? { [PROP_SHA256]: sha256 } : {}), [PROP_FORMAT]: format }, x)
    await zfs.rename(temp, final, {}, x) // the commit point
    return { volume: final, snapshot: `${final}@${snapName}`, volsize, sha256, bytes, format }
  } catch (e) {
    await destroyTemporary(zfs, temp)
    await destroyTemporary(zfs, spool)
    throw e
  }
}

const roundUp = (n: number, step: number) => Math.ceil(n / step) * step

/** The decoded payload, failing as soon as it grows past `max` bytes (a gzip bomb stops there too). */
async function* limited(src: AsyncIterable<Buffer>, max: number, id: string): AsyncGenerator<Buffer> {
  let n = 0
  for await (const c of src) {
    n += c.length
    if (n > max) throw new UpstreamError(`image ${id}: larger than ${max} bytes decoded (maxImageBytes)`)
    yield c
  }
}

async function removeLeftover(zfs: Zfs, name: string): Promise<void> {
  if (await zfs.findDataset(name)) await zfs.destroy(name, { recursive: true })
}

/** A sparse zvol as big as any disk image may be, its device ready to write. */
async function createScratchVolume(zfs: Zfs, name: string, bytes: number, x: { signal?: AbortSignal }): Promise<void> {
  await zfs.createVolume(name, bytes, { sparse: true }, x)
  await waitForDevice(zvolPath(name), x)
}

/** A received stream must be one volume with exactly one snapshot: its name, and the volume's size. */
async function onlySnapshot(zfs: Zfs, id: string, temp: string, origin: string | undefined, x: { signal?: AbortSignal }): Promise<{ snapName: string; volsize: number }> {
  // One listing answers both questions: what was received, and its snapshots.
  const all = await zfs.listDatasets({ types: ['filesystem', 'volume', 'snapshot'], roots: [temp], depth: 1 }, x)
  const dataset = all.find((d) => d.name === temp)
  if (!dataset) throw new UpstreamError(`image ${id}: zfs receive left no ${temp}`)
  if (dataset.type !== 'volume') throw new UpstreamError(`image ${id}: the stream holds a ${dataset.type}, not a volume`)
  // Belt and braces for the header check: an image shares blocks only with the image it was declared an increment of.
  if ((dataset.origin ?? '') !== (origin ?? '')) {
    throw new UpstreamError(`image ${id}: the received volume is ${dataset.origin ? `a clone of ${dataset.origin}` : 'no clone'}${origin ? `, not a clone of ${origin}` : ''}`)
  }
  const snaps = all.filter((d) => d.name.startsWith(`${temp}@`))
  if (snaps.length !== 1) throw new UpstreamError(`image ${id}: the stream must hold exactly one snapshot, it held ${snaps.length}`)
  return { snapName: snaps[0]!.name.slice(temp.length + 1), volsize: dataset.volsize ?? 0 }
}

/**
 * Destroy a failed import's temporary. A zvol that was just created may
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
