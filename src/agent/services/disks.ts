/**
 * VerifyDisks, CreateGuestDisks, DeleteGuestsDisks. Space is reckoned in
 * bytes against what zfs says a new dataset under <pool>/guests may use
 * (pool free space, reservations and every quota above it already applied),
 * not the original's KiB-vs-MiB sum that could wrap around.
 *
 * The three run one at a time per guest id: an orchestrator that retries
 * after a timeout sends a second CreateGuestDisks while the first is still
 * running, and each must see the other's disks whole, not half made.
 */
import { ConflictError, InvalidParamsError, NoSpaceError, NotFoundError } from '../errors.js'
import { DatasetExistsError, DatasetNotFoundError, ParentNotFoundError, zvolPath } from '../../zfs/index.js'
import { mountedAvailable } from '../../zfs/mounted.js'
import { MiB, guestWire, type Disk, type Guest } from './shapes.js'
import { cloneStrict, createVolumeStrict, type Deps } from './deps.js'
import { createKeyedLock } from '../../common/keyed-lock.js'
import type { GuestRequest } from '../rpc/requests.js'

export type { GuestRequest }

const INVALID = 'invalid argument'

/**
 * Bytes a new dataset under <pool>/guests may still take (VerifyDisks and
 * CloneImage reckon alike): from the kernel when guests/ is mounted, else zfs.
 */
export async function guestsAvailable(d: Pick<Deps, 'zfs' | 'scope'>, signal?: AbortSignal): Promise<number> {
  return (await mountedAvailable(d.scope.guests)) ?? (await d.zfs.getDataset(d.scope.guests, { signal })).available ?? 0
}

/** `no space left on device` unless `mib` MiB fit under <pool>/guests. */
export async function assertGuestsRoom(d: Pick<Deps, 'zfs' | 'scope'>, mib: number, signal?: AbortSignal): Promise<void> {
  if (!Number.isSafeInteger(mib * MiB) || mib * MiB > (await guestsAvailable(d, signal))) throw new NoSpaceError()
}

export function createDiskService(d: Deps) {
  const { zfs, scope, records } = d
  const perGuest = createKeyedLock()

  function guestOf(p: GuestRequest): Guest {
    const g = p.guest
    if (!g || !g.id) throw new InvalidParamsError(INVALID)
    scope.guestDataset(g.id)
    return g
  }

  /** Run `fn` alone for this request's guest (the id is checked first: it is the key). */
  function serialised<T>(p: GuestRequest, fn: () => Promise<T>): Promise<T> {
    return perGuest.run(guestOf(p).id, fn)
  }

  /** Make <pool>/guests/<id>; false when it was there already (then it is not ours to undo). */
  async function makeGuestDataset(guestDs: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await zfs.createFilesystem(guestDs, {}, { signal })
      return true
    } catch (e) {
      if (e instanceof DatasetExistsError) return false
      if (!(e instanceof ParentNotFoundError)) throw e
      await zfs.createFilesystem(guestDs, { parents: true }, { signal }) // <pool>/guests itself was gone
      return true
    }
  }

  /**
   * Make one disk; false when a volume of that name exists already (kept as
   * it is, so the call can be repeated). Creating first and looking only when
   * zfs says it exists costs one zfs command for a new disk, and cannot
   * mistake a disk someone else made in between for one of ours.
   */
  async function makeDisk(disk: Disk, volume: string, signal?: AbortSignal): Promise<boolean> {
    try {
      if (disk.image) {
        const r = await records.get(disk.image)
        if (!r) throw new NotFoundError()
        await cloneStrict(zfs, scope.check(r.snapshot), volume, { signal })
      } else {
        await createVolumeStrict(zfs, volume, disk.size * MiB, { signal })
      }
      return true
    } catch (e) {
      // The record's snapshot vanished behind our back (the parent exists: cloneStrict makes it).
      if (e instanceof DatasetNotFoundError && !(e instanceof ParentNotFoundError)) throw new NotFoundError('not found', { cause: e })
      if (!(e instanceof DatasetExistsError)) throw e
      const existing = await zfs.findDataset(volume, { signal })
      if (existing?.type !== 'volume') throw new ConflictError(`${volume} exists and is not a volume`)
      return false
    }
  }

  /** Check each disk, fill image disks' sizes from the image, and the total against free space. */
  async function verify(p: GuestRequest, signal?: AbortSignal): Promise<Guest> {
    const g = guestOf(p)
    if (!g.disks?.length) throw new InvalidParamsError(INVALID)
    const disks: Disk[] = []
    let needBytes = 0
    for (const disk of g.disks) {
      if (!disk.image && !disk.size) throw new InvalidParamsError(INVALID)
      let size = disk.size
      if (disk.image) {
        const r = await records.get(disk.image)
        if (!r || r.status !== 'complete') throw new NotFoundError()
        size = r.size
      }
      if (!Number.isSafeInteger(size * MiB)) throw new NoSpaceError()
      needBytes += size * MiB
      disks.push({ ...disk, size })
    }
    if (needBytes > (await guestsAvailable(d, signal))) throw new NoSpaceError()
    return { ...g, disks }
  }

  return {
    async verifyDisks(p: GuestRequest, signal?: AbortSignal) {
      return serialised(p, async () => ({ guest: guestWire(await verify(p, signal)) }))
    },

    /**
     * Create every disk or none: disks made by this call are destroyed again
     * when a later one fails, and the guest's dataset too if this call made
     * it and nothing else is in it. Disks that already exist are kept as they
     * are, so the call can be repeated; they are never this call's to undo.
     * The undo runs without the call's signal: a client gone mid-way aborts
     * the making, never the cleaning up.
     */
    async createGuestDisks(p: GuestRequest, signal?: AbortSignal) {
      return serialised(p, async () => {
        const g = await verify(p, signal)
        const guestDs = scope.guestDataset(g.id)
        const madeGuest = await makeGuestDataset(guestDs, signal)
        const disks: Disk[] = (g.disks ?? []).map((disk, i) => {
          const volume = `${guestDs}/disk-${i}`
          return { ...disk, volume, source: zvolPath(volume) }
        })
        // All at once: zfs then commits the clones in one transaction group instead of one after another.
        const made = await Promise.allSettled(disks.map((disk) => makeDisk(disk, disk.volume!, signal)))
        const failed = made.find((r): r is PromiseRejectedResult => r.status === 'rejected')
        if (failed) {
          const created = disks.filter((_, i) => { const r = made[i]!; return r.status === 'fulfilled' && r.value })
          await Promise.all(created.map((disk) => zfs.destroy(disk.volume!, { recursive: true }).catch(() => {})))
          // Not recursive: zfs refuses while anything is left in it, which is then not ours.
          if (madeGuest) await zfs.destroy(guestDs).catch(() => {})
          throw failed.reason
        }
        return { guest: guestWire({ ...g, disks }) }
      })
    },

    async deleteGuestsDisks(p: GuestRequest, signal?: AbortSignal) {
      return serialised(p, async () => {
        const g = guestOf(p)
        const guestDs = scope.guestDataset(g.id)
        // A guest with no datasets has nothing to delete: success (the original's bug 1).
        if (await zfs.findDataset(guestDs, { signal })) await zfs.destroy(guestDs, { recursive: true }, { signal })
        return { guest: guestWire({ ...g, disks: null }) }
      })
    },
  }
}
