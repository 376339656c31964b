/**
 * kill -9 of a real agent process at random points of an import, then a
 * restart: nothing half-imported is left that looks usable, ZFS and the
 * metadata agree, and the image can be requested again.
 */
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { haveZfs, sh } from '../helpers/zpool.js'
import { startAgent, makeZvolStream, dribble } from '../helpers/agent.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const ROUNDS = Number(process.env.MISTIFY_CRASH_ROUNDS ?? 5)

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

t.test('kill -9 during imports, restart, re-request', async (t) => {
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
    agent = spawn(process.execPath, ['dist/src/main.js', '--zpool', a.pool, '--port', String(port), '--metadata-dir', metadataDir, '--image-service', a.images.url], { stdio: ['ignore', 'ignore', 'pipe'] })
    let log = ''
    agent.stderr!.on('data', (c: Buffer) => { log += c.toString() })
    for (let i = 0; i < 1200; i++) { // up to 2 min: node starts slowly under TCG on a loaded machine
      try { await rpc(port, 'ListImages', {}); return port } catch { await new Promise((r) => setTimeout(r, 100)) }
      if (agent.exitCode !== null) throw new Error(`agent exited ${agent.exitCode}: ${log}`)
    }
    throw new Error(`agent did not come up: ${log}`)
  }

  function consistent(round: number): void {
    const vols = sh('zfs', ['list', '-H', '-o', 'name', '-t', 'volume,filesystem', '-d', '1', `${a.pool}/images`]).trim().split('\n').slice(1)
    t.same(vols.filter((v) => v.includes('_incoming-')), [], `round ${round}: no temporary left`)
  }

  for (let round = 0; round < ROUNDS; round++) {
    const port = await start()
    const inflight = rpc(port, 'RequestImage', { id: 'slow' }).catch(() => ({ error: 'connection lost' }))
    // Somewhere between "request sent" and "almost done": the stream takes about 3 s.
    const delay = 50 + Math.floor(Math.random() * 2500)
    await new Promise((r) => setTimeout(r, delay))
    agent!.kill('SIGKILL')
    await new Promise((r) => agent!.once('exit', r))
    const answer = await inflight
    t.comment(`round ${round}: killed after ${delay} ms (${answer.error ? 'mid-import' : 'after the import finished'})`)

    const port2 = await start()
    consistent(round)
    const list = (await rpc(port2, 'ListImages', {})).result.images as Array<{ id: string; snapshot?: string; status: string; error?: string }>
    for (const img of list) {
      if (img.status === 'complete') t.equal(sh('zfs', ['list', '-H', '-o', 'name', img.snapshot!]).trim(), img.snapshot, `round ${round}: record ${img.id} has its snapshot`)
      else t.match(img, { status: 'error', error: /interrupted/ }, `round ${round}: an interrupted fetch says so, and is not usable`)
    }
    const again = await rpc(port2, 'RequestImage', { id: 'slow' })
    t.equal(again.result?.images?.[0]?.status, 'complete', `round ${round}: re-request completes (${again.error ?? 'ok'})`)
    const del = await rpc(port2, 'DeleteImage', { id: 'slow' })
    t.notOk(del.error, `round ${round}: clean up for the next round`)
    agent!.kill('SIGTERM')
    await new Promise((r) => agent!.once('exit', r))
  }
})
