/**
 * A client that goes away cancels its call's zfs work, through the agent's real method table on
 * real ZFS: a wrapper first on PATH holds back one zfs command; the client hangs up while it waits.
 */
import t, { type Test as Tap } from 'tap'
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'node:http'
import { spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { haveZfs, sh } from '../helpers/zpool.js'
import { startAgent } from '../helpers/agent.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

/** How long the held command waits before it becomes the real zfs. */
const HOLD_S = 5
const REAL_ZFS = sh('sh', ['-c', 'command -v zfs']).trim()
const dir = mkdtempSync(join(tmpdir(), 'rpc-cancel-'))
const MATCH = join(dir, 'match')
const PIDS = join(dir, 'pids')
writeFileSync(PIDS, '')
writeFileSync(MATCH, '')
// Held: a command whose subcommand is in MATCH and whose argv names something "slow".
writeFileSync(join(dir, 'zfs'), `#!/bin/sh
if [ "$1" = "$(cat ${MATCH})" ]; then
  case "$*" in *slow*) echo $$ >> ${PIDS}; sleep ${HOLD_S} </dev/null >/dev/null 2>&1 ;; esac
fi
exec ${REAL_ZFS} "$@"
`)
chmodSync(join(dir, 'zfs'), 0o755)
process.env.PATH = `${dir}:${process.env.PATH ?? ''}`

const zfs = (args: string[]) => sh(REAL_ZFS, args)
const exists = (name: string) => spawnSync(REAL_ZFS, ['list', '-H', '-t', 'all', name], { stdio: 'ignore' }).status === 0
const pids = () => readFileSync(PIDS, 'utf8').split('\n').filter(Boolean).map(Number)
const alive = (pid: number) => { try { process.kill(pid, 0); return true } catch { return false } }

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** POST `body` and hang up as soon as the held zfs command has started; its pid. */
async function hangUpDuringZfs(t: Tap, url: string, body: string): Promise<number> {
  const before = pids().length
  const req = request(`${url}/_mistify_RPC_`, { method: 'POST', headers: { 'Content-Type': 'application/json' } })
  req.on('error', () => {}) // we are the ones hanging up
  let answered = false
  req.on('response', () => { answered = true })
  req.end(body)
  await until('the held zfs command', () => pids().length > before, 10_000)
  req.destroy()
  t.notOk(answered, 'no answer had come')
  return pids()[before]!
}

t.test('a client gone: its zfs child is killed, and what it would have done is not done', async (t) => {
  const a = await startAgent(t)
  const g = `${a.pool}/guests/slowguest`
  zfs(['create', '-p', '-s', '-V', '16M', g])

  await t.test('control: a held call whose client waits completes', async (t) => {
    writeFileSync(MATCH, 'snapshot')
    const started = Date.now()
    const r = await a.call('v1', 'CreateSnapshot', { id: 'guests/slowguest', dest: 'slow0' })
    t.same(r.result, { snapshots: [{ id: `${g}@slow0`, size: 0 }] })
    t.ok(Date.now() - started >= HOLD_S * 1000, 'it was held')
    t.ok(exists(`${g}@slow0`))
  })

  await t.test('1.0 CreateSnapshot: zfs snapshot killed', async (t) => {
    writeFileSync(MATCH, 'snapshot')
    const started = Date.now()
    const pid = await hangUpDuringZfs(t, a.url, JSON.stringify({ method: 'ImageStore.CreateSnapshot', params: [{ id: 'guests/slowguest', dest: 'slow1' }], id: 1 }))
    await until('the zfs child to be gone', () => !alive(pid), 3000)
    t.ok(Date.now() - started < HOLD_S * 1000, 'killed while still held')
    await sleep(HOLD_S * 1000 + 1000 - (Date.now() - started))
    t.notOk(exists(`${g}@slow1`), 'no snapshot: the real zfs never ran')
  })

  await t.test('2.0 DeleteDataset: zfs destroy killed', async (t) => {
    writeFileSync(MATCH, 'destroy')
    const started = Date.now()
    const pid = await hangUpDuringZfs(t, a.url, JSON.stringify({ jsonrpc: '2.0', method: 'DeleteDataset', params: { id: 'guests/slowguest' }, id: 2 }))
    await until('the zfs child to be gone', () => !alive(pid), 3000)
    t.ok(Date.now() - started < HOLD_S * 1000, 'killed while still held')
    await sleep(HOLD_S * 1000 + 1000 - (Date.now() - started))
    t.ok(exists(g), 'the volume is still there: the real zfs never ran')
  })

  writeFileSync(MATCH, '')
  const after = await a.call('v2', 'ListSnapshots', { id: 'guests/slowguest' })
  t.same(after.result, { snapshots: [{ id: `${g}@slow0`, size: 0 }] }, 'the agent serves on')
})
