/**
 * A real etcd cluster for the fleet tests: the one a runner started
 * (ETCD_ENDPOINTS, and ETCD_DIR for fault tests), or one started here with
 * scripts/fleet/etcd.sh and torn down (kill -9, rm) when the test file ends.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { TestContext } from './image-service.js'

const run = promisify(execFile)
export const ETCD_SCRIPT = fileURLToPath(new URL('../../../scripts/fleet/etcd.sh', import.meta.url))

export interface EtcdCluster {
  endpoints: string[]
  /** The script's state directory (pid files); undefined when the runner gave only ETCD_ENDPOINTS. */
  dir: string | undefined
  /** pid of the current leader (fault tests). */
  leaderPid(): Promise<number>
  /** Restart members a test killed, so later tests get the whole cluster again. */
  revive(): Promise<void>
}

export async function etcdCluster(t: TestContext): Promise<EtcdCluster> {
  let dir = process.env.ETCD_DIR
  let endpoints = process.env.ETCD_ENDPOINTS
  if (!endpoints) {
    dir = join(mkdtempSync(join(tmpdir(), 'mis-etcd-')), 'cluster')
    const up = await run('bash', [ETCD_SCRIPT, 'up', dir])
    endpoints = /ETCD_ENDPOINTS=(\S+)/.exec(up.stdout)?.[1]
    const d = dir
    t.teardown(async () => { await run('bash', [ETCD_SCRIPT, 'down', d]) })
    if (!endpoints) throw new Error(`etcd.sh up printed no endpoints: ${up.stdout}`)
  }
  const stateDir = dir
  return {
    endpoints: endpoints.split(','),
    dir: stateDir,
    async leaderPid() {
      if (!stateDir) throw new Error('ETCD_DIR is not set: cannot find the leader process')
      return Number((await run('bash', [ETCD_SCRIPT, 'leader', stateDir])).stdout.trim())
    },
    async revive() {
      if (stateDir) await run('bash', [ETCD_SCRIPT, 'revive', stateDir])
    },
  }
}
