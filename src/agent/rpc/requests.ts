/**
 * The request structs of the ImageStore methods, as the Go client sends them:
 * each spec is the decoder's input, and its `Infer` the services' param type.
 */
import { array, bool, int, map, str, struct, uint64, type Infer } from './schema.js'
import { decodeParams } from './gorilla/decode.js'
import { parseJson } from './gorilla/json.js'

/** rpc.ImageRequest, plus ours: `async` (answer at once with the pending record), `format`, and `sha256` (required with `source`). */
export const IMAGE_REQUEST = { id: str, type: str, dest: str, source: str, async: bool, format: str, sha256: str } as const
export const SNAPSHOT_REQUEST = { id: str, dest: str, recursive: bool, destroyMoreRecent: bool } as const
/**
 * The download route's body: the agent's SnapshotRequest plus our replication
 * fields: `from` (incremental base: '@snap', 'guests/x@snap' or a full name;
 * same dataset or its origin), `intermediates` (-I: the snapshots between),
 * `token` (receive_resume_token of an interrupted `zfs receive -s`),
 * `compressed`, `raw`, and `from_guid` (the base by its guid instead of
 * `from`: a snapshot of the same dataset or its origin; publish asks by the
 * guid an earlier version was published with).
 */
export const DOWNLOAD_REQUEST = {
  ...SNAPSHOT_REQUEST, from: str, from_guid: str, intermediates: bool, token: str, compressed: bool, raw: bool,
} as const
export const VOLUME_REQUEST = { id: str, size: uint64 } as const
export const DISK = { bus: str, device: str, size: uint64, volume: str, image: str, source: str } as const
export const NIC = {
  name: str, network: str, model: str, mac: str, address: str, netmask: str, gateway: str, device: str, vlans: array(int),
} as const
export const GUEST = {
  id: str, type: str, image: str, nics: array(struct(NIC)), disks: array(struct(DISK)), state: str,
  memory: uint64, cpu: uint64, vnc: int, metadata: map(str),
} as const
export const GUEST_REQUEST = { guest: struct(GUEST, true), action: str, args: map(str) } as const

/** Our three extensions may be left out by callers in process; the decoder always fills them. */
export type ImageRequest = Omit<Infer<typeof IMAGE_REQUEST>, Extensions> & Partial<Pick<Infer<typeof IMAGE_REQUEST>, Extensions>>
type Extensions = 'async' | 'format' | 'sha256'
export type SnapshotRequest = Infer<typeof SNAPSHOT_REQUEST>
/** What a download uses of its body (the GET form has only these). */
export type DownloadRequest = Omit<Infer<typeof DOWNLOAD_REQUEST>, 'dest' | 'destroyMoreRecent' | 'from_guid'> & { from_guid?: string }
export type VolumeRequest = Infer<typeof VOLUME_REQUEST>
export type GuestRequest = Infer<typeof GUEST_REQUEST>
export type Guest = Infer<typeof GUEST>
export type Disk = Infer<typeof DISK>
export type Nic = Infer<typeof NIC>

/** The download route's JSON body, read the Go way (the first value, keys folded, Go's type errors). */
export function decodeDownloadRequest(body: string): DownloadRequest {
  return decodeParams(parseJson(body), DOWNLOAD_REQUEST)
}
