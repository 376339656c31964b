/**
 * The mistify-image CLI (compiled) against a real agent on a real pool, with
 * a token and metrics: fetch, clone, snapshot, download to a file that
 * `zfs receive` accepts; /healthz and /metrics reflect what happened.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { statSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { bash, haveZfs, sh } from '../helpers/zpool.js'
import { startAgent, IMAGE_ID } from '../helpers/agent.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const CLI = join(dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js')
const TOKEN = 'integration-token-1'

function cli(url: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, '--url', url, ...args], { env: { PATH: process.env.PATH ?? '', MISTIFY_TOKEN: TOKEN } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 99) : 0, stdout, stderr })
    })
  })
}

t.test('CLI against a real agent', async (t) => {
  // Token and metrics as the real program has them: from the configuration, at construction.
  const a = await startAgent(t, { config: { token: TOKEN } })

  const noToken = await fetch(`${a.url}/_mistify_RPC_`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })
  t.equal(noToken.status, 401)
  const health = await fetch(`${a.url}/healthz`)
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok', pool: { name: a.pool, health: 'ONLINE' } })

  const fetched = await cli(a.url, ['--json', 'images', 'fetch', IMAGE_ID])
  t.equal(fetched.code, 0, fetched.stderr)
  t.match(JSON.parse(fetched.stdout), { images: [{ id: IMAGE_ID, status: 'complete', snapshot: new RegExp(`^${a.pool}/images/${IMAGE_ID}@`) }] })

  const cloned = await cli(a.url, ['clone', IMAGE_ID, 'guests/g1/disk-0'])
  t.equal(cloned.code, 0, cloned.stderr)
  t.match(cloned.stdout, new RegExp(`${a.pool}/guests/g1/disk-0\\s+\\d+\\s+/dev/zvol/${a.pool}/guests/g1/disk-0`))

  const snap = await cli(a.url, ['snapshot', 'create', 'guests/g1/disk-0', 's1'])
  t.equal(snap.code, 0, snap.stderr)
  t.match(snap.stdout, `${a.pool}/guests/g1/disk-0@s1`)
  const listed = await cli(a.url, ['--json', 'snapshot', 'list', 'guests/g1'])
  t.match(JSON.parse(listed.stdout), { snapshots: [{ id: `${a.pool}/guests/g1/disk-0@s1` }] })

  const file = join(t.testdir(), 'disk0.zfs')
  const dl = await cli(a.url, ['download', 'guests/g1/disk-0@s1', '-o', file])
  t.equal(dl.code, 0, dl.stderr)
  const size = statSync(file).size
  t.ok(size > 0)
  t.match(dl.stdout, `${size} bytes written to ${file}`)
  const recv = await bash(`zfs receive ${a.pool}/guests/copy < ${file}`)
  t.equal(recv.status, 0, recv.stderr)
  t.match(sh('zfs', ['list', '-H', '-t', 'snapshot', '-o', 'name', `${a.pool}/guests/copy`]), `${a.pool}/guests/copy@s1`)

  const bad = await cli(a.url, ['images', 'show', 'no-such-image'])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /not found/)

  const m = await (await fetch(`${a.url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } })).text()
  t.match(m, /mistify_rpc_requests_total\{method="RequestImage",outcome="ok"\} 1/)
  t.match(m, /mistify_rpc_requests_total\{method="CloneImage",outcome="ok"\} 1/)
  t.match(m, /mistify_rpc_requests_total\{method="GetImage",outcome="not_found"\} 1/)
  t.match(m, new RegExp(`mistify_download_bytes_total ${size}\\b`))
})
