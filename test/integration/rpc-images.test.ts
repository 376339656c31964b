import t from 'tap'
import { gzipSync } from 'node:zlib'
import { randomBytes } from 'node:crypto'
import { haveZfs, sh } from '../helpers/zpool.js'
import { startAgent, makeZvolStream, IMAGE_ID, GZIP_ID, type Dialect } from '../helpers/agent.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const dialects: Dialect[] = ['v1', 'v2']
const zfsNames = (root: string) => sh('zfs', ['list', '-H', '-o', 'name', '-t', 'all', '-r', root]).trim().split('\n')

for (const dialect of dialects) {
  t.test(`image methods (${dialect})`, async (t) => {
    const a = await startAgent(t)
    const call = (m: string, p: unknown) => a.call(dialect, m, p)

    await t.test('before any fetch', async (t) => {
      t.same((await call('ListImages', {})).result, { images: [] }, '[] not null when empty')
      t.equal((await call('GetImage', { id: IMAGE_ID })).error, 'not found')
      t.equal((await call('GetImage', {})).error, 'not found')
    })

    await t.test('RequestImage: the original cases', async (t) => {
      t.equal((await call('RequestImage', {})).error, 'need id')
      t.match((await call('RequestImage', { id: 'asdf' })).error, /^unexpected http response code: expected 200, received 404, url: http:\/\/127\.0\.0\.1:\d+\/images\/asdf\/download$/)
      const ok = await call('RequestImage', { id: IMAGE_ID })
      t.same(ok.result, { images: [{ id: IMAGE_ID, type: '', volume: `${a.pool}/images/${IMAGE_ID}`, snapshot: `${a.pool}/images/${IMAGE_ID}@test`, size: 4, status: 'complete' }] })
      const again = await call('RequestImage', { id: IMAGE_ID })
      t.same(again.result, ok.result, 'already fetched: the same record')
      t.equal(a.images.hits.get(`/images/${IMAGE_ID}/download`), 1, 'no second download')
      const gz = await call('RequestImage', { id: GZIP_ID })
      t.equal(gz.result?.images?.[0]?.status, 'complete', 'gzipped stream imported')
      t.same(zfsNames(`${a.pool}/images`).sort(), [
        `${a.pool}/images`, `${a.pool}/images/${GZIP_ID}`, `${a.pool}/images/${GZIP_ID}@test`, `${a.pool}/images/${IMAGE_ID}`, `${a.pool}/images/${IMAGE_ID}@test`,
      ].sort(), 'exactly the image datasets, no temporaries left')
    })

    await t.test('concurrent requests for one image share one fetch', async (t) => {
      a.images.routes.set('/images/shared/download', makeZvolStream(a.pool, { sizeMiB: 8 }))
      const all = await Promise.all([1, 2, 3].map(() => call('RequestImage', { id: 'shared' })))
      for (const r of all) t.equal(r.result?.images?.[0]?.id, 'shared')
      t.equal(a.images.hits.get('/images/shared/download'), 1)
    })

    await t.test('bad streams never become images, and a retry works', async (t) => {
      const check = async (id: string, err: RegExp) => {
        t.match((await call('RequestImage', { id })).error, err, id)
        t.equal((await call('GetImage', { id })).error, 'not found', `${id}: no record`)
        t.same(zfsNames(`${a.pool}/images`).filter((n) => n.includes(id)), [], `${id}: no dataset left`)
      }
      a.images.routes.set('/images/junk/download', randomBytes(200 * 1024))
      await check('junk', /invalid stream|bad magic/)
      a.images.routes.set('/images/gzjunk/download', gzipSync(randomBytes(100 * 1024)))
      await check('gzjunk', /invalid stream|bad magic/)
      a.images.routes.set('/images/fs/download', makeZvolStream(a.pool, { filesystem: true }))
      await check('fs', /holds a filesystem, not a volume/)
      a.images.routes.set('/images/two/download', makeZvolStream(a.pool, { snapshots: ['a', 'b'], replicate: true }))
      await check('two', /exactly one snapshot, it held 2/)
      const full = makeZvolStream(a.pool)
      a.images.routes.set('/images/cut/download', (res) => {
        res.writeHead(200, { 'Content-Length': full.length })
        res.end(full.subarray(0, full.length >> 1))
        res.socket?.destroy()
      })
      await check('cut', /^image source http:\/\/127\.0\.0\.1:\d+\/images\/cut\/download: (aborted|connection closed early) after \d+ bytes$/)
      a.images.routes.set('/images/stall/download', (res) => { res.writeHead(200); res.write(full.subarray(0, 1000)) })
      await check('stall', /stalled for 3000 ms/)
      a.images.routes.set('/images/e500/download', (res) => { res.writeHead(500); res.end('boom') })
      await check('e500', /received 500/)
      // Fault gone: the same id now imports.
      a.images.routes.set('/images/cut/download', full)
      t.equal((await call('RequestImage', { id: 'cut' })).result?.images?.[0]?.status, 'complete', 'retry succeeds once the fault is gone')
    })

    await t.test('ids that would escape are refused before anything runs', async (t) => {
      for (const id of ['../x', 'a/b', '-o', 'x@y', '', ' ', 'é']) {
        const r = await call('RequestImage', { id })
        t.ok(r.error, `refused ${JSON.stringify(id)}: ${r.error}`)
      }
      t.equal(a.images.hits.get('/images/..%2Fx/download') ?? a.images.hits.get('/images/../x/download'), undefined, 'no request went out for ../x')
    })

    await t.test('ListImages and GetImage', async (t) => {
      const list = (await call('ListImages', {})).result.images.map((i: { id: string }) => i.id).sort()
      t.same(list, ['cut', GZIP_ID, IMAGE_ID, 'shared'].sort())
      const g = await call('GetImage', { ID: IMAGE_ID }) // keys match case-insensitively, like Go
      t.equal(g.result.images.length, 1)
      t.equal(g.result.images[0].id, IMAGE_ID)
    })

    await t.test('CloneImage: the original cases, then the fence', async (t) => {
      const dest = `${a.pool}/images/clone-${dialect}`
      t.equal((await call('CloneImage', { dest })).error, 'not found')
      t.equal((await call('CloneImage', { id: 'asdf' })).error, 'need dest')
      t.equal((await call('CloneImage', { id: 'asdf', dest })).error, 'not found')
      const ok = await call('CloneImage', { id: IMAGE_ID, dest })
      t.same(ok.result, { volumes: [{ id: dest, size: 4, device: `/dev/zvol/${dest}` }] })
      const rel = await call('CloneImage', { id: IMAGE_ID, dest: 'guests/g-clone/disk-0' })
      t.equal(rel.result?.volumes?.[0]?.id, `${a.pool}/guests/g-clone/disk-0`, 'a relative dest lands under the pool')
      t.equal(sh('zfs', ['get', '-H', '-o', 'value', 'origin', dest]).trim(), `${a.pool}/images/${IMAGE_ID}@test`)
      t.equal(sh('zfs', ['get', '-H', '-o', 'value', 'compression', dest]).trim(), 'lz4')
      for (const bad of [`${a.pool}/other`, 'other/x', `${a.pool}/images/../../x`, `${a.pool}/guests`, `/${a.pool}/guests/x`, 'guests/x@s', `${a.pool}/images/-x`]) {
        const r = await call('CloneImage', { id: IMAGE_ID, dest: bad })
        t.match(r.error, /not a valid dataset|snapshot/, `dest ${bad} refused`)
      }
      t.equal((await call('CloneImage', { id: IMAGE_ID, dest })).error?.includes('already exists'), true, 'an existing dest is an error')
    })

    await t.test('DeleteImage', async (t) => {
      t.equal((await call('DeleteImage', {})).error, 'not found')
      t.equal((await call('DeleteImage', { id: 'asdf' })).error, 'not found')
      const busy = await call('DeleteImage', { id: IMAGE_ID })
      t.match(busy.error, /dependent clones/, 'refused while guest disks are cloned from it')
      t.equal((await call('GetImage', { id: IMAGE_ID })).result?.images?.length, 1, 'record kept')
      const del = await call('DeleteImage', { id: GZIP_ID })
      t.equal(del.result.images[0].id, GZIP_ID)
      t.equal((await call('GetImage', { id: GZIP_ID })).error, 'not found')
      t.same(zfsNames(`${a.pool}/images`).filter((n) => n.includes(GZIP_ID)), [])
    })
  })
}

t.test('restart reconciles ZFS with the records', async (t) => {
  const a = await startAgent(t)
  await a.call('v1', 'RequestImage', { id: IMAGE_ID })
  // A crash mid-import leaves a temporary; an operator deletes an image behind our back.
  sh('zfs', ['create', '-V', '1M', `${a.pool}/images/_incoming-zzz`])
  sh('zfs', ['destroy', '-r', `${a.pool}/images/${IMAGE_ID}`])
  await a.agent.close()
  const { createAgent } = await import('../../src/agent.js')
  const { DEFAULTS } = await import('../../src/config.js')
  const { silentLogger } = await import('../../src/log.js')
  const { join } = await import('node:path')
  const again = await createAgent({ ...DEFAULTS, zpool: a.pool, metadataDir: join(t.testdir(), 'db'), imageServer: a.images.url }, { log: silentLogger })
  t.teardown(() => again.close())
  t.same(zfsNames(`${a.pool}/images`), [`${a.pool}/images`], 'the temporary is gone')
  await t.rejects(again.services.images.getImage({ id: IMAGE_ID, type: '', dest: '', source: '' }), { message: 'not found' }, 'the record of the vanished image is gone')
})
