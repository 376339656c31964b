import t from 'tap'
import { gzipSync } from 'node:zlib'
import { createHash, randomBytes } from 'node:crypto'
import { haveZfs, sh } from '../helpers/zpool.js'
import { startAgent, makeZvolStream, restartAgent, digestHeader, IMAGE_ID, GZIP_ID, type Dialect } from '../helpers/agent.js'
import { zfsState } from '../helpers/reliability.js'

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
      t.same(ok.result, { images: [{ id: IMAGE_ID, type: '', volume: `${a.pool}/images/${IMAGE_ID}`, snapshot: `${a.pool}/images/${IMAGE_ID}@test`, size: 4, status: 'complete', format: 'zfs' }] })
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
      // No signature (0x55AA at 510 would make random bytes a "raw disk"): refused before zfs runs.
      const junk = randomBytes(200 * 1024)
      junk[510] = 0
      a.images.routes.set('/images/junk/download', junk)
      await check('junk', /not a zfs send stream, qcow2 or raw disk image/)
      a.images.routes.set('/images/gzjunk/download', gzipSync(junk.subarray(0, 100 * 1024)))
      await check('gzjunk', /not a zfs send stream, qcow2 or raw disk image/)
      // A stream whose header is right and whose body is garbage: zfs itself refuses it.
      const broken = Buffer.concat([makeZvolStream(a.pool).subarray(0, 1024), randomBytes(64 * 1024)])
      a.images.routes.set('/images/badbody/download', broken)
      await check('badbody', /invalid stream|bad magic|checksum mismatch|incomplete stream|cannot receive/)
      a.images.routes.set('/images/fs/download', makeZvolStream(a.pool, { filesystem: true }))
      await check('fs', /holds a filesystem, not a volume/)
      a.images.routes.set('/images/two/download', makeZvolStream(a.pool, { snapshots: ['a', 'b'], replicate: true }))
      // A replication stream is refused from its first record: it could carry clones and properties.
      await check('two', /a replication or properties stream \(zfs send -R\/-p\) is not accepted/)
      const full = makeZvolStream(a.pool)
      a.images.routes.set('/images/cut/download', (res) => {
        res.writeHead(200, { 'Content-Length': full.length, ...digestHeader(full) })
        res.write(full.subarray(0, full.length >> 1), () => res.socket?.destroy())
      })
      // This server cannot resume (no Range): the cut is final.
      await check('cut', /^image source http:\/\/127\.0\.0\.1:\d+\/images\/cut\/download: (aborted|connection closed early) after \d+ bytes; resuming at byte \d+ failed: unexpected http response code: expected 206, received 200/)
      a.images.routes.set('/images/badsum/download', (res) => {
        res.writeHead(200, { 'Content-Length': full.length, 'X-Image-Sha256': 'ab'.repeat(32) })
        res.end(full)
      })
      await check('badsum', /checksum mismatch \(expected sha256 abab/)
      a.images.routes.set('/images/stall/download', (res) => { res.writeHead(200, digestHeader(full)); res.write(full.subarray(0, 1000)) })
      await check('stall', /stalled for 20000 ms/) // the harness's fetchIdleTimeoutMs
      a.images.routes.set('/images/e500/download', (res) => { res.writeHead(500); res.end('boom') })
      await check('e500', /received 500/)
      // Fault gone: the same id now imports.
      a.images.routes.set('/images/cut/download', full)
      t.equal((await call('RequestImage', { id: 'cut' })).result?.images?.[0]?.status, 'complete', 'retry succeeds once the fault is gone')
    })

    await t.test('a dropped connection resumes with Range: nothing fetched twice', async (t) => {
      const full = makeZvolStream(a.pool, { sizeMiB: 8 })
      let served = 0
      let cuts = 0
      a.images.routes.set('/images/flaky/download', (res, req) => {
        const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
        const start = m ? Number(m[1]) : 0
        const body = full.subarray(start)
        res.writeHead(m ? 206 : 200, {
          'Content-Length': body.length, 'Accept-Ranges': 'bytes', ETag: '"v1"', ...digestHeader(full),
          ...(m ? { 'Content-Range': `bytes ${start}-${full.length - 1}/${full.length}` } : {}),
        })
        // Cut the first two connections a third of the way in.
        const upto = cuts < 2 ? Math.min(body.length, Math.floor(full.length / 3)) : body.length
        served += upto
        if (cuts < 2) {
          cuts++
          res.write(body.subarray(0, upto), () => res.socket?.destroy()) // cut once the bytes are out
        } else res.end(body)
      })
      const r = await call('RequestImage', { id: 'flaky' })
      t.equal(r.result?.images?.[0]?.status, 'complete', r.error ?? 'imported')
      t.equal(a.images.hits.get('/images/flaky/download'), 3, 'two resumes')
      t.equal(cuts, 2)
      t.ok(served <= full.length + 256 * 1024, `bytes served ${served} ≈ the stream's ${full.length}: the completed part was not fetched again`)
      const sum = sh('zfs', ['get', '-H', '-o', 'value', 'mistify:sha256', `${a.pool}/images/flaky`]).trim()
      t.equal(sum, createHash('sha256').update(full).digest('hex'), 'the sha256 of the resumed bytes is the whole stream\'s')
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
      t.same(list, ['cut', 'flaky', GZIP_ID, IMAGE_ID, 'shared'].sort())
      const g = await call('GetImage', { ID: IMAGE_ID }) // keys match case-insensitively, like Go
      t.equal(g.result.images.length, 1)
      t.equal(g.result.images[0].id, IMAGE_ID)
    })

    await t.test('CloneImage: the original cases, then the fence', async (t) => {
      // The original's TestCloneImage cloned into <pool>/images/<uuid>; that is
      // refused now (images/ changes only through the image methods), so the
      // same full-name dest goes under guests/, and the images/ one is refused below.
      const dest = `${a.pool}/guests/clone-${dialect}`
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
      const before = zfsState([a.pool])
      for (const inImages of [`${a.pool}/images/clone-${dialect}`, `images/clone-${dialect}`, `${a.pool}/images/${IMAGE_ID}/x`]) {
        const r = await call('CloneImage', { id: IMAGE_ID, dest: inImages })
        t.match(r.error, /^not a valid dataset: \S+ is in \S+\/images; images change only through the image methods/, `dest ${inImages} refused (the original allowed it): ${r.error}`)
      }
      t.same(zfsState([a.pool]), before, 'a dest in images/: nothing created')
      // An image whose dataset an operator destroyed behind the agent's back.
      sh('zfs', ['destroy', '-r', `${a.pool}/images/${GZIP_ID}`])
      t.equal((await call('CloneImage', { id: GZIP_ID, dest: 'guests/g-clone/disk-1' })).error, 'not found', 'its clone: not found')
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
  sh('zfs', ['create', '-s', '-V', '1T', `${a.pool}/images/_spool-zzz`]) // a qcow2 waiting for conversion
  sh('zfs', ['destroy', '-r', `${a.pool}/images/${IMAGE_ID}`])
  await a.agent.close()
  const again = await restartAgent(t, a)
  t.same(zfsNames(`${a.pool}/images`), [`${a.pool}/images`], 'the temporary is gone')
  await t.rejects(again.services.images.getImage({ id: IMAGE_ID, type: '', dest: '', source: '' }), { message: 'not found' }, 'the record of the vanished image is gone')
})

