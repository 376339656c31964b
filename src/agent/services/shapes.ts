/**
 * The response structs of mistify-agent's rpc package, in their JSON form:
 * key order as Go's struct order, and Go's omitempty where the original had it.
 * Sizes on the wire are MiB, floored.
 */
import { zvolPath } from '../../zfs/index.js'
import type { Dataset } from '../../zfs/index.js'
import type { ImageRecord } from '../catalog.js'
import type { Disk, Guest, Nic } from '../rpc/requests.js'

export const MiB = 1024 * 1024
export const toMiB = (bytes: number | undefined): number => Math.floor((bytes ?? 0) / MiB)

/**
 * The rpc.Image struct, plus `progress` and `error` while a fetch runs or
 * after it failed, and `format` once imported: the Go client ignores keys
 * it does not know.
 */
export interface WireImage {
  id: string; type: string; volume?: string; snapshot?: string; size: number; status?: string
  progress?: { bytes: number; total: number | null }; error?: string; format?: string
}
export interface WireVolume { id: string; size: number; device: string }
export interface WireSnapshot { id: string; size: number }

export function imageWire(r: ImageRecord): WireImage {
  const out: WireImage = { id: r.id, type: r.type ?? '' } as WireImage
  if (r.volume) out.volume = r.volume
  if (r.snapshot) out.snapshot = r.snapshot
  out.size = r.size
  if (r.status) out.status = r.status
  if (r.progress && r.status === 'downloading') out.progress = { bytes: r.progress.bytes, total: r.progress.total }
  if (r.error && r.status === 'error') out.error = r.error
  if (r.format && r.status === 'complete') out.format = r.format
  return out
}

export function volumeWire(d: Dataset): WireVolume {
  return { id: d.name, size: toMiB(d.volsize), device: zvolPath(d.name) }
}

export function snapshotWire(d: Dataset): WireSnapshot {
  return { id: d.name, size: toMiB(d.written) }
}

export type { Disk, Guest, Nic }

function nicWire(n: Nic): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  if (n.name) o.name = n.name
  o.network = n.network
  o.model = n.model
  if (n.mac) o.mac = n.mac
  o.address = n.address
  o.netmask = n.netmask
  o.gateway = n.gateway
  if (n.device) o.device = n.device
  o.vlans = n.vlans && n.vlans.length ? n.vlans : null
  return o
}

function diskWire(d: Disk): Disk {
  return { bus: d.bus, device: d.device, size: d.size, volume: d.volume, image: d.image, source: d.source }
}

/** The guest as the original echoed it: decoded into Go structs and encoded again. */
export function guestWire(g: Guest): Record<string, unknown> {
  const o: Record<string, unknown> = { id: g.id }
  if (g.type) o.type = g.type
  if (g.image) o.image = g.image
  if (g.nics?.length) o.nics = g.nics.map(nicWire)
  if (g.disks?.length) o.disks = g.disks.map(diskWire)
  if (g.state) o.state = g.state
  if (g.memory) o.memory = g.memory
  if (g.cpu) o.cpu = g.cpu
  if (g.vnc) o.vnc = g.vnc
  if (g.metadata && Object.keys(g.metadata).length) o.metadata = g.metadata
  return o
}
