/**
 * Issue 12 on real ZFS: resume tokens forged by guid (item 1), image streams
 * that would tie an image to datasets outside the trees (item 2), reserved
 * image ids (item 3), bounds on what an import writes (item 5), integrity
 * that fails closed (item 8) and async admission (item 11). Every refusal
 * checks that the pool (inside the trees and out) is exactly as before.
 */
import t, { type Test } from 'tap'
import { gzipSync } from 'node:zlib'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { bash, haveZfs, settle, sh, volumeWithSnapshot, fillRandom } from '../helpers/zpool.js'
import { startAgent, restartAgent, makeZvolStream, dribble, digestHeader, sha256hex, destroyWhenFree, type TestAgent } from '../helpers/agent.js'
import { zfsState, zfsStreams, waitEmpty } from '../helpers/reliability.js'
import { createZfs } from '../../src/zfs/index.js'
import { RECEIVE_EXCLUDED_PROPERTIES } from '../../src/fetch/import-image.js'
import { Readable } from 'node:stream'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const MiB = 1 << 20
const zfsOut = (args: string[]) => sh('zfs', args).trim()
const tokenOf = (ds: string) => zfsOut(['get', '-H', '-o', 'value', 'receive_resume_token', ds])

/** Run `fn`, which must be refused; then the pool must be exactly as before it. */
async function unchanged(t: Test, a: TestAgent, what: string, fn: () => Promise<void>): Promise<void> {
  const before = zfsState([a.pool])
  await fn()
  t.same(await waitEmpty(zfsStreams), [], `${what}: no zfs send/receive left running`)
  t.same(zfsState([a.pool]), before, `${what}: nothing in the pool changed, inside the trees or out`)
}

/** A zfs stream as a Buffer (small test streams only). */
async function streamOf(args: string): Promise<Buffer> {
  const file = `/tmp/stream-${Math.random().toString(16).slice(2)}`
  const r = await bash(`zfs send ${args} > ${file}`)
  if (r.status !== 0) throw new Error(`zfs send ${args}: ${r.stderr}`)
  return readFileSync(file)
}

t.test('item 1: resume tokens are checked by guid, not trusted by name', async (t) => {
  const a = await startAgent(t)
  const P = a.pool
  const url = (q: string) => `${a.url}/snapshots/download?${q}`

  await t.test('item 1: a token whose toguid is an outside snapshot is refused (toname in scope)', async (t) => {
    volumeWithSnapshot(`${P}/guests/src`, { sizeMiB: 16, fillMiB: 8 })
    await bash(`zfs send ${P}/guests/src@s | head -c 1048576 | zfs receive -s ${P}/guests/copy`)
    const token = tokenOf(`${P}/guests/copy`)
    t.match(token, /^1-[0-9a-f]+-/, 'an interrupted receive left a token')
    // The snapshot the token was made for moves out of the trees (its guid goes with it) and a namesake takes its place.
    sh('zfs', ['rename', `${P}/guests/src`, `${P}/outside-src`])
    volumeWithSnapshot(`${P}/guests/src`, { sizeMiB: 16, fillMiB: 1 })
    const dry = zfsOut(['send', '-n', '-v', '-P', '-t', token])
    t.match(dry, new RegExp(`^full\\t${P}/outside-src@s\\t`, 'm'), 'zfs itself would stream the outside snapshot for this token')
    await unchanged(t, a, 'forged toguid', async () => {
      const r = await fetch(url(`token=${token}`))
      t.equal(r.status, 400)
      t.match(await r.text(), /^invalid resume token: .*guests\/src@s is not the snapshot it was made for/)
      const head = await fetch(url(`token=${token}`), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) })
      t.equal(head.status, 400, 'the POST form too')
    })
    sh('zfs', ['receive', '-A', `${P}/guests/copy`])
  })

  await t.test('item 1: a token whose fromguid resolves outside the trees is refused', async (t) => {
    const inc = `${P}/guests/inc`
    volumeWithSnapshot(inc, { sizeMiB: 16, fillMiB: 1, snapshot: 'a' })
    fillRandom(`/dev/zvol/${inc}`, 8, 2)
    sh('zfs', ['snapshot', `${inc}@b`])
    t.equal((await bash(`zfs send ${inc}@a | zfs receive ${P}/guests/inccopy`)).status, 0)
    await bash(`zfs send -i @a ${inc}@b | head -c 1048576 | zfs receive -s ${P}/guests/inccopy`)
    const token = tokenOf(`${P}/guests/inccopy`)
    t.match(token, /^1-/, 'an interrupted incremental receive left a token')
    // The base's guid now lives only outside: a received copy keeps it, the original goes.
    t.equal((await bash(`zfs send ${inc}@a | zfs receive ${P}/outside-base`)).status, 0)
    sh('zfs', ['destroy', `${inc}@a`])
    t.match(zfsOut(['send', '-n', '-v', '-P', '-t', token]), new RegExp(`^incremental\\t${P}/outside-base@a\\t${inc}@b\\t`, 'm'), 'zfs would send from the outside base')
    await unchanged(t, a, 'forged fromguid', async () => {
      const r = await fetch(url(`token=${token}`))
      t.equal(r.status, 400)
      t.match(await r.text(), /^invalid resume token: its incremental base .*outside-base@a is not one of this agent's snapshots/)
    })
  })

  await t.test('item 1: a genuine in-scope token still resumes', async (t) => {
    volumeWithSnapshot(`${P}/guests/ok`, { sizeMiB: 16, fillMiB: 6 })
    await bash(`curl -sS '${url('id=guests/ok@s')}' | head -c 1048576 | zfs receive -s ${P}/guests/okcopy`)
    const token = tokenOf(`${P}/guests/okcopy`)
    const r = await bash(`curl -sfS '${url(`token=${token}`)}' | zfs receive -s ${P}/guests/okcopy`)
    t.equal(r.status, 0, r.stderr)
    t.equal(zfsOut(['get', '-H', '-o', 'value', 'guid', `${P}/guests/okcopy@s`]), zfsOut(['get', '-H', '-o', 'value', 'guid', `${P}/guests/ok@s`]))
  })
})

