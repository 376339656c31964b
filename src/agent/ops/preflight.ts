/**
 * Start-up checks that need no pool: the zfs/zpool binaries are on PATH and
 * the ZFS kernel module is loaded. createAgent checks the pool itself
 * (imported, healthy) right after. Each problem gets one line naming what is
 * missing and what to do about it.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs'
import { delimiter, join } from 'node:path'

export class PreflightError extends Error {
  override name = 'PreflightError'
  constructor(readonly problems: readonly string[]) {
    super(`preflight failed:\n  - ${problems.join('\n  - ')}`)
  }
}

export interface PreflightOptions {
  /** PATH to search; default process.env.PATH. */
  readonly path?: string | undefined
  /** Default /dev/zfs. */
  readonly devZfs?: string
  /** Default /sys/module/zfs. */
  readonly sysModule?: string
}

/** The first executable regular file called `name` in `path`, or undefined. */
export function which(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue
    const f = join(dir, name)
    try {
      if (!statSync(f).isFile()) continue
      accessSync(f, constants.X_OK)
      return f
    } catch { /* not here */ }
  }
  return undefined
}

/** Every problem found (empty when all is well). */
export function preflightProblems(o: PreflightOptions = {}): string[] {
  const path = o.path ?? process.env.PATH ?? ''
  const problems: string[] = []
  const bins = ['zfs', 'zpool'].filter((bin) => !which(bin, path))
  if (bins.length) problems.push(`${bins.join(' and ')} not found on PATH (${path || 'empty'}); install zfsutils-linux or add its directory to PATH`)
  const dev = o.devZfs ?? '/dev/zfs'
  const mod = o.sysModule ?? '/sys/module/zfs'
  const missing = [dev, mod].filter((f) => !existsSync(f))
  if (missing.length) problems.push(`the ZFS kernel module is not loaded (${missing.join(' and ')} missing); run \`modprobe zfs\``)
  return problems
}

/** Throw PreflightError listing every problem. */
export function preflight(o: PreflightOptions = {}): void {
  const problems = preflightProblems(o)
  if (problems.length) throw new PreflightError(problems)
}
