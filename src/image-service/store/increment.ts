/**
 * Increments (issue 16): beside an image's full zfs stream, a `zfs send -i` stream from an
 * earlier image (its origin), so an agent holding the origin fetches only what changed. The
 * stream's first record must link exactly those two snapshots; the bytes become the image's
 * second blob and the record names origin and increment in one compare-and-swap.
 */
import { DRR_BEGIN_BYTES, isZfsStream, readStreamHeader } from '../../zfs/stream-header.js'
import { IMAGE_HEADER } from '../../common/image-headers.js'
import { incrementKey, type StoredData, type WriteOptions } from './blobs.js'
import type { IngestDeps } from './ingest.js'
import { peekHead } from './stream-head.js'
import { isImageId, type ImageRecord, type ImageStore } from './store.js'

/** A request the service will not carry out; nothing was stored. `status` is the HTTP answer. */
export class IncrementRefused extends Error {
  override name = 'IncrementRefused'
  constructor(readonly status: 400 | 404 | 409, message: string) {
    super(message)
  }
}

/**
 * The origin record, when `image` may take an increment from `originId`; else why not. Checked
 * before any byte is read, and again (without the walk) in the final compare-and-swap.
 */
export async function checkLink(store: ImageStore, image: ImageRecord, originId: string): Promise<ImageRecord> {
  checkImage(image)
  if (originId === '') throw new IncrementRefused(400, `${IMAGE_HEADER.origin} header missing: the id of the image the increment starts from`)
  if (!isImageId(originId)) throw new IncrementRefused(400, `${IMAGE_HEADER.origin} ${JSON.stringify(originId)} is not an image id`)
  if (originId.toLowerCase() === image.id) throw new IncrementRefused(400, `image ${image.id} cannot be its own origin`)
  const origin = await store.get(originId)
  if (!origin) throw new IncrementRefused(404, `origin image ${originId.toLowerCase()} not found`)
  if (origin.status !== 'complete') throw new IncrementRefused(409, `origin image ${origin.id} is not complete (status ${origin.status})`)
  if (origin.snapshot_guid === '') throw new IncrementRefused(409, `origin image ${origin.id} has no snapshot_guid: its bytes are not a plain full zfs send stream`)
  // The origins of the origin: an image that descends from this one cannot be its origin.
  const seen = new Set([origin.id])
  for (let cur = origin; cur.origin !== '';) {
    if (cur.origin === image.id) throw new IncrementRefused(409, `origin image ${origin.id} descends from image ${image.id}: linking them would make a cycle`)
    if (seen.has(cur.origin)) break
    seen.add(cur.origin)
    const next = await store.get(cur.origin)
    if (!next) break
    cur = next
  }
  return origin
}

function checkImage(image: ImageRecord): void {
  if (image.status !== 'complete') throw new IncrementRefused(409, `image ${image.id} is not complete (status ${image.status})`)
  if (image.snapshot_guid === '') throw new IncrementRefused(409, `image ${image.id} has no snapshot_guid: its bytes are not a plain full zfs send stream`)
  if (image.increment) throw new IncrementRefused(409, `image ${image.id} already has an increment (from ${image.origin})`)
}

/** The stream's first record must be an incremental send from the origin's snapshot to the image's. */
export function checkIncrementHead(head: Buffer, image: ImageRecord, origin: ImageRecord): void {
  if (!isZfsStream(head)) throw new IncrementRefused(400, 'the body is not a zfs send stream')
  const h = readStreamHeader(head)
  if (!h) throw new IncrementRefused(400, `the body ends inside the zfs stream's first record (${DRR_BEGIN_BYTES} bytes)`)
  if (h.compound) throw new IncrementRefused(400, 'a replication or properties stream (zfs send -R or -p) is not accepted: send one snapshot with zfs send -i')
  if (h.clone) throw new IncrementRefused(400, 'a clone stream is not accepted: send one snapshot with zfs send -i')
  if (h.fromguid === 0n) throw new IncrementRefused(400, 'the body is a full stream (from guid 0), not an increment: send it with zfs send -i')
  if (h.fromguid.toString() !== origin.snapshot_guid) {
    throw new IncrementRefused(400, `the increment starts from snapshot guid ${h.fromguid}, expected origin ${origin.id}'s snapshot guid ${origin.snapshot_guid}`)
  }
  if (h.toguid.toString() !== image.snapshot_guid) {
    throw new IncrementRefused(400, `the increment ends at snapshot guid ${h.toguid}, expected image ${image.id}'s snapshot guid ${image.snapshot_guid}`)
  }
}

