/**
 * A throw-away file-backed pool for integration tests (real ZFS, root, inside
 * the VM): sparse files, a unique name, destroyed in teardown even on failure.
 */
import { randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestPool {
  readonly name: string
  readonly dir: string
}

interface Teardown { teardown(fn: () => void | Promise<void>): void }

/** True when real ZFS may be used: inside the test VM (MISTIFY_TEST_ZPOOL=1) as root. */
export const haveZfs = process.env.MISTIFY_TEST_ZPOOL === '1' && process.getuid?.() === 0

export function sh(cmd: string, args: readonly string[], input?: Buffer): string {
  return execFileSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, ...(input ? { input } : {}) })
}

export function createFilePool(t: Teardown, o: { files?: number; sizeMiB?: number; prefix?: string } = {}): TestPool {
  const name = `${o.prefix ?? 'mtest'}${randomBytes(4).toString('hex')}`
  const dir = mkdtempSync(join(tmpdir(), `${name}-`))
  const files = Array.from({ length: o.files ?? 1 }, (_, i) => {
    const f = join(dir, `disk${i}`)
    writeFileSync(f, '')
    truncateSync(f, (o.sizeMiB ?? 512) * 1024 * 1024)
    return f
  })
  sh('zpool', ['create', '-f', '-O', 'mountpoint=none', '-o', 'ashift=12', name, ...files])
  t.teardown(() => {
    try { sh('zpool', ['destroy', '-f', name]) } catch { /* already gone */ }
    rmSync(dir, { recursive: true, force: true })
  })
  return { name, dir }
}

/** Wait for udev to create /dev/zvol nodes. */
export function settle(): void {
  sh('udevadm', ['settle', '--timeout=30'])
}
