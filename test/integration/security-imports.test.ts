/**
 * Issue 12 on real ZFS: reserved image ids (item 3), bounds on what an
 * import writes (item 5), integrity that fails closed (item 8) and async
 * admission (item 11). Every refusal checks that the pool (inside the trees
 * and out) is exactly as before.
 */
import t from 'tap'
import { gzipSync } from 'node:zlib'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { haveZfs, sh, volumeWithSnapshot } from '../helpers/zpool.js'
import { startAgent, restartAgent, makeZvolStream, dribble, digestHeader, sha256hex, blake2bHex } from '../helpers/agent.js'
import { zfsState, unchanged, streamOf } from '../helpers/reliability.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const MiB = 1 << 20
const zfsOut = (args: string[]) => sh('zfs', args).trim()

t.test('item 3: reserved image ids', async (t) => {
  const a = await startAgent(t, { config: { fetchIdleTimeoutMs: 30_000 } })
  const P = a.pool
  const call = (m: string, p: unknown) => a.call('v1', m, p)

  await t.test('item 3: ids with the temporaries\' prefix are refused; the image they would shadow is untouched', async (t) => {
    a.images.routes.set('/images/y/download', makeZvolStream(P))
    t.match((await call('RequestImage', { id: 'y' })).result?.images?.[0], { status: 'complete' })
    for (const id of ['_incoming-y', '_spool-y', '_x']) {
      a.images.routes.set(`/images/${id}/download`, makeZvolStream(P))
      await unchanged(t, a, id, async () => {
        t.match((await call('RequestImage', { id })).error, /ids starting with "_" are reserved/, id)
        t.equal(a.images.hits.get(`/images/${id}/download`), undefined, `${id}: nothing was fetched`)
      })
    }
    t.match((await call('GetImage', { id: 'y' })).result?.images?.[0], { status: 'complete' }, 'y still complete')
  })

  await t.test('item 3: an id too long for its temporary name is refused before anything runs', async (t) => {
    const room = 255 - `${P}/images/_incoming-`.length - '@image'.length
    await unchanged(t, a, 'long id', async () => {
      t.match((await call('RequestImage', { id: 'x'.repeat(room + 1) })).error, /too long for .*images/)
    })
  })

  await t.test('item 3: start-up logs and goes on when a leftover cannot be destroyed', async (t) => {
    // A leftover with a clone of it cannot be destroyed recursively: today's start-up threw on it.
    volumeWithSnapshot(`${P}/images/_incoming-stuck`, { sizeMiB: 4, fillMiB: 1 })
    sh('zfs', ['clone', `${P}/images/_incoming-stuck@s`, `${P}/guests/pinned`])
    await a.agent.close()
    const again = await restartAgent(t, a)
    t.ok(again, 'the agent started')
    t.equal(zfsOut(['get', '-H', '-o', 'value', 'origin', `${P}/guests/pinned`]), `${P}/images/_incoming-stuck@s`, 'the guest disk is intact')
    t.match((await again.services.images.getImage({ id: 'y', type: '', dest: '', source: '' })).images[0], { status: 'complete' }, 'images still served')
  })
})

