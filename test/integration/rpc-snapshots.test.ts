import t from 'tap'
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { openSync, writeSync, closeSync, readFileSync } from 'node:fs'
import { request } from 'node:http'
import { bash, haveZfs, sh, settle, sha256Of, volumeWithSnapshot } from '../helpers/zpool.js'
import { startAgent, type Dialect } from '../helpers/agent.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const snapNames = (root: string) => {
  const out = sh('zfs', ['list', '-H', '-o', 'name', '-t', 'snapshot', '-r', root]).trim()
  return out ? out.split('\n') : []
}
const sha = sha256Of

for (const dialect of ['v1', 'v2'] as Dialect[]) {
  t.test(`snapshot methods (${dialect})`, async (t) => {
    const a = await startAgent(t)
    const call = (m: string, p: unknown) => a.call(dialect, m, p)
    // The original suite's P and P/C, under guests/ (the only trees we serve).
    const P = 'guests/p1'
    const C = `${P}/c1`
    sh('zfs', ['create', '-p', '-o', 'compression=lz4', `${a.pool}/${C}`])

    await t.test('CreateSnapshot', async (t) => {
      t.equal((await call('CreateSnapshot', {})).error, 'need an id')
      t.equal((await call('CreateSnapshot', { id: '+*?@#$' })).error, 'not a valid dataset')
      t.equal((await call('CreateSnapshot', { id: 'guests/asdf' })).error, 'not found')
      t.equal((await call('CreateSnapshot', { id: P })).error, 'need a dest')
      t.equal((await call('CreateSnapshot', { id: P, dest: '-?_&' })).error, 'invalid snapshot dest')
      t.equal((await call('CreateSnapshot', { id: P, dest: '-r' })).error, 'invalid snapshot dest')
      const ok = await call('CreateSnapshot', { id: P, dest: 's1' })
      t.same(ok.result, { snapshots: [{ id: `${a.pool}/${P}@s1`, size: 0 }] })
      t.match((await call('CreateSnapshot', { id: P, dest: 's1' })).error, /already exists/)
      t.equal((await call('CreateSnapshot', { id: `${P}@s1`, dest: 'x' })).error, 'cannot create a snapshot of a snapshot')
      const rec = await call('CreateSnapshot', { id: P, dest: 'r1', recursive: true })
      t.same(rec.result.snapshots.map((s: { id: string }) => s.id), [`${a.pool}/${P}@r1`, `${a.pool}/${C}@r1`])
      t.match((await call('CreateSnapshot', { id: 'asdf', dest: 'x' })).error, /outside/, 'the pool root is not ours')
      t.match((await call('CreateSnapshot', { id: '../x', dest: 'x' })).error, /not a valid dataset/)
    })

    await t.test('ListSnapshots and GetSnapshot', async (t) => {
      const all = await call('ListSnapshots', {})
      t.same(all.result.snapshots.map((s: { id: string }) => s.id).sort(), [`${a.pool}/${P}@r1`, `${a.pool}/${P}@s1`, `${a.pool}/${C}@r1`].sort())
      t.same((await call('ListSnapshots', { id: C })).result.snapshots.map((s: { id: string }) => s.id), [`${a.pool}/${C}@r1`])
      t.equal((await call('ListSnapshots', { id: 'guests/asdf' })).error, 'not found')
      t.same((await call('ListSnapshots', { id: 'images' })).result, { snapshots: [] }, '[] when empty')
      t.equal((await call('GetSnapshot', {})).error, 'need an id')
      t.equal((await call('GetSnapshot', { id: '+*%$@' })).error, 'not a valid dataset')
      t.equal((await call('GetSnapshot', { id: 'guests/asdf@x' })).error, 'not found')
      t.equal((await call('GetSnapshot', { id: P })).error, 'not a snapshot')
      t.same((await call('GetSnapshot', { id: `${P}@r1` })).result.snapshots.map((s: { id: string }) => s.id), [`${a.pool}/${P}@r1`])
    })

    await t.test('RollbackSnapshot', async (t) => {
      const vol = `${a.pool}/${C}/disk-0`
      sh('zfs', ['create', '-V', '8M', vol])
      settle()
      const dev = `/dev/zvol/${vol}`
      const write = () => { const fd = openSync(dev, 'r+'); writeSync(fd, randomBytes(1 << 20)); closeSync(fd) }
      write()
      await call('CreateSnapshot', { id: P, dest: 'v1', recursive: true })
      const atV1 = await sha(dev)
      write()
      await call('CreateSnapshot', { id: P, dest: 'v2', recursive: true })
      write()
      t.equal((await call('RollbackSnapshot', {})).error, 'need an id')
      t.equal((await call('RollbackSnapshot', { id: P })).error, 'not a snapshot')
      const refused = await call('RollbackSnapshot', { id: `${P}@v1`, recursive: true })
      t.match(refused.error, /more recent snapshots exist.*use destroyMoreRecent/)
      t.not(await sha(dev), atV1, 'nothing changed when refused')
      sh('zfs', ['clone', `${vol}@v2`, `${a.pool}/guests/cl`])
      const cloned = await call('RollbackSnapshot', { id: `${P}@v1`, recursive: true, destroyMoreRecent: true })
      t.match(cloned.error, /newer snapshots have clones/, 'refused: it would destroy a snapshot with clones')
      t.ok(snapNames(`${a.pool}/${P}`).includes(`${vol}@v2`), 'nothing destroyed')
      sh('zfs', ['destroy', `${a.pool}/guests/cl`])
      const ok = await call('RollbackSnapshot', { id: `${P}@v1`, recursive: true, destroyMoreRecent: true })
      t.equal(ok.result.snapshots.length, 3, 'P, C and the disk rolled back (recursive honoured)')
      settle()
      t.equal(await sha(dev), atV1, 'the disk holds its v1 bytes again')
      t.notOk(snapNames(`${a.pool}/${P}`).some((s) => s.endsWith('@v2')), 'newer snapshots destroyed')
      const latest = await call('RollbackSnapshot', { id: `${P}@v1` })
      t.same(latest.result.snapshots.map((s: { id: string }) => s.id), [`${a.pool}/${P}@v1`], 'rolling back to the latest needs nothing')
    })

    await t.test('DeleteSnapshot', async (t) => {
      t.equal((await call('DeleteSnapshot', {})).error, 'need an id')
      t.equal((await call('DeleteSnapshot', { id: '+*%$@' })).error, 'not a valid dataset')
      t.equal((await call('DeleteSnapshot', { id: 'guests/asdf@x' })).error, 'not found')
      t.equal((await call('DeleteSnapshot', { id: P, recursive: true })).error, 'not a snapshot')
      t.same((await call('DeleteSnapshot', { id: `${P}@s1` })).result.snapshots.map((s: { id: string }) => s.id), [`${a.pool}/${P}@s1`])
      const rec = await call('DeleteSnapshot', { id: `${P}@r1`, recursive: true })
      t.same(rec.result.snapshots.map((s: { id: string }) => s.id), [`${a.pool}/${P}@r1`, `${a.pool}/${C}@r1`])
      t.same(snapNames(`${a.pool}/${P}`).filter((s) => s.includes('@r1') || s.includes('@s1')), [])
    })
  })
}

