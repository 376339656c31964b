/**
 * Increments on the agent, on real ZFS, against an image service the test
 * controls (so it can lie): a genuine increment becomes a clone of the
 * in-tree image it starts from; forged ones (another base, a base outside
 * the trees, a full or -R stream in its place) are refused before a byte is
 * received, with nothing changed; a clone stream whose origin zfs could find
 * outside the trees lands as a clone of the declared image only; dependants
 * block deletes and are named; /snapshots/download finds a base by guid.
 */
import t from 'tap'
import type { ServerResponse } from 'node:http'
import { fillRandom, haveZfs, settle, sh, sha256Of } from '../helpers/zpool.js'
import { sha256hex, startAgent, type TestAgent } from '../helpers/agent.js'
import { streamOf, unchanged } from '../helpers/reliability.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const guid = (ds: string) => sh('zfs', ['get', '-Hp', '-o', 'value', 'guid', ds]).trim()
const originOf = (ds: string) => sh('zfs', ['get', '-H', '-o', 'value', 'origin', ds]).trim()

/** The image service's record, served as JSON: what the agent plans with. */
function record(a: TestAgent, rec: { id: string; size: number; snapshot_guid: string; origin?: string; increment?: { from_guid: string; size: number; sha256: string } | null }): void {
  const body = JSON.stringify({ origin: '', increment: null, ...rec, name: 'web', status: 'complete' })
  a.images.routes.set(`/images/${rec.id}`, (res: ServerResponse) => { res.writeHead(200, { 'Content-Type': 'application/json' }); res.end(body) })
}

/** Publish `stream` as image `id`'s increment from `origin`, its record claiming `fromGuid`. */
function increment(a: TestAgent, id: string, origin: string, fromGuid: string, snapshotGuid: string, stream: Buffer, fullSize = 64 << 20): void {
  record(a, { id, size: fullSize, snapshot_guid: snapshotGuid, origin, increment: { from_guid: fromGuid, size: stream.length, sha256: sha256hex(stream) } })
  a.images.routes.set(`/images/${id}/increment`, stream)
}

