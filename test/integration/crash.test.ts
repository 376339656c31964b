/**
 * kill -9 of a real agent process at random points of an import, a clone
 * (CloneImage) and a guest-disk creation (CreateGuestDisks with four disks,
 * two clones and two blank volumes), all in flight together, then a restart:
 * nothing half-imported is left that looks usable, ZFS and the metadata agree
 * (records <-> datasets), a clone is there whole or not at all, a guest's
 * disks are some of those asked for (each disk complete; they are made concurrently) that the
 * same request, sent again, completes ("disks that already exist are kept, so
 * the call can be repeated"), and each request succeeds when retried.
 * Rounds: MISTIFY_CRASH_ROUNDS (default 3, about 60 s each in the VM; scripts/reliability.sh runs 20).
 */
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { haveZfs, sh } from '../helpers/zpool.js'
import { startAgent, makeZvolStream, dribble, IMAGE_ID } from '../helpers/agent.js'
import { summary, Tally, waitEmpty, zfsProcesses } from '../helpers/reliability.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const ROUNDS = Number(process.env.MISTIFY_CRASH_ROUNDS ?? 3)

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  return port
}

async function rpc(port: number, method: string, params: unknown): Promise<{ result?: any; error?: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/_mistify_RPC_`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ method: `ImageStore.${method}`, params: [params], id: 1 }),
  })
  const env = await res.json() as { result: unknown; error: string | null }
  return env.error === null ? { result: env.result } : { error: env.error }
}

const exists = (n: string) => spawnSync('zfs', ['list', '-H', '-o', 'name', n], { stdio: 'ignore' }).status === 0
const prop = (n: string, p: string) => sh('zfs', ['get', '-H', '-p', '-o', 'value', p, n]).trim()
/** CreateGuestDisks' disks in each round: image clones and blank 8 MiB volumes, alternating. */
const DISKS = [{ image: IMAGE_ID }, { size: 8 }, { image: IMAGE_ID }, { size: 8 }]

t.test('kill -9 during imports, clones and guest-disk creation; restart, re-request', async (t) => {
  // The in-process harness gives us a pool and an image server; its own agent is not used.
  const a = await startAgent(t)
  await a.agent.close()
  const stream = makeZvolStream(a.pool, { sizeMiB: 16 })
  a.images.routes.set('/images/slow/download', dribble(stream, { chunk: 128 * 1024, delayMs: 25 }))
  const metadataDir = join(t.testdir(), 'proc-db')
  let agent: ChildProcess | undefined
  t.teardown(() => { agent?.kill('SIGKILL') })

  async function start(): Promise<number> {
    const port = await freePort()
    agent = spawn(process.execPath, ['dist/src/agent/main.js', '--zpool', a.pool, '--port', String(port), '--metadata-dir', metadataDir, '--image-service', a.images.url], { stdio: ['ignore', 'ignore', 'pipe'] })
    let log = ''
    agent.stderr!.on('data', (c: Buffer) => { log += c.toString() })
    for (let i = 0; i < 1200; i++) { // up to 2 min: node starts slowly under TCG on a loaded machine
      try { await rpc(port, 'ListImages', {}); return port } catch { await sleep(100) }
      if (agent.exitCode !== null) throw new Error(`agent exited ${agent.exitCode}: ${log}`)
    }
    throw new Error(`agent did not come up: ${log}`)
  }

  function consistent(round: number): void {
    const vols = sh('zfs', ['list', '-H', '-o', 'name', '-t', 'volume,filesystem', '-d', '1', `${a.pool}/images`]).trim().split('\n').slice(1)
    t.same(vols.filter((v) => v.includes('_incoming-')), [], `round ${round}: no temporary left`)
  }

  // The base image clones and guest disks come from; it stays for all rounds.
  const imageSnap = `${a.pool}/images/${IMAGE_ID}@test`
  // One agent start per round: the one restarted after a kill does the checks and is the next round's victim.
  let port = await start()
  t.equal((await rpc(port, 'RequestImage', { id: IMAGE_ID })).result?.images?.[0]?.status, 'complete', 'base image imported')

  /** A clone as CloneImage makes it: a volume whose origin is the image snapshot. */
  function cloneOk(name: string): string | undefined {
    if (prop(name, 'type') !== 'volume') return `${name} is a ${prop(name, 'type')}`
    return prop(name, 'origin') === imageSnap ? undefined : `${name}: origin ${prop(name, 'origin')}`
  }
  /** One of the guest's disks, as asked: a clone of the image, or a blank 8 MiB volume. */
  function diskOk(name: string, i: number): string | undefined {
    if (DISKS[i]!.image) return cloneOk(name)
    if (prop(name, 'type') !== 'volume') return `${name} is a ${prop(name, 'type')}`
    return prop(name, 'volsize') === String(8 << 20) ? undefined : `${name}: volsize ${prop(name, 'volsize')}`
  }
  const seen = new Tally()
  const started = Date.now()

  for (let round = 0; round < ROUNDS; round++) {
    // The guest disks go first, up to 6 s ahead of the import (four disks take ten
    // seconds under emulation); the clone starts at a random point before the kill.
    const cloneDest = `guests/crash-c${round}/disk-0`
    const guest = { id: `crash-g${round}`, disks: DISKS }
    const lost = () => ({ error: 'connection lost' })
    const lead = Math.floor(Math.random() * 6000)
    // Somewhere between "request sent" and "almost done": the stream takes about 3 s.
    const delay = 50 + Math.floor(Math.random() * 2500)
    // The clone (a second or two) is sent up to 3 s before the kill.
    const cloneBefore = Math.floor(Math.random() * Math.min(lead + delay, 3000))
    const victim = port
    const disks = rpc(victim, 'CreateGuestDisks', { guest }).catch(lost)
    const clone = sleep(lead + delay - cloneBefore).then(() => rpc(victim, 'CloneImage', { id: IMAGE_ID, dest: cloneDest })).catch(lost)
    await sleep(lead)
    const inflight = rpc(victim, 'RequestImage', { id: 'slow' }).catch(() => ({ error: 'connection lost' }))
    await sleep(delay)
    agent!.kill('SIGKILL')
    await new Promise((r) => agent!.once('exit', r))
    const answer = await inflight
    const [cloneAnswer, disksAnswer] = await Promise.all([clone, disks])
    t.comment(`round ${round}: killed after ${delay} ms (${answer.error ? 'mid-import' : 'after the import finished'}; clone ${cloneBefore} ms after it was sent, ${cloneAnswer.error ?? 'answered'}; disks ${lead + delay} ms after, ${disksAnswer.error ?? 'answered'})`)

    port = await start()
    const port2 = port
    consistent(round)
    // A killed agent's zfs children (a clone, a create) finish on their own: let them, then look.
    t.same(await waitEmpty(zfsProcesses, 60_000), [], `round ${round}: the dead agent's zfs commands ended`)

    // The clone: whole or absent; sent again it is made, or it is reported as already there.
    const cloneFull = `${a.pool}/${cloneDest}`
    const cloneWas = exists(cloneFull)
    if (cloneWas) t.equal(cloneOk(cloneFull), undefined, `round ${round}: the clone left by the crash is whole`)
    const cloneAgain = await rpc(port2, 'CloneImage', { id: IMAGE_ID, dest: cloneDest })
    if (cloneWas) t.match(cloneAgain.error, /already exists/, `round ${round}: retrying the clone reports it is there`)
    else t.equal(cloneAgain.result?.volumes?.[0]?.id, cloneFull, `round ${round}: retrying the clone makes it (${cloneAgain.error ?? 'ok'})`)
    t.equal(cloneOk(cloneFull), undefined, `round ${round}: the clone is whole after the retry`)
    seen.add(cloneWas ? (cloneAnswer.error ? 'clone done, answer lost' : 'clone answered') : 'clone absent')

    // The guest disks: some of the ones asked for (they are made concurrently), each complete; the same request completes them.
    const guestDs = `${a.pool}/guests/${guest.id}`
    const present = exists(guestDs) ? sh('zfs', ['list', '-H', '-o', 'name', '-t', 'all', '-r', guestDs]).trim().split('\n').slice(1) : []
    const asked = DISKS.map((_, i) => `${guestDs}/disk-${i}`)
    t.same(present.filter((n) => !asked.includes(n)), [], `round ${round}: the crash left ${present.length} of ${DISKS.length} disks, nothing else`)
    t.same(present.map((n) => diskOk(n, asked.indexOf(n))).filter(Boolean), [], `round ${round}: each disk left is complete`)
    const disksAgain = await rpc(port2, 'CreateGuestDisks', { guest })
    const vols = (disksAgain.result?.guest?.disks ?? []).map((d: { volume: string }) => d.volume)
    t.same(vols, DISKS.map((_, i) => `${guestDs}/disk-${i}`), `round ${round}: retrying CreateGuestDisks completes the guest (${disksAgain.error ?? 'ok'})`)
    t.same(vols.map((n: string, i: number) => exists(n) ? diskOk(n, i) : `${n} missing`).filter(Boolean), [], `round ${round}: every disk is there and right`)
    seen.add(`disks left by the crash: ${present.length}/${DISKS.length}${disksAnswer.error ? '' : ' (answered)'}`)

    // Records and datasets agree both ways: every image volume has a record.
    const records = ((await rpc(port2, 'ListImages', {})).result?.images ?? []) as Array<{ id: string; volume?: string }>
    const imageVols = sh('zfs', ['list', '-H', '-o', 'name', '-t', 'volume', '-d', '1', `${a.pool}/images`]).trim().split('\n').filter(Boolean)
    t.same(imageVols.filter((v) => !records.some((r) => r.volume === v)), [], `round ${round}: every image dataset has a record`)
    const list = (await rpc(port2, 'ListImages', {})).result.images as Array<{ id: string; snapshot?: string; status: string; error?: string }>
    for (const img of list) {
      if (img.status === 'complete') t.equal(sh('zfs', ['list', '-H', '-o', 'name', img.snapshot!]).trim(), img.snapshot, `round ${round}: record ${img.id} has its snapshot`)
      else t.match(img, { status: 'error', error: /interrupted/ }, `round ${round}: an interrupted fetch says so, and is not usable`)
    }
    const again = await rpc(port2, 'RequestImage', { id: 'slow' })
    t.equal(again.result?.images?.[0]?.status, 'complete', `round ${round}: re-request completes (${again.error ?? 'ok'})`)
    const del = await rpc(port2, 'DeleteImage', { id: 'slow' })
    t.notOk(del.error, `round ${round}: clean up for the next round`)
    t.notOk((await rpc(port2, 'DeleteGuestsDisks', { guest })).error, `round ${round}: guest disks deleted`)
    t.notOk((await rpc(port2, 'DeleteDataset', { id: `guests/crash-c${round}` })).error, `round ${round}: clone deleted`)
  }
  agent!.kill('SIGTERM')
  await new Promise((r) => agent!.once('exit', r))
  summary(t, 'crash', { rounds: ROUNDS, seconds: ((Date.now() - started) / 1000).toFixed(1), outcomes: seen.counts })
})
