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

/** What a zfs send stream's first record (DRR_BEGIN) says about it. */
export interface StreamHeader {
  /** A replication/properties package (`zfs send -R` or `-p`): more streams and an nvlist inside. */
  readonly compound: boolean
  /** DRR_FLAG_CLONE: receive makes a clone of the snapshot whose guid is `fromguid`, wherever it is in the pool. */
  readonly clone: boolean
  /** Non-zero for an incremental stream: its base, found by guid. */
  readonly fromguid: bigint
  readonly toguid: bigint
}

/** sizeof(dmu_replay_record_t): the BEGIN record ends with its 256-byte toname. */
const DRR_BEGIN_BYTES = 312
const DMU_COMPOUNDSTREAM = 2n
const DRR_FLAG_CLONE = 1

/** The BEGIN record of a zfs send stream (`head` must be sniffed as 'zfs'). */
export function zfsStreamHeader(head: Buffer): StreamHeader {
  if (head.length < DRR_BEGIN_BYTES) throw new UpstreamError(`zfs send stream: truncated in its first record (${head.length} bytes)`)
  // A stream is written in its sender's byte order; the magic tells which.
  const le = head.subarray(8, 16).equals(ZFS_MAGIC_LE)
  const u64 = (at: number) => (le ? head.readBigUInt64LE(at) : head.readBigUInt64BE(at))
  const flags = le ? head.readUInt32LE(36) : head.readUInt32BE(36)
  return { compound: (u64(16) & 3n) === DMU_COMPOUNDSTREAM, clone: (flags & DRR_FLAG_CLONE) !== 0, toguid: u64(40), fromguid: u64(48) }
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