t.test('increments: applied only to the declared in-tree image, forgeries refused with nothing changed', async (t) => {
  const a = await startAgent(t, { poolMiB: 512 })
  const src = `${a.pool}/src/vol` // the publisher's disk (outside the agent's trees)
  const other = `${a.pool}/outside/vol` // an unrelated dataset outside the trees
  for (const ds of [src, other]) {
    sh('zfs', ['create', '-p', '-V', '16M', ds])
    settle()
    fillRandom(`/dev/zvol/${ds}`, 16)
    sh('zfs', ['snapshot', `${ds}@v1`])
    fillRandom(`/dev/zvol/${ds}`, 1, 3)
    sh('zfs', ['snapshot', `${ds}@v2`])
  }
  sh('zfs', ['clone', `${src}@v1`, `${a.pool}/src/clone`])
  settle()
  fillRandom(`/dev/zvol/${a.pool}/src/clone`, 1, 5)
  sh('zfs', ['snapshot', `${a.pool}/src/clone@c`])

  // v1, fetched whole: the agent's image, its snapshot carrying src@v1's guid.
  const full = await streamOf(`${src}@v1`)
  record(a, { id: 'v1', size: full.length, snapshot_guid: guid(`${src}@v1`) })
  a.images.routes.set('/images/v1/download', full)
  t.same((await a.call('v2', 'RequestImage', { id: 'v1' })).error, undefined, 'v1 fetched whole')
  const v1snap = `${a.pool}/images/v1@v1`
  t.equal(guid(v1snap), guid(`${src}@v1`))

  await t.test('forged increments are refused before receiving', async (t) => {
    const cases: Array<[string, Buffer, RegExp]> = [
      ['from another base outside the trees', await streamOf(`-i ${other}@v1 ${other}@v2`), /starts from guid \d+, not from .*images\/v1@v1 .*refused before receiving/],
      ['a full stream in an increment\'s place', await streamOf(`${other}@v2`), /a full stream, not one from/],
      ['a replication stream', await streamOf(`-R -i ${src}@v1 ${src}@v2`), /zfs send -R\/-p/],
    ]
    for (const [what, stream, why] of cases) {
      // The records tell a consistent story (the link holds by guid): only the bytes lie.
      increment(a, 'forged', 'v1', guid(v1snap), guid(`${src}@v2`), stream)
      await unchanged(t, a, what, async () => {
        const r = await a.call('v2', 'RequestImage', { id: 'forged' })
        t.match(r.error, why, what)
      })
      t.equal(a.images.hits.get('/images/forged/download'), undefined, `${what}: the full stream was not taken instead`)
      t.equal((await a.call('v2', 'GetImage', { id: 'forged' })).error, 'not found', `${what}: no record left`)
    }
  })

  await t.test('a genuine increment is a clone of the image it starts from', async (t) => {
    const inc = await streamOf(`-i ${src}@v1 ${src}@v2`)
    increment(a, 'v2', 'v1', guid(v1snap), guid(`${src}@v2`), inc)
    const r = await a.call('v2', 'RequestImage', { id: 'v2' })
    t.same(r.error, undefined)
    t.equal(a.images.hits.get('/images/v2/download'), undefined, 'the full stream was not fetched')
    t.equal(a.images.sent.get('/images/v2/increment'), inc.length, 'the increment alone crossed the wire')
    t.equal(originOf(`${a.pool}/images/v2`), v1snap, 'received as a clone of v1\'s snapshot')
    t.equal(guid(`${a.pool}/images/v2@v2`), guid(`${src}@v2`), 'the published snapshot')
    // src was not written after @v2: its device holds v2's bytes.
    settle() // the received zvol's device node comes from udev, after the RPC answered
    t.equal(await sha256Of(`/dev/zvol/${a.pool}/images/v2`), await sha256Of(`/dev/zvol/${src}`), 'bit-identical to the source version')
    t.equal(sh('zfs', ['get', '-H', '-o', 'value', 'mistify:sha256', `${a.pool}/images/v2`]).trim(), sha256hex(inc), 'marked with the increment\'s digest')
  })

  await t.test('a clone stream lands on the declared image, not on the origin zfs could find by guid', async (t) => {
    // src/clone's origin src@v1 has the guid of v1's snapshot: without -o origin, zfs could pick either.
    const cl = await streamOf(`-i ${src}@v1 ${a.pool}/src/clone@c`)
    increment(a, 'v1c', 'v1', guid(v1snap), guid(`${a.pool}/src/clone@c`), cl)
    t.same((await a.call('v2', 'RequestImage', { id: 'v1c' })).error, undefined)
    t.equal(originOf(`${a.pool}/images/v1c`), v1snap, 'its origin is the declared in-tree snapshot')
  })

  await t.test('a digest that does not match the record is refused', async (t) => {
    const inc = await streamOf(`-i ${other}@v1 ${other}@v2`)
    record(a, { id: 'bad', size: 64 << 20, snapshot_guid: guid(`${src}@v2`), origin: 'v1', increment: { from_guid: guid(v1snap), size: inc.length, sha256: 'e'.repeat(64) } })
    a.images.routes.set('/images/bad/increment', inc) // served with its true digest
    await unchanged(t, a, 'digest mismatch', async () => {
      t.match((await a.call('v2', 'RequestImage', { id: 'bad' })).error, /^image bad: the source publishes sha256 [0-9a-f]{64}, the image service's record says e{64}$/)
    })
  })

  await t.test('dependants block deletes and are named', async (t) => {
    t.same((await a.call('v2', 'CloneImage', { id: 'v2', dest: 'guests/g1/disk-0' })).error, undefined)
    const del1 = await a.call('v2', 'DeleteImage', { id: 'v1' })
    t.match(del1.error, /dependent clones: .*image v2/, 'v1: names the image made from its increment')
    t.match(del1.error, /image v1c/)
    const del2 = await a.call('v2', 'DeleteImage', { id: 'v2' })
    t.match(del2.error, /dependent clones: guests\/g1\/disk-0/, 'v2: names the guest disk')
    t.ok(sh('zfs', ['list', '-H', '-o', 'name', v1snap]).trim(), 'v1 is still there')
    t.equal((await a.call('v2', 'GetImage', { id: 'v1' })).result?.images?.length, 1, 'and its record')
  })

  await t.test('/snapshots/download finds an incremental base by guid', async (t) => {
    sh('zfs', ['create', '-p', '-V', '8M', `${a.pool}/guests/p/disk-0`])
    settle()
    fillRandom(`/dev/zvol/${a.pool}/guests/p/disk-0`, 8)
    sh('zfs', ['snapshot', `${a.pool}/guests/p/disk-0@a`])
    fillRandom(`/dev/zvol/${a.pool}/guests/p/disk-0`, 1)
    sh('zfs', ['snapshot', `${a.pool}/guests/p/disk-0@b`])
    const at = (q: string) => `${a.url}/snapshots/download?id=guests/p/disk-0@b&${q}`
    const head = await fetch(at(`from_guid=${guid(`${a.pool}/guests/p/disk-0@a`)}`), { method: 'HEAD' })
    t.equal(head.status, 200)
    t.equal(head.headers.get('x-send-kind'), 'incremental')
    const body = Buffer.from(await (await fetch(at(`from_guid=${guid(`${a.pool}/guests/p/disk-0@a`)}`))).arrayBuffer())
    t.same(body.subarray(0, 512), (await streamOf(`-i @a ${a.pool}/guests/p/disk-0@b`)).subarray(0, 512), 'the same stream as zfs send -i')
    t.equal((await fetch(at(`from_guid=${guid(`${other}@v1`)}`), { method: 'HEAD' })).status, 404, 'a guid of a snapshot outside: not found')
    t.equal((await fetch(at('from_guid=12x'), { method: 'HEAD' })).status, 400, 'not a guid')
    t.equal((await fetch(at(`from=@a&from_guid=${guid(`${a.pool}/guests/p/disk-0@a`)}`), { method: 'HEAD' })).status, 400, 'from and from_guid together')
  })
})