t.test('item 2: image streams that would reach outside the trees', async (t) => {
  const a = await startAgent(t)
  const P = a.pool
  const call = (m: string, p: unknown) => a.call('v1', m, p)
  const serve = (id: string, body: Buffer) => a.images.routes.set(`/images/${id}/download`, body)
  volumeWithSnapshot(`${P}/outside`, { sizeMiB: 8, fillMiB: 2 })
  sh('zfs', ['clone', `${P}/outside@s`, `${P}/outside-clone`])
  settle()
  fillRandom(`/dev/zvol/${P}/outside-clone`, 1, 4)
  sh('zfs', ['snapshot', `${P}/outside-clone@img`])
  const cloneStream = await streamOf(`-i ${P}/outside@s ${P}/outside-clone@img`)

  await t.test('item 2: the danger is real: zfs receive makes such a stream a clone of the outside snapshot', async (t) => {
    t.equal((await bash(`zfs receive ${P}/guests/probe < <(zfs send -i ${P}/outside@s ${P}/outside-clone@img)`)).status, 0)
    t.equal(zfsOut(['get', '-H', '-o', 'value', 'origin', `${P}/guests/probe`]), `${P}/outside@s`)
    destroyWhenFree(`${P}/guests/probe`)
  })

  await t.test('item 2: a clone stream is refused before zfs receive runs', async (t) => {
    serve('cl', cloneStream)
    await unchanged(t, a, 'clone stream', async () => {
      t.match((await call('RequestImage', { id: 'cl' })).error, /^image cl: a clone stream is not accepted/)
      t.equal((await call('GetImage', { id: 'cl' })).error, 'not found')
    })
    serve('clgz', gzipSync(cloneStream))
    await unchanged(t, a, 'gzipped clone stream', async () => {
      t.match((await call('RequestImage', { id: 'clgz' })).error, /a clone stream is not accepted/)
    })
  })

  await t.test('item 2: an incremental stream (non-zero from-guid) is refused', async (t) => {
    fillRandom(`/dev/zvol/${P}/outside`, 1, 3)
    sh('zfs', ['snapshot', `${P}/outside@t`])
    serve('inc', await streamOf(`-i @s ${P}/outside@t`))
    await unchanged(t, a, 'incremental stream', async () => {
      t.match((await call('RequestImage', { id: 'inc' })).error, /^image inc: an incremental stream is not accepted \(from guid \d+\)/)
    })
  })

  await t.test('item 2: streams carrying properties (-p) or replication (-R) are refused', async (t) => {
    const vol = `${P}/propsrc`
    sh('zfs', ['create', '-V', '8M', '-o', 'refreservation=8M', '-o', 'volmode=none', vol])
    sh('zfs', ['set', 'mistify:image=forged', 'mistify:sha256=00', vol])
    sh('zfs', ['snapshot', `${vol}@p`])
    serve('props', await streamOf(`-p ${vol}@p`))
    serve('repl', await streamOf(`-R ${vol}@p`))
    await unchanged(t, a, 'property stream', async () => {
      t.match((await call('RequestImage', { id: 'props' })).error, /^image props: a replication or properties stream \(zfs send -R\/-p\) is not accepted/)
      t.match((await call('RequestImage', { id: 'repl' })).error, /a replication or properties stream/)
    })
  })

  await t.test('item 2: the receive excludes forbidden properties (the adapter with real zfs)', async (t) => {
    // Import refuses property streams outright; the exclusions are the second line of defence, and zfs must accept them.
    const zfs = createZfs()
    const stream = await streamOf(`-p ${P}/propsrc@p`)
    await zfs.receive(`${P}/guests/excluded`, Readable.from([stream]), { noMount: true, exclude: RECEIVE_EXCLUDED_PROPERTIES })
    const received = sh('zfs', ['get', '-H', '-s', 'received', '-o', 'property,value', 'all', `${P}/guests/excluded`]).trim()
    t.equal(received, '', `no property arrived from the stream: ${received}`)
    t.equal(zfsOut(['get', '-H', '-o', 'value', 'mistify:image', `${P}/guests/excluded`]), '-', 'our marker cannot be forged by a stream')
    t.equal(zfsOut(['get', '-H', '-o', 'value', 'volmode', `${P}/guests/excluded`]), 'default')
    destroyWhenFree(`${P}/guests/excluded`)
  })

  await t.test('item 2: a plain full stream still imports, with no origin', async (t) => {
    serve('plain', await streamOf(`${P}/outside-clone@img`))
    const r = await call('RequestImage', { id: 'plain' })
    t.match(r.result?.images?.[0], { id: 'plain', status: 'complete' }, r.error ?? '')
    t.equal(zfsOut(['get', '-H', '-o', 'value', 'origin', `${P}/images/plain`]), '-')
  })
})

