/** The first record (DRR_BEGIN) of a zfs send stream: what the agent and the image service both need to know of a stream before keeping it. */

/** DMU_BACKUP_MAGIC (0x2F5bacbac) in a DRR_BEGIN record, at offset 8, either byte order. */
const ZFS_MAGIC_LE = Buffer.from([0xac, 0xcb, 0xba, 0xf5, 0x02, 0, 0, 0])
const ZFS_MAGIC_BE = Buffer.from([0, 0, 0, 0x02, 0xf5, 0xba, 0xcb, 0xac])

/** sizeof(dmu_replay_record_t): the BEGIN record ends with its 256-byte toname. */
export const DRR_BEGIN_BYTES = 312
const DMU_COMPOUNDSTREAM = 2n
const DRR_FLAG_CLONE = 1

export interface StreamHeader {
  /** A replication/properties package (`zfs send -R` or `-p`): more streams and an nvlist inside. */
  readonly compound: boolean
  /** DRR_FLAG_CLONE: receive makes a clone of the snapshot whose guid is `fromguid`, wherever it is in the pool. */
  readonly clone: boolean
  /** Non-zero for an incremental stream: its base, found by guid. */
  readonly fromguid: bigint
  readonly toguid: bigint
}

/** Whether the first bytes are a zfs send stream's BEGIN record (record type 0 reads the same in either byte order). */
export function isZfsStream(head: Buffer): boolean {
  if (head.length < 16 || head.readUInt32LE(0) !== 0) return false
  const magic = head.subarray(8, 16)
  return magic.equals(ZFS_MAGIC_LE) || magic.equals(ZFS_MAGIC_BE)
}

/** The BEGIN record of a stream, or undefined when `head` is not a zfs send stream or is shorter than the record. */
export function readStreamHeader(head: Buffer): StreamHeader | undefined {
  if (!isZfsStream(head) || head.length < DRR_BEGIN_BYTES) return undefined
  // A stream is written in its sender's byte order; the magic tells which.
  const le = head.subarray(8, 16).equals(ZFS_MAGIC_LE)
  const u64 = (at: number) => (le ? head.readBigUInt64LE(at) : head.readBigUInt64BE(at))
  const flags = le ? head.readUInt32LE(36) : head.readUInt32BE(36)
  return { compound: (u64(16) & 3n) === DMU_COMPOUNDSTREAM, clone: (flags & DRR_FLAG_CLONE) !== 0, toguid: u64(40), fromguid: u64(48) }
}
