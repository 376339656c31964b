/** Read zfs output recorded from the real zfs in the VM (scripts/record-zfs-fixtures.sh). */
import { readFileSync, readdirSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

// Compiled tests live in dist/test/helpers; fixtures stay in the source tree.
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures', 'zfs')

/** Every recorded zfs version. */
export const zfsVersions = readdirSync(root).sort()

export interface Recorded {
  readonly stdout: string
  readonly stderr: string
  readonly bin: string
  readonly args: string[]
  readonly exitCode: number
}

export function recorded(version: string, name: string): Recorded {
  const base = join(root, version, name)
  const meta = JSON.parse(readFileSync(`${base}.json`, 'utf8')) as { bin: string; args: string[]; exitCode: number }
  return { ...meta, stdout: readFileSync(`${base}.stdout`, 'utf8'), stderr: readFileSync(`${base}.stderr`, 'utf8') }
}
