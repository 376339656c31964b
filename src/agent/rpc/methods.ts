/**
 * The 17 ImageStore methods: each one's request struct (as the Go client
 * sends it) and the service call behind it.
 */
import type { MethodTable, RpcMethod } from './method.js'
import { array, bool, int, map, str, struct, uint64, type StructSpec } from './schema.js'
import type { Services } from '../services/index.js'
import type { ImageRequest } from '../services/images.js'
import type { SnapshotRequest } from '../services/snapshots.js'
import type { VolumeRequest } from '../services/volumes.js'
import type { GuestRequest } from '../services/disks.js'

/** rpc.ImageRequest, plus ours: `async` (answer at once with the pending record), `format`, and `sha256` (required with `source`). */
export const IMAGE_REQUEST: StructSpec = { id: str, type: str, dest: str, source: str, async: bool, format: str, sha256: str }
export const SNAPSHOT_REQUEST: StructSpec = { id: str, dest: str, recursive: bool, destroyMoreRecent: bool }
/** The download route's body: the agent's SnapshotRequest plus our replication fields. */
export const DOWNLOAD_REQUEST: StructSpec = {
  ...SNAPSHOT_REQUEST, from: str, intermediates: bool, token: str, compressed: bool, raw: bool,
}
export const VOLUME_REQUEST: StructSpec = { id: str, size: uint64 }
export const DISK: StructSpec = { bus: str, device: str, size: uint64, volume: str, image: str, source: str }
export const NIC: StructSpec = {
  name: str, network: str, model: str, mac: str, address: str, netmask: str, gateway: str, device: str, vlans: array(int),
}
export const GUEST: StructSpec = {
  id: str, type: str, image: str, nics: array(struct(NIC)), disks: array(struct(DISK)), state: str,
  memory: uint64, cpu: uint64, vnc: int, metadata: map(str),
}
export const GUEST_REQUEST: StructSpec = { guest: struct(GUEST, true), action: str, args: map(str) }

function method<P>(params: StructSpec, call: (p: P) => Promise<unknown>): RpcMethod {
  return { params, call: (p) => call(p as P) }
}

export function methodTable(s: Services): MethodTable {
  const img = (f: (p: ImageRequest) => Promise<unknown>) => method<ImageRequest>(IMAGE_REQUEST, f)
  const snap = (f: (p: SnapshotRequest) => Promise<unknown>) => method<SnapshotRequest>(SNAPSHOT_REQUEST, f)
  const vol = (f: (p: VolumeRequest) => Promise<unknown>) => method<VolumeRequest>(VOLUME_REQUEST, f)
  const guest = (f: (p: GuestRequest) => Promise<unknown>) => method<GuestRequest>(GUEST_REQUEST, f)
  return new Map<string, RpcMethod>([
    ['ListImages', img(() => s.images.listImages())],
    ['GetImage', img((p) => s.images.getImage(p))],
    ['RequestImage', img((p) => s.images.requestImage(p))],
    ['DeleteImage', img((p) => s.images.deleteImage(p))],
    ['CloneImage', img((p) => s.images.cloneImage(p))],
    ['ListSnapshots', snap((p) => s.snapshots.listSnapshots(p))],
    ['GetSnapshot', snap((p) => s.snapshots.getSnapshotRpc(p))],
    ['CreateSnapshot', snap((p) => s.snapshots.createSnapshot(p))],
    ['DeleteSnapshot', snap((p) => s.snapshots.deleteSnapshot(p))],
    ['RollbackSnapshot', snap((p) => s.snapshots.rollbackSnapshot(p))],
    ['CreateVolume', vol((p) => s.volumes.createVolume(p))],
    ['GetVolume', vol((p) => s.volumes.getVolume(p))],
    ['ListVolumes', vol(() => s.volumes.listVolumes())],
    ['DeleteDataset', vol((p) => s.volumes.deleteDataset(p))],
    ['VerifyDisks', guest((p) => s.disks.verifyDisks(p))],
    ['CreateGuestDisks', guest((p) => s.disks.createGuestDisks(p))],
    ['DeleteGuestsDisks', guest((p) => s.disks.deleteGuestsDisks(p))],
  ])
}
