/** The fetch of one image as a job: admitted by the queue, joined by later callers, its record kept up to date as it goes. */
import { BusyError, InvalidParamsError, UpstreamError } from '../errors.js'
import type { Place } from './queue.js'
import { randomInt } from 'node:crypto'
import { openImageSource, readServiceRecord, replicaUrls, sourceUrl } from '../import/sources.js'
import { parseServiceRecord, planFetch, type ServiceRecord, type Step } from '../import/lineage.js'
import { importImage } from '../import/import-image.js'
import { expectedDigest, type ExpectedDigest } from '../import/digest.js'
import type { PayloadFormat } from '../import/payload.js'
import { blankRecord, type ImageRecord } from '../catalog.js'
import { toMiB } from '../services/shapes.js'
import type { Deps } from '../services/deps.js'
import { createSourcePolicy } from '../../common/address-policy.js'
import { imageServers } from '../config.js'

/** How often a running fetch writes its progress to the record. */
const PROGRESS_EVERY_MS = 1000

export type ImageFetch = (id: string, source: string, async: boolean, format: PayloadFormat | undefined, sha256: string | undefined) => Promise<ImageRecord>

/** Where one import takes its bytes from, and what they must be. */
interface How {
  /** Replicas of one resource (or the one source the caller named), in the order tried. */
  readonly urls: readonly URL[]
  /** The first URL without credentials: what the record shows. */
  readonly shown: string
  readonly format: PayloadFormat | undefined
  /** The sha256 the caller gives: the only digest then checked (digest.ts). */
  readonly pinned: string | undefined
  /** The sha256 the image service's record gives (an increment's). */
  readonly recorded?: string
  readonly fromImageService: boolean
  /** An increment: received as a clone of this image snapshot of ours. */
  readonly origin?: string
  /** The guid the stream's snapshot must carry. */
  readonly snapshotGuid?: string
}

const shownOf = (u: URL) => (u.protocol === 'file:' ? u.toString() : u.toString().replace(/\/\/[^@/]*@/, '//')) // no credentials in records