t.test('/snapshots/download', async (t) => {
  const a = await startAgent(t)
  const vol = `${a.pool}/guests/g1/disk-0`
  sh('zfs', ['create', '-p', '-V', '16M', vol])
  settle()
  const fd = openSync(`/dev/zvol/${vol}`, 'r+'); writeSync(fd, randomBytes(6 << 20)); closeSync(fd)
  sh('zfs', ['snapshot', '-r', `${a.pool}/guests/g1@snap-1`])
  const post = (body: string) => fetch(`${a.url}/snapshots/download`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })

  await t.test('errors before the first byte: status and text (original cases)', async (t) => {
    const cases: Array<[string, number, RegExp]> = [
      ['null', 400, /^need an id\n$/],
      ['{}', 400, /^need an id\n$/],
      ['', 400, /EOF/],
      ['{"id":"+*%$@"}', 400, /^not a valid dataset\n$/],
      ['{"id":"guests/asdf@x"}', 404, /^not found\n$/],
      ['{"id":"guests/g1"}', 400, /^not a snapshot\n$/],
      ['{"id":"../../etc@x"}', 400, /not a valid dataset/],
      ['{"id":"guests/g1@snap-1","recursive":"yes"}', 400, /cannot unmarshal string/],
    ]
    for (const [body, status, text] of cases) {
      const r = await post(body)
      t.equal(r.status, status, `${body} → ${status}`)
      t.match(await r.text(), text, body)
      t.match(r.headers.get('content-type'), /^text\/plain/)
    }
  })

  await t.test('curl → zfs receive round trip, byte for byte', async (t) => {
    const r = await bash(`curl -sfS -X POST -H 'Content-Type: application/json' -d '{"id":"guests/g1/disk-0@snap-1"}' ${a.url}/snapshots/download | zfs receive ${a.pool}/guests/copy`)
    t.equal(r.status, 0, r.stderr)
    settle()
    t.equal(await sha(`/dev/zvol/${a.pool}/guests/copy`), await sha(`/dev/zvol/${vol}`), 'received volume is identical')
    const g = await bash(`curl -sfS '${a.url}/snapshots/download?id=guests/g1@snap-1&recursive=1' | zfs receive ${a.pool}/guests/g1copy`)
    t.equal(g.status, 0, g.stderr)
    t.ok(snapNames(`${a.pool}/guests/g1copy`).includes(`${a.pool}/guests/g1copy/disk-0@snap-1`), 'recursive: the disks came along (-R)')
  })

  await t.test('a zfs send that dies mid-stream makes curl fail, not succeed short', async (t) => {
    const big = `${a.pool}/guests/big2`
    volumeWithSnapshot(big, { sizeMiB: 128, fillMiB: 96 })
    // curl with a slow reader so zfs send is still running when we kill it.
    const curl = bash(`curl -sS --limit-rate 2M '${a.url}/snapshots/download?id=guests/big2@s' | cat > /dev/null`)
    let killed = false
    for (let i = 0; i < 100 && !killed; i++) {
      await new Promise((r) => setTimeout(r, 100))
      killed = spawnSync('pkill', ['-9', '-f', `zfs send ${big}@s`]).status === 0
    }
    t.ok(killed, 'zfs send was running and was killed')
    const r = await curl
    t.not(r.status, 0, `curl exits non-zero: ${r.stderr.trim()}`)
    // TCP: the agent resets the connection (curl 56); the unix-socket path
    // leaves the chunked body without its last chunk (curl 18).
    t.match(r.stderr, /\(56\)|reset by peer|transfer closed|outstanding read data|end of response|\(18\)/)
    sh('zfs', ['destroy', '-r', big])
  })

  await t.test('a client that goes away kills zfs send', async (t) => {
    const big = `${a.pool}/guests/big`
    volumeWithSnapshot(big, { sizeMiB: 128, fillMiB: 96 })
    await new Promise<void>((resolve, reject) => {
      const req = request(`${a.url}/snapshots/download?id=guests/big@s`, (res) => {
        t.equal(res.statusCode, 200)
        res.once('data', () => { req.destroy(); resolve() })
      })
      req.on('error', (e) => { if (!req.destroyed) reject(e) })
      req.end()
    })
    let left = 1
    for (let i = 0; i < 50 && left; i++) {
      await new Promise((r) => setTimeout(r, 100))
      left = spawnSync('pgrep', ['-f', `zfs send ${big}@s`]).status === 0 ? 1 : 0
    }
    t.equal(left, 0, 'no zfs send left running')
  })
})
