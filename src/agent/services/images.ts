/** ListImages, GetImage, RequestImage, DeleteImage, CloneImage. */
import { BusyError, ConflictError, InvalidParamsError, NotFoundError, UpstreamError } from '../errors.js'
import { openImageSource, sourceUrl } from '../import/sources.js'
import { importImage } from '../import/import-image.js'
import { parseDeclaredFormat, type PayloadFormat } from '../import/payload.js'
import { imageWire, toMiB, type WireImage, type WireVolume } from './shapes.js'
import type { ImageRecord } from '../catalog.js'
import { cloneStrict, type Deps } from './deps.js'
import { assertGuestsRoom } from './disks.js'
import { DatasetNotFoundError, zvolPath } from '../../zfs/index.js'
import { createSourcePolicy } from '../../common/address-policy.js'
import type { ImageRequest } from '../rpc/requests.js'

export type { ImageRequest }

const SHA256 = /^[0-9a-f]{64}$/

/**
 * The digest an import must match, decided before any byte is fetched or
 * any dataset made: integrity fails closed. A `source` the caller names
 * comes with the caller's sha256; the configured image service must publish
 * one (X-Image-Sha256), unless the operator accepts undigested images from
 * it. Both are checked when both are known.
 */
function expectedDigest(id: string, requested: string | undefined, published: string | undefined, fromImageService: boolean, acceptUndigested: boolean): string | undefined {
  if (requested && published && requested !== published) {
    throw new UpstreamError(`image ${id}: the source publishes sha256 ${published}, the request says ${requested}`)
  }
  const digest = requested || published
  if (digest) return digest
  if (fromImageService && acceptUndigested) return undefined
  throw new UpstreamError(fromImageService
    ? `image ${id}: the image service published no sha256 (X-Image-Sha256), and unverified images are refused (acceptUndigestedImages is off)`
    : `image ${id}: no sha256 to verify it against`)
}

/** How often a running fetch writes its progress to the record. */
const PROGRESS_EVERY_MS = 1000