t.test('a crash between rename and record: the verified import is adopted at start-up', async (t) => {
  const a = await startAgent(t)
  // What import-image leaves in that instant: the marked dataset in place, no record.
  const stream = makeZvolStream(a.pool)
  sh('zfs', ['receive', `${a.pool}/images/adoptme`], stream)
  sh('zfs', ['set', 'mistify:image=adoptme', `mistify:sha256=${createHash('sha256').update(stream).digest('hex')}`, `${a.pool}/images/adoptme`])
  // And an unmarked volume someone cloned into images/: not ours to adopt.
  sh('zfs', ['receive', `${a.pool}/images/stranger`], makeZvolStream(a.pool))
  await a.agent.close()
  const again = await restartAgent(t, a)
  const got = await again.services.images.getImage({ id: 'adoptme', type: '', dest: '', source: '' })
  t.match(got.images[0], { id: 'adoptme', status: 'complete', snapshot: `${a.pool}/images/adoptme@test`, size: 4 })
  await t.rejects(again.services.images.getImage({ id: 'stranger', type: '', dest: '', source: '' }), { message: 'not found' })
  const r = await again.services.images.requestImage({ id: 'adoptme', type: '', dest: '', source: '' })
  t.equal(r.images[0]?.status, 'complete', 'a re-request is answered from the adopted record')
})

t.test('end to end: RequestImage pulls from our own image service', async (t) => {
  const { startTestService } = await import('../helpers/image-service.js')
  const svc = await startTestService(t)
  const a = await startAgent(t)
  const stream = makeZvolStream(a.pool)
  const { gzipSync } = await import('node:zlib')
  const put = await fetch(`${svc.native}/images`, { method: 'PUT', headers: { 'X-Image-Type': 'kvm', 'X-Image-Name': 'debian' }, body: gzipSync(stream) })
  t.equal(put.status, 200)
  const meta = await put.json() as { id: string; sha256: string; status: string }
  t.equal(meta.status, 'complete')
  await a.agent.close()
  const agent = await restartAgent(t, a, { imageServer: svc.native })
  const r = await agent.services.images.requestImage({ id: meta.id, type: '', dest: '', source: '' })
  t.match(r.images[0], { id: meta.id, status: 'complete', size: 4 })
  t.equal(sh('zfs', ['get', '-H', '-o', 'value', 'mistify:sha256', `${a.pool}/images/${meta.id}`]).trim(), meta.sha256, 'the sha256 the service published is recorded (its BLAKE2b was checked)')
  const clone = await agent.services.images.cloneImage({ id: meta.id, dest: 'guests/e2e/disk-0', type: '', source: '' })
  t.equal(clone.volumes[0]?.id, `${a.pool}/guests/e2e/disk-0`)
})