/**
 * Store `body` as `id`'s increment from `originId` and return the updated record. Throws
 * IncrementRefused (nothing stored) when the pair or the stream does not fit, or the store's
 * errors (TooLargeError, IncompleteError, BlobStoreError) as an upload does.
 */
export async function storeIncrement(deps: IngestDeps, id: string, originId: string, body: AsyncIterable<Uint8Array>, o: Omit<WriteOptions, 'onProgress'> = {}): Promise<ImageRecord> {
  const image = await deps.store.get(id)
  if (!image) throw new IncrementRefused(404, 'image not found')
  const origin = await checkLink(deps.store, image, originId)
  const peeked = await peekHead(body, DRR_BEGIN_BYTES)
  checkIncrementHead(peeked.head, image, origin)

  const staged = await deps.blobs.stage(image.id, peeked.body, o)
  const key = incrementKey(image.id, staged.data.sha256)
  let committed = false
  let refused: IncrementRefused | undefined
  let linked: ImageRecord | undefined
  try {
    linked = await deps.store.update(image.id, async (r) => {
      refused = undefined
      if (r.generation !== image.generation) { refused = new IncrementRefused(409, `image ${image.id} was deleted and created again during this upload`); return undefined }
      try {
        checkImage(r)
      } catch (err) {
        refused = err as IncrementRefused
        return undefined
      }
      // The record is not re-read here: the guid the stream was checked against cannot change on a complete image.
      if (!committed) await staged.commit(key)
      committed = true
      return { ...r, origin: origin.id, increment: incrementOf(origin, staged.data) }
    })
  } catch (err) {
    await dropOurs(deps, image.id, key, committed, staged.discard)
    throw err
  }
  if (!linked || refused) {
    await dropOurs(deps, image.id, key, committed, staged.discard)
    throw refused ?? new IncrementRefused(404, `image ${image.id} was deleted during this upload`)
  }
  // The origin may have been deleted while the bytes arrived (its delete saw no dependents yet): undo the link.
  const stillThere = await deps.store.get(origin.id)
  if (!stillThere || stillThere.snapshot_guid !== origin.snapshot_guid) {
    await deps.store.update(image.id, (r) => (r.increment?.sha256 === staged.data.sha256 && r.origin === origin.id ? { ...r, origin: '', increment: null } : undefined))
    await dropOurs(deps, image.id, key, committed, staged.discard)
    throw new IncrementRefused(409, `origin image ${origin.id} was deleted during this upload`)
  }
  return linked
}

/** Why an image others have increments from cannot be deleted (their increments would apply to nothing). Both APIs say it. */
export function originOfMessage(id: string, dependents: string[]): string {
  return `image ${id} is the origin of ${dependents.join(', ')}`
}

function incrementOf(origin: ImageRecord, data: StoredData): NonNullable<ImageRecord['increment']> {
  return { from_guid: origin.snapshot_guid, size: data.size, sha256: data.sha256, blake2b512: data.blake2b512 }
}

/**
 * Drop this upload's bytes: the staged ones, or the committed blob unless the record (another
 * upload with the same bytes) uses that key.
 */
async function dropOurs(deps: IngestDeps, id: string, key: string, committed: boolean, discard: () => Promise<void>): Promise<void> {
  if (!committed) {
    await discard().catch(() => {})
    return
  }
  const now = await deps.store.get(id).catch(() => undefined)
  if (now && now.increment && incrementKey(id, now.increment.sha256) === key) return
  await deps.blobs.remove(key).catch((err: unknown) => deps.log.warn({ id, key, err: String(err) }, 'removing an unlinked increment blob failed'))
}