export function createImageService(d: Deps) {
  const { zfs, scope, records, fetches } = d
  // The image service the operator configured is trusted; any other source host is checked on every hop.
  const policy = createSourcePolicy({ allow: d.config.allowSourceHosts, trustedOrigins: [d.config.imageServer] })
  const urlSources = d.config.urlSources !== 'off'

  async function record(id: string): Promise<ImageRecord> {
    // An id that could never be an image name cannot be in the store either.
    const r = id ? await records.get(id) : undefined
    if (!r) throw new NotFoundError()
    return r
  }

  /** A complete image, or a clear error for one still on its way or failed. */
  async function usable(id: string): Promise<ImageRecord> {
    const r = await record(id)
    if (r.status !== 'complete') throw new ConflictError(`image ${id} is not ready (${r.status}${r.error ? `: ${r.error}` : ''})`)
    return r
  }

  function base(id: string, source: string, status: ImageRecord['status']): ImageRecord {
    return { id, type: '', volume: '', snapshot: '', size: 0, status, source }
  }

  /** Fetches that an async caller is waiting on through the record: their failure must be recorded. */
  const watched = new Set<string>()

  /**
   * Start (or join) the fetch of one image; its record follows it: pending →
   * downloading → complete | error. A failure is recorded (status error) when
   * an async caller asked; a synchronous caller gets the error itself and,
   * as with the original, no record stays behind.
   */
  function fetchImage(id: string, source: string, async: boolean, format: PayloadFormat | undefined, sha256: string | undefined): Promise<ImageRecord> {
    const url = sourceUrl(d.config.imageServer, id, source, d.config.fileSources, { policy, urlSources })
    const shown = url.protocol === 'file:' ? url.toString() : url.toString().replace(/\/\/[^@/]*@/, '//') // no credentials in records
    // Fail closed: bytes from a place the caller names are only taken with the caller's digest.
    if (source && !sha256) throw new InvalidParamsError('sha256: required with source (the sha256 of the bytes as served)')
    if (async) watched.add(id)
    try {
      return fetches.run(id, task, () => { void records.put(id, base(id, shown, 'pending')).catch(() => {}) })
    } catch (e) {
      if (async) watched.delete(id) // not admitted: nothing will run to record an outcome
      throw e
    }
    async function task(signal: AbortSignal): Promise<ImageRecord> {
      try {
        const rec = await importFrom(id, url, shown, format, sha256, !source, signal)
        watched.delete(id)
        return rec
      } catch (err) {
        // Aborted: the agent is shutting down; say that, not what the abort broke.
        const e = signal.aborted ? new BusyError('fetcher quit', { cause: err }) : err
        // Once per fetch, however many callers share it.
        const keep = watched.delete(id)
        await (keep ? records.put(id, { ...base(id, shown, 'error'), error: (e as Error).message }) : records.del(id)).catch(() => {})
        throw e
      }
    }
  }

  /** One import, its progress written to the record as it goes. */
  async function importFrom(
    id: string, url: URL, shown: string, format: PayloadFormat | undefined, sha256: string | undefined, fromImageService: boolean, signal: AbortSignal,
  ): Promise<ImageRecord> {
    const src = await openImageSource(url, { signal, idleTimeoutMs: d.config.fetchIdleTimeoutMs, fileSources: d.config.fileSources, policy })
    let expectedSha256: string | undefined
    try {
      expectedSha256 = expectedDigest(id, sha256, src.sha256, fromImageService, d.config.acceptUndigestedImages)
    } catch (e) {
      src.abandon()
      throw e
    }
    const total = src.size ?? null
    const progress = () => records.put(id, { ...base(id, shown, 'downloading'), progress: { bytes: src.delivered(), total } })
    let last: Promise<void> = progress()
    await last
    const timer = setInterval(() => { last = progress().catch(() => {}) }, PROGRESS_EVERY_MS)
    try {
      const got = await importImage({
        zfs, imagesRoot: scope.images, id, body: src.body, signal, expectedSha256, expectedBytes: src.size, format, maxBytes: d.config.maxImageBytes,
      })
      clearInterval(timer)
      await last // a progress write must not land after the final one
      const rec: ImageRecord = {
        id, type: '', volume: got.volume, snapshot: got.snapshot, size: toMiB(got.volsize), status: 'complete', source: shown, sha256: got.sha256, format: got.format,
      }
      await records.put(id, rec)
      return rec
    } finally {
      clearInterval(timer)
      src.abandon() // a failed import may not have read the body to its end
    }
  }

  return {
    async listImages(): Promise<{ images: WireImage[] }> {
      // [] rather than the original's null when empty (its bug 12).
      return { images: (await records.values()).map(imageWire) }
    },

    async getImage(p: ImageRequest): Promise<{ images: WireImage[] }> {
      return { images: [imageWire(await record(p.id))] }
    },

    /**
     * Complete already: answered from the record. Otherwise fetched (or the
     * running fetch joined); with `async` the pending record comes back at
     * once and GetImage/ListImages show how it goes.
     */
    async requestImage(p: ImageRequest): Promise<{ images: WireImage[] }> {
      if (!p.id) throw new InvalidParamsError('need id')
      scope.imageDataset(p.id) // the id becomes a dataset name: check it first
      const format = parseDeclaredFormat(p.format)
      const sha256 = p.sha256 ? p.sha256.toLowerCase() : undefined
      if (sha256 !== undefined && !SHA256.test(sha256)) throw new InvalidParamsError('sha256: 64 hex digits')
      const have = await records.get(p.id)
      if (have?.status === 'complete') return { images: [imageWire(have)] }
      const joining = fetches.has(p.id) && (have?.status === 'pending' || have?.status === 'downloading')
      const job = fetchImage(p.id, p.source ?? '', p.async === true, format, sha256) // throws at once when not admitted
      if (p.async) {
        job.catch(() => {}) // the outcome lands in the record
        return { images: [imageWire(joining ? have : base(p.id, p.source ?? '', 'pending'))] }
      }
      return { images: [imageWire(await job)] }
    },

    async deleteImage(p: ImageRequest, signal?: AbortSignal): Promise<{ images: WireImage[] }> {
      const r = await record(p.id)
      if (fetches.has(r.id)) throw new ConflictError(`image ${r.id} is being fetched; delete it when the fetch has ended`)
      const volume = r.volume ? scope.check(r.volume, { below: true }) : undefined
      // One recursive destroy takes the snapshot too, and zfs refuses it whole
      // while guest disks are cloned from the image: nothing half deleted.
      if (volume && (await zfs.findDataset(volume, { signal }))) await zfs.destroy(volume, { recursive: true }, { signal })
      await records.del(r.id)
      return { images: [imageWire(r)] }
    },

    async cloneImage(p: ImageRequest, signal?: AbortSignal): Promise<{ volumes: WireVolume[] }> {
      if (!p.dest) throw new InvalidParamsError('need dest')
      const r = await usable(p.id)
      // dest: a full name under <pool>/ as the original took it verbatim, or relative like every other id.
      // Only under guests/: a volume in images/ would take an image id's place.
      const fence = { below: true, guestsOnly: true }
      const dest = p.dest.startsWith(`${scope.pool}/`) ? scope.check(p.dest, fence) : scope.resolve(p.dest, fence)
      if (dest.includes('@')) throw new InvalidParamsError('dest must name a volume, not a snapshot')
      // The space check VerifyDisks makes: a clone may grow to the image's size.
      await assertGuestsRoom(d, r.size, signal)
      // The clone itself is one zfs command in the usual case: the record names
      // the snapshot, and a clone is as big as its origin, so neither needs looking up.
      try {
        await cloneStrict(zfs, scope.check(r.snapshot), dest, { signal })
      } catch (e) {
        // The record's snapshot vanished behind our back (its parent always exists: it is the image).
        if (e instanceof DatasetNotFoundError) throw new NotFoundError('not found', { cause: e })
        throw e
      }
      return { volumes: [{ id: dest, size: r.size, device: zvolPath(dest) }] }
    },
  }
}