t.test('item 3: reserved image ids', async (t) => {
  const a = await startAgent(t)
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
  const a = await startAgent(t, { config: { maxImageBytes: 4 * MiB } })
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
  const a = await startAgent(t)
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

  await t.test('item 8: with acceptUndigestedImages the same image imports (drop-in for the Go image service)', async (t) => {
    await a.agent.close()
    const lax = await restartAgent(t, a, { acceptUndigestedImages: true })
    const r = await lax.services.images.requestImage({ id: 'nodigest', type: '', dest: '', source: '' })
    t.match(r.images[0], { status: 'complete' })
    t.equal(zfsOut(['get', '-H', '-o', 'value', 'mistify:sha256', `${P}/images/nodigest`]), sha256hex(stream), 'the digest of what arrived is still recorded')
    await lax.close()
  })

  await t.test('item 8: a URL source needs the caller\'s sha256, and it is checked', async (t) => {
    const b = await startAgent(t)
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
  const a = await startAgent(t, { config: { fetchers: 1, maxPending: 0 } })
  const call = (m: string, p: unknown) => a.call('v2', m, p)
  const slow = makeZvolStream(a.pool, { sizeMiB: 4 })
  a.images.routes.set('/images/slow/download', dribble(slow, { chunk: 16 * 1024, delayMs: 100 }))
  a.images.routes.set('/images/second/download', makeZvolStream(a.pool))
  t.match((await call('RequestImage', { id: 'slow', async: true })).result?.images?.[0], { status: 'pending' })
  const second = await call('RequestImage', { id: 'second', async: true })
  t.match(second.error, /^busy: 1 fetches running and 0 waiting, try again later/, 'refused at once, in the answer')
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

