/**
 * VerifyDisks, CreateGuestDisks, DeleteGuestsDisks. Space is reckoned in
 * bytes against what zfs says a new dataset under <pool>/guests may use
 * (pool free space, reservations and every quota above it already applied),
 * not the original's KiB-vs-MiB sum that could wrap around.
 */
import { ConflictError, InvalidParamsError, NoSpaceError, NotFoundError } from '../errors.js'
import { MiB, guestWire, type Disk, type Guest } from './shapes.js'
import { cloneStrict, createVolumeStrict, type Deps } from './deps.js'
import { getExisting } from './lookup.js'

export interface GuestRequest { guest: Guest | null; action: string; args: Record<string, string> | null }

const INVALID = 'invalid argument'

export function createDiskService(d: Deps) {
  const { zfs, scope, records } = d

  function guestOf(p: GuestRequest): Guest {
    const g = p.guest
    if (!g || !g.id) throw new InvalidParamsError(INVALID)
    scope.guestDataset(g.id)
    return g
  }

  /** Bytes a new dataset under <pool>/guests may still take. */
  async function available(): Promise<number> {
    return (await zfs.getDataset(scope.guests)).available ?? 0
  }

  /** Check each disk, fill image disks' sizes from the image, and the total against free space. */
  async function verify(p: GuestRequest): Promise<Guest> {
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
    if (needBytes > (await available())) throw new NoSpaceError()
    return { ...g, disks }
  }

  return {
    async verifyDisks(p: GuestRequest) {
      return { guest: guestWire(await verify(p)) }
    },

    /**
     * Create every disk or none: disks made by this call are destroyed again
     * when a later one fails. Disks that already exist are kept as they are,
     * so the call can be repeated.
     */
    async createGuestDisks(p: GuestRequest) {
      const g = await verify(p)
      const guestDs = scope.guestDataset(g.id)
      const hadGuest = (await zfs.findDataset(guestDs)) !== undefined
      const created: string[] = []
      const disks: Disk[] = []
      try {
        for (const [i, disk] of (g.disks ?? []).entries()) {
          const volume = `${guestDs}/disk-${i}`
          const existing = await zfs.findDataset(volume)
          if (!existing) {
            if (disk.image) {
              const r = await records.get(disk.image)
              if (!r) throw new NotFoundError()
              const snap = await getExisting(zfs, scope.check(r.snapshot))
              await cloneStrict(zfs, snap.name, volume)
            } else {
              await createVolumeStrict(zfs, volume, disk.size * MiB)
            }
            created.push(volume)
          } else if (existing.type !== 'volume') {
            throw new ConflictError(`${volume} exists and is not a volume`)
          }
          disks.push({ ...disk, volume, source: `/dev/zvol/${volume}` })
        }
      } catch (e) {
        for (const v of created.reverse()) await zfs.destroy(v, { recursive: true }).catch(() => {})
        if (!hadGuest) await zfs.destroy(guestDs, { recursive: true }).catch(() => {})
        throw e
      }
      return { guest: guestWire({ ...g, disks }) }
    },

    async deleteGuestsDisks(p: GuestRequest) {
      const g = guestOf(p)
      const guestDs = scope.guestDataset(g.id)
      // A guest with no datasets has nothing to delete: success (the original's bug 1).
      if (await zfs.findDataset(guestDs)) await zfs.destroy(guestDs, { recursive: true })
      return { guest: guestWire({ ...g, disks: null }) }
    },
  }
}
