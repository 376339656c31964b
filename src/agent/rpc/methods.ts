/** The 17 ImageStore methods: each one's request struct and the service call behind it. */
import { defineMethod, type MethodTable, type RpcMethod } from './method.js'
import { GUEST_REQUEST, IMAGE_REQUEST, SNAPSHOT_REQUEST, VOLUME_REQUEST } from './requests.js'
import type { Services } from '../services/index.js'
import { reuseEncoding } from './gorilla/codec.js'

export function methodTable(s: Services): MethodTable {
  const { images, snapshots, volumes, disks } = s
  return new Map<string, RpcMethod>([
    // The same answer object until the catalog (or the record) changes: its wire bytes are made once.
    ['ListImages', defineMethod(IMAGE_REQUEST, async () => reuseEncoding(await images.listImages()))],
    ['GetImage', defineMethod(IMAGE_REQUEST, async (p) => reuseEncoding(await images.getImage(p)))],
    // The fetch is a job that other callers may join: it outlives the call that started it.
    ['RequestImage', defineMethod(IMAGE_REQUEST, (p) => images.requestImage(p))],
    ['DeleteImage', defineMethod(IMAGE_REQUEST, (p, c) => images.deleteImage(p, c.signal))],
    ['CloneImage', defineMethod(IMAGE_REQUEST, (p, c) => images.cloneImage(p, c.signal))],
    ['ListSnapshots', defineMethod(SNAPSHOT_REQUEST, (p, c) => snapshots.listSnapshots(p, c.signal))],
    ['GetSnapshot', defineMethod(SNAPSHOT_REQUEST, (p, c) => snapshots.getSnapshotRpc(p, c.signal))],
    ['CreateSnapshot', defineMethod(SNAPSHOT_REQUEST, (p, c) => snapshots.createSnapshot(p, c.signal))],
    ['DeleteSnapshot', defineMethod(SNAPSHOT_REQUEST, (p, c) => snapshots.deleteSnapshot(p, c.signal))],
    ['RollbackSnapshot', defineMethod(SNAPSHOT_REQUEST, (p, c) => snapshots.rollbackSnapshot(p, c.signal))],
    ['CreateVolume', defineMethod(VOLUME_REQUEST, (p, c) => volumes.createVolume(p, c.signal))],
    ['GetVolume', defineMethod(VOLUME_REQUEST, (p, c) => volumes.getVolume(p, c.signal))],
    ['ListVolumes', defineMethod(VOLUME_REQUEST, (_p, c) => volumes.listVolumes(c.signal))],
    ['DeleteDataset', defineMethod(VOLUME_REQUEST, (p, c) => volumes.deleteDataset(p, c.signal))],
    ['VerifyDisks', defineMethod(GUEST_REQUEST, (p, c) => disks.verifyDisks(p, c.signal))],
    ['CreateGuestDisks', defineMethod(GUEST_REQUEST, (p, c) => disks.createGuestDisks(p, c.signal))],
    ['DeleteGuestsDisks', defineMethod(GUEST_REQUEST, (p, c) => disks.deleteGuestsDisks(p, c.signal))],
  ])
}
