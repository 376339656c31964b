/**
 * A throw-away file-backed pool for integration tests (real ZFS, root, inside
 * the VM): sparse files, a unique name, destroyed in teardown even on failure.
 */
import { randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
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

/**
 * Run a bash pipeline without blocking: an agent under test may be serving
 * from this very process, so a sync spawn would deadlock it.
 */
export async function bash(script: string): Promise<{ status: number; stdout: string; stderr: string }> {
  const { execFile } = await import('node:child_process')
  return new Promise((resolve) => {
    execFile('bash', ['-o', 'pipefail', '-c', script], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr })
    })
  })
}

/** sha256 of a file or device, streamed. */
export async function sha256Of(path: string): Promise<string> {
  const { createHash } = await import('node:crypto')
  const { createReadStream } = await import('node:fs')
  const { pipeline } = await import('node:stream/promises')
  const h = createHash('sha256')
  await pipeline(createReadStream(path), h)
  return h.digest('hex')
}

/** Write `mib` MiB of random bytes at `offsetMiB` into a device. */
export function fillRandom(dev: string, mib: number, offsetMiB = 0): void {
  const fd = openSync(dev, 'r+')
  try { writeSync(fd, randomBytes(mib << 20), 0, mib << 20, offsetMiB << 20); fsyncSync(fd) } finally { closeSync(fd) }
}

/** A sparse zvol with `fillMiB` of random data and one snapshot `@s`. */
export function volumeWithSnapshot(name: string, o: { sizeMiB: number; fillMiB: number; snapshot?: string }): string {
  sh('zfs', ['create', '-p', '-s', '-V', `${o.sizeMiB}M`, name])
  settle()
  fillRandom(`/dev/zvol/${name}`, o.fillMiB)
  const snap = `${name}@${o.snapshot ?? 's'}`
  sh('zfs', ['snapshot', snap])
  return snap
}
