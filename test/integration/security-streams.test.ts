/**
 * Issue 12 on real ZFS: resume tokens forged by guid (item 1) and image
 * streams that would tie an image to datasets outside the trees (item 2).
 * Every refusal checks that the pool (inside the trees and out) is exactly
 * as before. security-imports.test.ts has the import items.
 */
import t from 'tap'
import { gzipSync } from 'node:zlib'
import { bash, haveZfs, settle, sh, volumeWithSnapshot, fillRandom } from '../helpers/zpool.js'
import { startAgent, destroyWhenFree } from '../helpers/agent.js'
import { unchanged, streamOf } from '../helpers/reliability.js'
import { createZfs } from '../../src/zfs/index.js'
import { RECEIVE_EXCLUDED_PROPERTIES } from '../../src/agent/import/import-image.js'
import { Readable } from 'node:stream'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const zfsOut = (args: string[]) => sh('zfs', args).trim()
const tokenOf = (ds: string) => zfsOut(['get', '-H', '-o', 'value', 'receive_resume_token', ds])

t.test('item 1: resume tokens are checked by guid, not trusted by name', async (t) => {
  const a = await startAgent(t, { config: { fetchIdleTimeoutMs: 30_000 } })
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

  await t.test('item 1: a token whose incremental base resolves outside the trees is refused', async (t) => {
    // A guest disk cloned by hand from a snapshot outside the trees: the kernel takes that origin as a base.
    volumeWithSnapshot(`${P}/outside-base`, { sizeMiB: 16, fillMiB: 1, snapshot: 'a' })
    sh('zfs', ['clone', `${P}/outside-base@a`, `${P}/guests/inc`])
    settle()
    fillRandom(`/dev/zvol/${P}/guests/inc`, 8, 2)
    sh('zfs', ['snapshot', `${P}/guests/inc@b`])
    // The token is only a string: made by an interrupted receive anywhere (here a clone stream into a new
    // dataset, whose origin zfs finds by guid), then that receiver is gone.
    await bash(`zfs send -i ${P}/outside-base@a ${P}/guests/inc@b | head -c 1048576 | zfs receive -s ${P}/recvside`)
    const token = tokenOf(`${P}/recvside`)
    t.match(token, /^1-/, 'an interrupted incremental receive left a token')
    destroyWhenFree(`${P}/recvside`)
    t.match(zfsOut(['send', '-n', '-v', '-P', '-t', token]), new RegExp(`^incremental\\t${P}/outside-base@a\\t${P}/guests/inc@b\\t`, 'm'), 'zfs would send from the outside base')
    await unchanged(t, a, 'base outside', async () => {
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
  const a = await startAgent(t, { config: { fetchIdleTimeoutMs: 30_000 } })
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

