/** The fetch of one image as a job: admitted by the queue, joined by later callers, its record kept up to date as it goes. */
import { BusyError, InvalidParamsError, UpstreamError } from '../errors.js'
import { randomInt } from 'node:crypto'
import { openImageSource, replicaUrls, sourceUrl } from '../import/sources.js'
import { importImage } from '../import/import-image.js'
import type { PayloadFormat } from '../import/payload.js'
import { blankRecord, type ImageRecord } from '../catalog.js'
import { toMiB } from '../services/shapes.js'
import type { Deps } from '../services/deps.js'
import { createSourcePolicy } from '../../common/address-policy.js'
import { imageServers } from '../config.js'

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

export type ImageFetch = (id: string, source: string, async: boolean, format: PayloadFormat | undefined, sha256: string | undefined) => Promise<ImageRecord>

/** `firstReplica`: the replica the first fetch starts at (tests); default random. */
export function createImageFetch(d: Deps, o: { firstReplica?: number } = {}): ImageFetch {
  const { zfs, scope, records, fetches } = d
  // The image service the operator configured is trusted; any other source host is checked on every hop.
  const policy = createSourcePolicy({ allow: d.config.allowSourceHosts, trustedOrigins: imageServers(d.config.imageServer) })
  const urlSources = d.config.urlSources !== 'off'
  /**
   * The replica each fetch from the image service tries first: a random one
   * for this agent's first fetch, the next one for each fetch after. Random,
   * so that a fleet started together does not fall on the first replica
   * listed; rotating, so that one agent's fetches spread too.
   */
  let nextReplica = o.firstReplica ?? randomInt(Math.max(1, imageServers(d.config.imageServer).length))

  /** Fetches that an async caller is waiting on through the record: their failure must be recorded. */
  const watched = new Set<string>()

  /**
   * Start (or join) the fetch of one image; its record follows it: pending →
   * downloading → complete | error. A failure is recorded (status error) when
   * an async caller asked; a synchronous caller gets the error itself and,
   * as with the original, no record stays behind.
   */
  function fetchImage(id: string, source: string, async: boolean, format: PayloadFormat | undefined, sha256: string | undefined): Promise<ImageRecord> {
    const first = sourceUrl(d.config.imageServer, id, source, d.config.fileSources, { policy, urlSources })
    // From the image service: its download URL on every replica, in the order this fetch tries them.
    const urls = source ? [first] : replicaUrls(d.config.imageServer, id, nextReplica++)
    const url = urls[0]!
    const shown = url.protocol === 'file:' ? url.toString() : url.toString().replace(/\/\/[^@/]*@/, '//') // no credentials in records
    // Fail closed: bytes from a place the caller names are only taken with the caller's digest.
    if (source && !sha256) throw new InvalidParamsError('sha256: required with source (the sha256 of the bytes as served)')
    if (async) watched.add(id)
    try {
      return fetches.run(id, task, () => { void records.put(id, blankRecord(id, shown, 'pending')).catch(() => {}) })
    } catch (e) {
      if (async) watched.delete(id) // not admitted: nothing will run to record an outcome
      throw e
    }
    async function task(signal: AbortSignal): Promise<ImageRecord> {
      try {
        const rec = await importFrom(id, urls, shown, format, sha256, !source, signal)
        watched.delete(id)
        return rec
      } catch (err) {
        // Aborted: the agent is shutting down; say that, not what the abort broke.
        const e = signal.aborted ? new BusyError('fetcher quit', { cause: err }) : err
        // Once per fetch, however many callers share it.
        const keep = watched.delete(id)
        await (keep ? records.put(id, { ...blankRecord(id, shown, 'error'), error: (e as Error).message }) : records.del(id)).catch(() => {})
        throw e
      }
    }
  }

  /** One import, its progress written to the record as it goes. */
  async function importFrom(
    id: string, urls: readonly URL[], shown: string, format: PayloadFormat | undefined, sha256: string | undefined, fromImageService: boolean, signal: AbortSignal,
  ): Promise<ImageRecord> {
    const src = await openImageSource(urls, { signal, idleTimeoutMs: d.config.fetchIdleTimeoutMs, fileSources: d.config.fileSources, policy })
    let expectedSha256: string | undefined
    try {
      expectedSha256 = expectedDigest(id, sha256, src.sha256, fromImageService, d.config.acceptUndigestedImages)
    } catch (e) {
      src.abandon()
      throw e
    }
    const total = src.size ?? null
    const progress = () => records.put(id, { ...blankRecord(id, shown, 'downloading'), progress: { bytes: src.delivered(), total } })
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

  return fetchImage
}
