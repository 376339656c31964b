/**
 * What an image's bytes are: a zfs send stream (the original's only kind), a
 * raw disk image, or qcow2. Told apart by their first bytes, after gunzip;
 * a caller may also declare the format (needed for a raw image without a
 * partition table, which has no signature to recognise).
 */
import { InvalidParamsError, UpstreamError } from '../errors.js'

export const PAYLOAD_FORMATS = ['zfs', 'raw', 'qcow2'] as const
export type PayloadFormat = (typeof PAYLOAD_FORMATS)[number]

/** Enough bytes to tell every format apart (the MBR signature ends at 512). */
export const SNIFF_BYTES = 512

/** DMU_BACKUP_MAGIC (0x2F5bacbac) in a DRR_BEGIN record, at offset 8, either byte order. */
const ZFS_MAGIC_LE = Buffer.from([0xac, 0xcb, 0xba, 0xf5, 0x02, 0, 0, 0])
const ZFS_MAGIC_BE = Buffer.from([0, 0, 0, 0x02, 0xf5, 0xba, 0xcb, 0xac])
const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]) // "QFI\xfb"

export function isGzip(head: Buffer): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b
}

/** The format the first bytes show, or undefined when they show none. */
export function sniffFormat(head: Buffer): PayloadFormat | undefined {
  // DRR_BEGIN is record type 0, which reads the same in either byte order.
  if (head.length >= 16 && head.readUInt32LE(0) === 0) {
    const magic = head.subarray(8, 16)
    if (magic.equals(ZFS_MAGIC_LE) || magic.equals(ZFS_MAGIC_BE)) return 'zfs'
  }
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