/** `firstReplica`: the replica the first fetch starts at (tests); default random. */
export function createImageFetch(d: Deps, o: { firstReplica?: number } = {}): ImageFetch {
  const { zfs, scope, records, fetches } = d
  const server = d.config.imageServer
  // The image service the operator configured is trusted; any other source host is checked on every hop.
  const policy = createSourcePolicy({ allow: d.config.allowSourceHosts, trustedOrigins: imageServers(server) })
  const urlSources = d.config.urlSources !== 'off'
  /**
   * The replica each fetch from the image service tries first: a random one
   * for this agent's first fetch, the next one for each fetch after. Random,
   * so that a fleet started together does not fall on the first replica
   * listed; rotating, so that one agent's fetches spread too.
   */
  let nextReplica = o.firstReplica ?? randomInt(Math.max(1, imageServers(server).length))

  /** Fetches that an async caller is waiting on through the record: their failure must be recorded. */
  const watched = new Set<string>()
  /** Images being reached through a chain of increments, joined by later callers as a single fetch is. */
  const chains = new Map<string, Promise<ImageRecord>>()

  /**
   * Start (or join) the fetch of one image; its record follows it: pending →
   * downloading → complete | error. A failure is recorded (status error) when
   * an async caller asked; a synchronous caller gets the error itself and,
   * as with the original, no record stays behind. An image asked for by id
   * alone may arrive as increments from a version this agent holds.
   */
  function fetchImage(id: string, source: string, async: boolean, format: PayloadFormat | undefined, sha256: string | undefined): Promise<ImageRecord> {
    if (source) {
      const how = direct(id, source, format, sha256)
      // Fail closed: bytes from a place the caller names are only taken with the caller's digest.
      if (!sha256) throw new InvalidParamsError('sha256: required with source (the sha256 of the bytes as served)')
      return fetchOne(id, how, async)
    }
    const joined = chains.get(id)
    if (joined) return joined
    // A caller's format or digest speaks of the full stream: that is what it gets.
    if (format === undefined && sha256 === undefined && (d.config.incrementDepth ?? 0) > 0 && !fetches.has(id)) return fetchChain(id, async)
    return fetchOne(id, direct(id, '', format, sha256), async)
  }

  function direct(id: string, source: string, format: PayloadFormat | undefined, sha256: string | undefined, snapshotGuid?: string): How {
    const first = sourceUrl(server, id, source, d.config.fileSources, { policy, urlSources })
    // From the image service: its download URL on every replica, in the order this fetch tries them.
    const urls = source ? [first] : replicaUrls(server, id, nextReplica++)
    return { urls, shown: shownOf(urls[0]!), format, pinned: sha256, fromImageService: !source, ...(snapshotGuid ? { snapshotGuid } : {}) }
  }

  /** One import as a job of the queue (or the one under way for `id`, joined). */
  function fetchOne(id: string, how: How, async: boolean, place?: Place): Promise<ImageRecord> {
    if (async) watched.add(id)
    try {
      return fetches.run(id, task, () => { void records.put(id, blankRecord(id, how.shown, 'pending')).catch(() => {}) }, place)
    } catch (e) {
      if (async) watched.delete(id) // not admitted: nothing will run to record an outcome
      throw e
    }
    async function task(signal: AbortSignal): Promise<ImageRecord> {
      try {
        const rec = await importFrom(id, how, signal)
        watched.delete(id)
        return rec
      } catch (err) {
        // Aborted: the agent is shutting down; say that, not what the abort broke.
        const e = signal.aborted ? new BusyError('fetcher quit', { cause: err }) : err
        // Once per fetch, however many callers share it.
        const keep = watched.delete(id)
        await (keep ? records.put(id, { ...blankRecord(id, how.shown, 'error'), error: (e as Error).message }) : records.del(id)).catch(() => {})
        throw e
      }
    }
  }

  /**
   * The image by the cheapest way the image service's records allow (see
   * lineage.ts): each step a fetch of its own, origin first, each verified
   * and committed before the next starts. The target's record shows it
   * pending from the start. It takes its place in the queue at once, so a
   * caller the queue cannot take is refused in the answer, as for one fetch.
   */
  function fetchChain(id: string, async: boolean): Promise<ImageRecord> {
    const shown = shownOf(replicaUrls(server, id, 0)[0]!)
    const place = fetches.hold()
    const run = (async () => {
      let targetStarted = false
      try {
        await records.put(id, blankRecord(id, shown, 'pending'))
        let rec: ImageRecord | undefined
        for (const step of await plan(id)) {
          const last = step.record.id === id
          if (!last && (await records.get(step.record.id))?.status === 'complete') continue // fetched meanwhile
          const job = fetchOne(step.record.id, await howOf(step), last && async, place)
          targetStarted = last
          rec = await job
        }
        return rec!
      } catch (e) {
        // The target's own fetch records its outcome; before it started, that is for us to do.
        if (!targetStarted) await (async ? records.put(id, { ...blankRecord(id, shown, 'error'), error: (e as Error).message }) : records.del(id)).catch(() => {})
        throw e
      } finally {
        place.give()
      }
    })()
    const tracked = run.finally(() => chains.delete(id))
    chains.set(id, tracked)
    return tracked
  }

  /** The steps to `id`: the full stream alone when the image service tells of no usable chain. */
  async function plan(id: string): Promise<Step[]> {
    const start = nextReplica // the records from the replica the fetch itself then starts at
    const lookup = async (x: string): Promise<ServiceRecord | undefined> => {
      const body = await readServiceRecord(replicaUrls(server, x, start, 'record'), {
        signal: AbortSignal.timeout(d.config.fetchIdleTimeoutMs * 2), idleTimeoutMs: d.config.fetchIdleTimeoutMs, policy,
      }).catch(() => undefined)
      try { return body === undefined ? undefined : parseServiceRecord(x, body) } catch { return undefined }
    }
    const holds = async (r: ServiceRecord): Promise<boolean> => {
      const mine = await records.get(r.id)
      if (mine?.status !== 'complete' || r.snapshot_guid === '') return false
      return (await zfs.findDataset(scope.check(mine.snapshot)))?.guid === r.snapshot_guid
    }
    const target = await lookup(id)
    if (!target) return [{ kind: 'full', record: { id, size: 0, snapshot_guid: '', origin: '', increment: null } }]
    return planFetch(target, { lookup, holds, depth: d.config.incrementDepth ?? 0 })
  }

  async function howOf(step: Step): Promise<How> {
    const r = step.record
    if (step.kind === 'full') return direct(r.id, '', undefined, undefined, r.snapshot_guid)
    const origin = await records.get(r.origin)
    if (origin?.status !== 'complete') throw new UpstreamError(`image ${r.id}: its origin ${r.origin} is not here to apply its increment to`)
    const urls = replicaUrls(server, r.id, nextReplica++, 'increment')
    return { urls, shown: shownOf(urls[0]!), format: undefined, pinned: undefined, recorded: r.increment!.sha256, fromImageService: true, origin: scope.check(origin.snapshot), snapshotGuid: r.snapshot_guid }
  }

  /** One import, its progress written to the record as it goes. */
  async function importFrom(id: string, how: How, signal: AbortSignal): Promise<ImageRecord> {
    const { shown } = how
    const src = await openImageSource(how.urls, { signal, idleTimeoutMs: d.config.fetchIdleTimeoutMs, fileSources: d.config.fileSources, policy })
    let expected: ExpectedDigest | undefined
    try {
      expected = expectedDigest(id, { pinned: how.pinned, recorded: how.recorded, published: src.published, fromImageService: how.fromImageService, acceptUndigested: d.config.acceptUndigestedImages })
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
        zfs, imagesRoot: scope.images, id, body: src.body, signal, expected, expectedBytes: src.size, format: how.format, maxBytes: d.config.maxImageBytes,
        origin: how.origin, snapshotGuid: how.snapshotGuid,
      })
      clearInterval(timer)
      await last // a progress write must not land after the final one
      const rec: ImageRecord = {
        id, type: '', volume: got.volume, snapshot: got.snapshot, size: toMiB(got.volsize), status: 'complete', source: shown, ...(got.sha256 ? { sha256: got.sha256 } : {}), format: got.format,
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