t.test('item 5: bounds on what an import may write', async (t) => {
  const a = await startAgent(t, { config: { maxImageBytes: 4 * MiB, fetchIdleTimeoutMs: 30_000 } })
  const P = a.pool
  const call = (m: string, p: unknown) => a.call('v1', m, p)
  const temporaries = () => sh('zfs', ['list', '-H', '-o', 'name', '-r', `${P}/images`]).split('\n').filter((n) => /_incoming-|_spool-/.test(n))

  await t.test('item 5: a zfs stream over the limit is cut and refused', async (t) => {
    const huge = await streamOf(volumeWithSnapshot(`${P}/bigsrc`, { sizeMiB: 16, fillMiB: 8 }))
    t.ok(huge.length > 4 * MiB, `a ${huge.length}-byte stream`)
    a.images.routes.set('/images/huge/download', huge)
    await unchanged(t, a, 'oversize stream', async () => {
      t.match((await call('RequestImage', { id: 'huge' })).error, /^image huge: larger than 4194304 bytes decoded \(maxImageBytes\)/)
    })
  })

  await t.test('item 5: a gzip bomb stops at the limit, not at its expanded size', async (t) => {
    const disk = Buffer.alloc(256 * MiB)
    disk[510] = 0x55; disk[511] = 0xaa
    const bomb = gzipSync(disk, { level: 9 })
    t.ok(bomb.length < MiB, `the bomb is ${bomb.length} bytes`)
    a.images.routes.set('/images/bomb/download', bomb)
    await unchanged(t, a, 'gzip bomb', async () => {
      t.match((await call('RequestImage', { id: 'bomb' })).error, /larger than 4194304 bytes decoded/)
    })
    t.same(temporaries(), [])
  })

  await t.test('item 5: a qcow2 whose virtual size is over the limit, or over the free space, is refused', async (t) => {
    const dir = t.testdir()
    sh('qemu-img', ['create', '-f', 'qcow2', join(dir, 'big.qcow2'), '64G'])
    const q = readFileSync(join(dir, 'big.qcow2'))
    t.ok(q.length < MiB, `a ${q.length}-byte qcow2 that expands to 64 GiB`)
    a.images.routes.set('/images/qbig/download', q)
    await unchanged(t, a, 'qcow2 over the limit', async () => {
      t.match((await call('RequestImage', { id: 'qbig' })).error, /^image qbig: qcow2 virtual size 68719476736 bytes is over the limit of 4194304/)
    })
    await a.agent.close()
    const roomy = await restartAgent(t, a, { maxImageBytes: 256 * 2 ** 30 })
    const before = zfsState([P])
    await t.rejects(roomy.services.images.requestImage({ id: 'qbig', type: '', dest: '', source: '' }), /qcow2 virtual size 68719476736 bytes is more than the \d+ bytes .*images has available/)
    t.same(zfsState([P]), before, 'nothing changed')
    await roomy.close()
  })

  await t.test('item 5: imagesQuota is set on images/ at start-up', async (t) => {
    const q = await restartAgent(t, a, { imagesQuota: 64 * MiB })
    t.equal(zfsOut(['get', '-H', '-p', '-o', 'value', 'quota', `${P}/images`]), String(64 * MiB))
    await q.close()
  })
})

