/** ListSnapshots, GetSnapshot, CreateSnapshot, DeleteSnapshot, RollbackSnapshot, and the download's resolver. */
import { ConflictError, InvalidParamsError } from '../errors.js'
import { names, type Dataset } from '../../zfs/index.js'
import { lookup } from './lookup.js'
import { snapshotWire, type WireSnapshot } from './shapes.js'
import type { Deps } from './deps.js'
import type { SnapshotRequest } from '../rpc/requests.js'

export type { SnapshotRequest }

/** The original's rule for snapshot names given as `dest`. */
const VALID_DEST = /^[a-zA-Z0-9_\-:.]+$/

export function createSnapshotService(d: Deps) {
  const { zfs, scope } = d

  /** Reads (and the download) take both trees; `guestsOnly` for the methods that change the snapshot. */
  async function getSnapshot(id: string, o: { signal?: AbortSignal | undefined; guestsOnly?: boolean } = {}): Promise<Dataset> {
    const ds = await lookup(zfs, scope, id, o)
    if (ds.type !== 'snapshot') throw new InvalidParamsError('not a snapshot')
    return ds
  }

  /** The snapshot and, when recursive, its same-named twins in every descendant. */
  async function family(snap: Dataset, recursive: boolean, signal?: AbortSignal): Promise<Dataset[]> {
    if (!recursive) return [snap]
    const { dataset, snapshot } = names.splitSnapshotName(snap.name)
    const all = await zfs.listDatasets({ types: ['snapshot'], roots: [dataset] }, { signal })
    return all.filter((s) => s.name.endsWith(`@${snapshot}`))
  }

  return {
    getSnapshot,
    family,

    async listSnapshots(p: SnapshotRequest, signal?: AbortSignal): Promise<{ snapshots: WireSnapshot[] }> {
      // No id: both trees this agent owns (the original listed the whole pool).
      const roots = p.id ? [(await lookup(zfs, scope, p.id, { signal })).name] : [scope.images, scope.guests]
      const snaps = await zfs.listDatasets({ types: ['snapshot'], roots }, { signal })
      return { snapshots: snaps.map(snapshotWire) }
    },

    async getSnapshotRpc(p: SnapshotRequest, signal?: AbortSignal): Promise<{ snapshots: WireSnapshot[] }> {
      return { snapshots: [snapshotWire(await getSnapshot(p.id, { signal }))] }
    },

    async createSnapshot(p: SnapshotRequest, signal?: AbortSignal): Promise<{ snapshots: WireSnapshot[] }> {
      const ds = await lookup(zfs, scope, p.id, { guestsOnly: true, signal })
      if (ds.type === 'snapshot') throw new InvalidParamsError('cannot create a snapshot of a snapshot')
      if (!p.dest) throw new InvalidParamsError('need a dest')
      if (!VALID_DEST.test(p.dest) || p.dest.startsWith('-') || p.dest === '.' || p.dest === '..') throw new InvalidParamsError('invalid snapshot dest')
      const name = `${ds.name}@${p.dest}`
      await zfs.snapshot(name, { recursive: p.recursive }, { signal })
      const snap = await zfs.getDataset(name, { signal })
      return { snapshots: (await family(snap, p.recursive, signal)).map(snapshotWire) }
    },

    async deleteSnapshot(p: SnapshotRequest, signal?: AbortSignal): Promise<{ snapshots: WireSnapshot[] }> {
      const snap = await getSnapshot(p.id, { guestsOnly: true, signal })
      const before = await family(snap, p.recursive, signal)
      await zfs.destroy(snap.name, { recursive: p.recursive }, { signal })
      return { snapshots: before.map(snapshotWire) }
    },

    /**
     * Roll back to the snapshot (and with `recursive`, every descendant to its
     * same-named snapshot). Everything is checked before anything changes:
     * newer snapshots need `destroyMoreRecent`, and are never destroyed when
     * something was cloned from them or holds them (a download, an operator's
     * `zfs hold`): zfs would refuse that one rollback after the ones before it
     * were done, leaving the tree half rolled back. For the same reason a
     * client that goes away stops the checks, not the rollbacks once begun.
     */
    async rollbackSnapshot(p: SnapshotRequest, signal?: AbortSignal): Promise<{ snapshots: WireSnapshot[] }> {
      const snap = await getSnapshot(p.id, { guestsOnly: true, signal }) // 'need an id' comes from lookup
      const targets = await family(snap, p.recursive, signal)
      const { dataset: top } = names.splitSnapshotName(snap.name)
      const all = await zfs.listDatasets({ types: ['snapshot'], roots: [top], ...(p.recursive ? {} : { depth: 1 }) }, { signal })
      const doomed: Dataset[] = []
      for (const target of targets) {
        const { dataset } = names.splitSnapshotName(target.name)
        const newer = all.filter((s) => s.name.startsWith(`${dataset}@`) && s.createtxg > target.createtxg)
        if (newer.length && !p.destroyMoreRecent) {
          throw new ConflictError(`cannot rollback to '${target.name}': more recent snapshots exist (${newer.map((s) => s.name).join(', ')}); use destroyMoreRecent`)
        }
        const cloned = newer.filter((s) => s.clones.length)
        if (cloned.length) {
          throw new ConflictError(`cannot rollback to '${target.name}': newer snapshots have clones: ${cloned.map((s) => `${s.name} -> ${s.clones.join(', ')}`).join('; ')}`)
        }
        doomed.push(...newer)
      }
      // One `zfs holds` for every snapshot the rollbacks would destroy, in every dataset.
      const held = doomed.length ? await zfs.holds(doomed.map((s) => s.name), {}, { signal }) : []
      if (held.length) {
        throw new ConflictError(`cannot rollback to '${snap.name}': newer snapshots are held: ${held.map((h) => `${h.snapshot} (hold ${h.tag})`).join(', ')}`)
      }
      signal?.throwIfAborted()
      for (const target of targets) await zfs.rollback(target.name, { destroyMoreRecent: p.destroyMoreRecent })
      return { snapshots: targets.map(snapshotWire) }
    },
  }
}
