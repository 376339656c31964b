/**
 * What an image's bytes are: a zfs send stream (the original's only kind), a
 * raw disk image, or qcow2. Told apart by their first bytes, after gunzip;
 * a caller may also declare the format (needed for a raw image without a
 * partition table, which has no signature to recognise).
 */
import { InvalidParamsError, UpstreamError } from '../errors.js'
import { isZfsStream, readStreamHeader, type StreamHeader } from '../../zfs/stream-header.js'

export const PAYLOAD_FORMATS = ['zfs', 'raw', 'qcow2'] as const
export type PayloadFormat = (typeof PAYLOAD_FORMATS)[number]

/** Enough bytes to tell every format apart (the MBR signature ends at 512). */
export const SNIFF_BYTES = 512

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]) // "QFI\xfb"

export type { StreamHeader }

/** The BEGIN record of a zfs send stream (`head` must be sniffed as 'zfs'). */
export function zfsStreamHeader(head: Buffer): StreamHeader {
  const h = readStreamHeader(head)
  if (!h) throw new UpstreamError(`zfs send stream: truncated in its first record (${head.length} bytes)`)
  return h
}

/**
 * Only a plain full stream of one snapshot may become an image. ZFS finds an
 * incremental's base and a clone's origin by guid anywhere in the pool, so
 * either would tie the image to a dataset outside the agent's trees (which
 * could then never be destroyed); a compound stream carries properties and
 * further streams that could be either.
 */
export function assertPlainStream(id: string, h: StreamHeader): void {
  if (h.compound) throw new UpstreamError(`image ${id}: a replication or properties stream (zfs send -R/-p) is not accepted; send the one snapshot alone`)
  if (h.clone) throw new UpstreamError(`image ${id}: a clone stream is not accepted (its origin is found by guid, anywhere in the pool)`)
  if (h.fromguid !== 0n) throw new UpstreamError(`image ${id}: an incremental stream is not accepted (from guid ${h.fromguid}); send a full stream`)
}

/**
 * An increment may become an image only as a clone of the one in-tree
 * snapshot it was declared to start from: its from-guid must be that
 * snapshot's (read from zfs, not from any record), checked before a byte is
 * received; `zfs receive -o origin=` then ties it to that snapshot alone.
 * A clone stream from that same snapshot is the same thing, so it passes.
 */
export function assertIncrementFrom(id: string, h: StreamHeader, origin: { snapshot: string; guid: bigint }): void {
  if (h.compound) throw new UpstreamError(`image ${id}: a replication or properties stream (zfs send -R/-p) is not accepted as an increment; send zfs send -i alone`)
  if (h.fromguid === 0n) throw new UpstreamError(`image ${id}: the increment is a full stream, not one from ${origin.snapshot}`)
  if (h.fromguid !== origin.guid) {
    throw new UpstreamError(`image ${id}: the increment starts from guid ${h.fromguid}, not from ${origin.snapshot} (guid ${origin.guid}); refused before receiving`)
  }
}

export function isGzip(head: Buffer): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b
}

/** The format the first bytes show, or undefined when they show none. */
export function sniffFormat(head: Buffer): PayloadFormat | undefined {
  if (isZfsStream(head)) return 'zfs'
  if (head.length >= 4 && head.subarray(0, 4).equals(QCOW2_MAGIC)) return 'qcow2'
  // MBR boot signature: MBR disks and GPT disks (whose protective MBR has it too).
  if (head.length >= 512 && head[510] === 0x55 && head[511] === 0xaa) return 'raw'
  return undefined
}

/** A declared format from a request: '' means "tell by the bytes". */
export function parseDeclaredFormat(v: string | undefined): PayloadFormat | undefined {
  if (v === undefined || v === '') return undefined
  if ((PAYLOAD_FORMATS as readonly string[]).includes(v)) return v as PayloadFormat
  throw new InvalidParamsError(`format: one of ${PAYLOAD_FORMATS.join(', ')} (or empty to detect), got ${JSON.stringify(v)}`)
}

/**
 * The format to import as. A declaration must not contradict the bytes: a
 * zfs stream or qcow2 is never written out as a raw disk, and `raw` is the
 * one format that may be declared for bytes with no signature at all.
 */
export function decideFormat(id: string, head: Buffer, declared: PayloadFormat | undefined): PayloadFormat {
  const seen = sniffFormat(head)
  if (declared === undefined) {
    if (seen) return seen
    throw new UpstreamError(`image ${id}: not a zfs send stream, qcow2 or raw disk image (no signature in the first ${SNIFF_BYTES} bytes; declare format "raw" to import it as a raw disk image)`)
  }
  const ok = declared === 'raw' ? seen === undefined || seen === 'raw' : seen === declared
  if (!ok) throw new UpstreamError(`image ${id}: declared ${declared}, but the bytes are ${seen ?? `not ${declared}`}`)
  return declared
}