t.test('item 8: integrity fails closed', async (t) => {
  const a = await startAgent(t, { config: { fetchIdleTimeoutMs: 30_000 } })
  const P = a.pool
  const call = (m: string, p: unknown) => a.call('v1', m, p)
  const stream = makeZvolStream(P)

  await t.test('item 8: an image service that publishes no sha256 is refused; nothing created', async (t) => {
    a.images.routes.set('/images/nodigest/download', (res) => { res.writeHead(200, { 'Content-Length': stream.length }); res.end(stream) })
    await unchanged(t, a, 'undigested', async () => {
      t.match((await call('RequestImage', { id: 'nodigest' })).error, /^image nodigest: the image service published no sha256 \(X-Image-Sha256\), and unverified images are refused/)
      t.equal((await call('GetImage', { id: 'nodigest' })).error, 'not found')
    })
  })

  await t.test('item 8: the image service\'s BLAKE2b is what is checked: a wrong one beside a right sha256 is refused; nothing created', async (t) => {
    a.images.routes.set('/images/badb2/download', (res) => {
      res.writeHead(200, { 'Content-Length': stream.length, 'X-Image-Sha256': sha256hex(stream), 'X-Image-Blake2b512': blake2bHex(Buffer.from('other')) })
      res.end(stream)
    })
    await unchanged(t, a, 'wrong blake2b', async () => {
      t.match((await call('RequestImage', { id: 'badb2' })).error, new RegExp(`^image badb2: checksum mismatch \\(expected blake2b512 ${blake2bHex(Buffer.from('other'))}, got ${blake2bHex(stream)}\\)`))
      t.equal((await call('GetImage', { id: 'badb2' })).error, 'not found')
    })
    a.images.routes.set('/images/goodb2/download', (res) => { res.writeHead(200, { 'Content-Length': stream.length, ...digestHeader(stream) }); res.end(stream) })
    t.match((await call('RequestImage', { id: 'goodb2' })).result?.images?.[0], { status: 'complete' })
    t.equal(zfsOut(['get', '-H', '-o', 'value', 'mistify:sha256', `${P}/images/goodb2`]), sha256hex(stream), 'the record shows the sha256 published beside it')
    // The same image, named as a URL with the caller's sha256: the server's (wrong) BLAKE2b is not read.
    a.images.routes.set('/elsewhere/pinned.zfs', (res) => {
      res.writeHead(200, { 'Content-Length': stream.length, 'X-Image-Blake2b512': blake2bHex(Buffer.from('other')) })
      res.end(stream)
    })
    const pinned = await call('RequestImage', { id: 'pinned', source: `${a.images.url}/elsewhere/pinned.zfs`, sha256: sha256hex(stream) })
    t.match(pinned.result?.images?.[0], { status: 'complete' }, pinned.error ?? '')
  })

  await t.test('item 8: with acceptUndigestedImages the same image imports (drop-in for the Go image service)', async (t) => {
    await a.agent.close()
    const lax = await restartAgent(t, a, { acceptUndigestedImages: true })
    const r = await lax.services.images.requestImage({ id: 'nodigest', type: '', dest: '', source: '' })
    t.match(r.images[0], { status: 'complete' })
    t.equal(zfsOut(['get', '-H', '-o', 'value', 'mistify:sha256', `${P}/images/nodigest`]), sha256hex(stream), 'the digest of what arrived is still recorded')
    await lax.close()
  })

  await t.test('item 8: a URL source needs the caller\'s sha256, and it is checked', async (t) => {
    const b = await startAgent(t, { config: { fetchIdleTimeoutMs: 30_000 } })
    const s2 = makeZvolStream(b.pool)
    b.images.routes.set('/elsewhere/x.zfs', (res) => { res.writeHead(200, { 'Content-Length': s2.length }); res.end(s2) })
    const src = `${b.images.url}/elsewhere/x.zfs`
    await unchanged(t, b, 'no sha256', async () => {
      t.match((await b.call('v2', 'RequestImage', { id: 'u1', source: src })).error, /^sha256: required with source/)
      t.equal(b.images.hits.get('/elsewhere/x.zfs'), undefined, 'nothing was fetched')
      t.match((await b.call('v2', 'RequestImage', { id: 'u1', source: src, sha256: 'xyz' })).error, /^sha256: 64 hex digits/)
    })
    await unchanged(t, b, 'wrong sha256', async () => {
      t.match((await b.call('v2', 'RequestImage', { id: 'u1', source: src, sha256: 'ab'.repeat(32) })).error, /checksum mismatch \(expected sha256 abab/)
    })
    b.images.routes.set('/elsewhere/y.zfs', (res) => { res.writeHead(200, { 'Content-Length': s2.length, ...digestHeader(Buffer.from('other')) }); res.end(s2) })
    await unchanged(t, b, 'published and requested digests differ', async () => {
      t.match((await b.call('v2', 'RequestImage', { id: 'u2', source: `${b.images.url}/elsewhere/y.zfs`, sha256: sha256hex(s2) })).error, /the source publishes sha256 [0-9a-f]{64}, the request says/)
    })
    const ok = await b.call('v2', 'RequestImage', { id: 'u1', source: src, sha256: sha256hex(s2) })
    t.match(ok.result?.images?.[0], { status: 'complete' }, ok.error ?? '')
  })
})

t.test('item 11: an async RequestImage the queue cannot take is answered busy, not pending', async (t) => {
  const a = await startAgent(t, { config: { fetchers: 1, maxPending: 0, fetchIdleTimeoutMs: 30_000 } })
  const call = (m: string, p: unknown) => a.call('v2', m, p)
  const slow = makeZvolStream(a.pool, { sizeMiB: 4 })
  a.images.routes.set('/images/slow/download', dribble(slow, { chunk: 16 * 1024, delayMs: 100 }))
  a.images.routes.set('/images/second/download', makeZvolStream(a.pool))
  t.match((await call('RequestImage', { id: 'slow', async: true })).result?.images?.[0], { status: 'pending' })
  const second = await call('RequestImage', { id: 'second', async: true })
  // 'slow' is running, or still reading the image service's records (a place held in the queue: waiting).
  t.match(second.error, /^busy: (1 fetches running and 0|0 fetches running and 1) waiting, try again later/, 'refused at once, in the answer')
  t.equal((await call('GetImage', { id: 'second' })).error, 'not found', 'no record says pending')
  t.equal(a.images.hits.get('/images/second/download'), undefined)
  const joined = await call('RequestImage', { id: 'slow', async: true })
  t.notOk(joined.error, 'joining the running fetch is not refused')
  for (let i = 0; i < 300; i++) {
    if ((await call('GetImage', { id: 'slow' })).result?.images?.[0]?.status === 'complete') break
    await new Promise((r) => setTimeout(r, 200))
  }
  t.match((await call('RequestImage', { id: 'second', async: true })).result?.images?.[0], { status: /pending|downloading|complete/ }, 'admitted once a slot is free')
})

