/**
 * Free space of a mounted ZFS filesystem from the kernel (statfs), without
 * running zfs: under QEMU a `zfs list` costs a third of a clone, and
 * CloneImage and CreateGuestDisks check space before each.
 */
import { readFile, statfs } from 'node:fs/promises'

/** mountinfo escapes space, tab, newline and backslash as octal (\040 …). */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))

/** Where `dataset` is mounted as zfs, from /proc/self/mountinfo text; undefined when it is not. */
export function zfsMountpoint(mountinfo: string, dataset: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ')
    const dash = fields.indexOf('-', 6)
    if (dash < 0 || fields[dash + 1] !== 'zfs' || unescape(fields[dash + 2] ?? '') !== dataset) continue
    return unescape(fields[4]!)
  }
  return undefined
}

/**
 * Bytes `dataset` may still take, as its `available` property says (quotas
 * and reservations above it applied; ZFS's statfs reports the same figure,
 * rounded down to the record size), or undefined when it is not mounted here.
 */
export async function mountedAvailable(dataset: string, mountinfoPath = '/proc/self/mountinfo'): Promise<number | undefined> {
  const where = zfsMountpoint(await readFile(mountinfoPath, 'utf8').catch(() => ''), dataset)
  if (where === undefined) return undefined
  try {
    const s = await statfs(where, { bigint: true })
    return Number(s.bavail * s.bsize)
  } catch {
    return undefined // unmounted in between: ask zfs
  }
}
