/**
 * Security issue 12, "Confinement and integrity", items 4, 5 (CloneImage's
 * space check), 6 and 10: the generic methods never change the images tree,
 * what CreateGuestDisks reports created exists, a recursive rollback is
 * refused whole or done whole, and CloneImage checks for room first. Every
 * refusal leaves the whole pool as it was (zfsState).
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync, writeSync } from 'node:fs'
import { createFilePool, fillRandom, haveZfs, sh, settle, sha256Of, volumeWithSnapshot } from '../helpers/zpool.js'
import { startAgent, makeZvolStream, destroyWhenFree, IMAGE_ID, GZIP_ID, type Dialect } from '../helpers/agent.js'
import { zfsState } from '../helpers/reliability.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const dialects: Dialect[] = ['v1', 'v2']
const exists = (n: string) => { try { sh('zfs', ['list', '-H', '-o', 'name', n]); return true } catch { return false } }
const names = (root: string) => sh('zfs', ['list', '-H', '-o', 'name', '-t', 'all', '-r', root]).trim().split('\n').filter(Boolean).sort()
const prop = (ds: string, p: string) => sh('zfs', ['get', '-H', '-p', '-o', 'value', p, ds]).trim()
// Imports here are set-up, not what is tested: a long stall limit keeps them
// whole when the VM is slow (the helper's 3 s is for the stall tests).
const start = (t: Parameters<typeof startAgent>[0]) => startAgent(t, { config: { fetchIdleTimeoutMs: 60_000 } })
const IMAGES_REFUSED = /^not a valid dataset: \S+ is in \S+\/images; images change only through the image methods \(RequestImage, DeleteImage\)$/

t.test('item 10: the images tree is not reachable through the generic methods', async (t) => {
  const a = await start(t)
  t.equal((await a.call('v1', 'RequestImage', { id: IMAGE_ID })).result?.images?.[0]?.status, 'complete', 'image imported')
  // A dataset in images/ that no record names: refused as well, record or not.
  sh('zfs', ['receive', `${a.pool}/images/stranger`], makeZvolStream(a.pool))
  const img = `images/${IMAGE_ID}`
  const refusals: Array<[string, Record<string, unknown>]> = [
    ['DeleteSnapshot', { id: `${img}@test` }],
    ['DeleteSnapshot', { id: `${img}@test`, recursive: true }],
    ['DeleteSnapshot', { id: 'images/stranger@test' }],
    ['DeleteSnapshot', { id: 'images@test', recursive: true }],
    ['CreateSnapshot', { id: img, dest: 'extra' }],
    ['CreateSnapshot', { id: 'images', dest: 'extra', recursive: true }],
    ['RollbackSnapshot', { id: `${img}@test`, destroyMoreRecent: true }],
    ['RollbackSnapshot', { id: 'images/stranger@test', recursive: true, destroyMoreRecent: true }],
    ['CreateVolume', { id: 'images/new-vol', size: 1 }],
    ['CreateVolume', { id: `${img}/x`, size: 1 }],
    ['DeleteDataset', { id: img }],
    ['DeleteDataset', { id: `${img}@test` }],
    ['DeleteDataset', { id: 'images/stranger' }],
    ['DeleteDataset', { id: 'images/stranger@test' }],
    ['CloneImage', { id: IMAGE_ID, dest: 'images/cloned' }],
    ['CloneImage', { id: IMAGE_ID, dest: `${a.pool}/images/cloned` }],
    ['CloneImage', { id: IMAGE_ID, dest: `${a.pool}/images/cloned/disk-0` }],
  ]
  const before = zfsState([a.pool])
  for (const dialect of dialects) {
    for (const [m, p] of refusals) {
      const r = await a.call(dialect, m, p)
      t.match(r.error, IMAGES_REFUSED, `${dialect} ${m} ${JSON.stringify(p)} refused: ${r.error}`)
    }
  }
  t.same(zfsState([a.pool]), before, 'nothing changed anywhere in the pool, images/ and guests/ included')
  t.match((await a.call('v1', 'GetImage', { id: IMAGE_ID })).result?.images?.[0], { status: 'complete', snapshot: `${a.pool}/${img}@test` }, 'the image is whole')

  // The id a refused clone would have taken is still free for RequestImage.
  a.images.routes.set('/images/cloned/download', makeZvolStream(a.pool))
  t.equal((await a.call('v2', 'RequestImage', { id: 'cloned' })).result?.images?.[0]?.status, 'complete', 'RequestImage of the would-be clone id works')

  // Reads keep both trees.
  t.same((await a.call('v1', 'GetSnapshot', { id: `${img}@test` })).result?.snapshots?.map((s: { id: string }) => s.id), [`${a.pool}/${img}@test`], 'GetSnapshot reads images/')
  t.ok((await a.call('v2', 'ListSnapshots', { id: 'images' })).result?.snapshots?.some((s: { id: string }) => s.id === `${a.pool}/${img}@test`), 'ListSnapshots reads images/')
  t.equal((await a.call('v1', 'GetVolume', { id: img })).result?.volumes?.[0]?.id, `${a.pool}/${img}`, 'GetVolume reads images/')
  const dl = await fetch(`${a.url}/snapshots/download?id=${img}@test`)
  t.equal(dl.status, 200, 'an image snapshot can be downloaded')
  t.ok((await dl.arrayBuffer()).byteLength > 0)

  // And guests/ takes them all, the same calls as above.
  const ok = async (m: string, p: unknown) => { const r = await a.call('v2', m, p); t.notOk(r.error, `${m} ${JSON.stringify(p)}: ${r.error ?? 'ok'}`) }
  await ok('CloneImage', { id: IMAGE_ID, dest: 'guests/g10/disk-0' })
  await ok('CreateSnapshot', { id: 'guests/g10', dest: 's', recursive: true })
  await ok('RollbackSnapshot', { id: 'guests/g10/disk-0@s' })
  await ok('DeleteSnapshot', { id: 'guests/g10@s', recursive: true })
  await ok('CreateVolume', { id: 'guests/g10/v', size: 1 })
  await ok('DeleteDataset', { id: 'guests/g10' })
  t.notOk(exists(`${a.pool}/guests/g10`))
})

t.test('item 5: CloneImage refuses what guests/ has no room for, before any change', async (t) => {
  const a = await start(t)
  t.equal((await a.call('v1', 'RequestImage', { id: IMAGE_ID })).result?.images?.[0]?.status, 'complete', 'image imported (4 MiB)')
  // Less room under guests/ than the image's 4 MiB: a clone could not grow to its size.
  sh('zfs', ['set', 'quota=2M', `${a.pool}/guests`])
  t.ok(Number(prop(`${a.pool}/guests`, 'available')) < 4 << 20, `guests/ has ${prop(`${a.pool}/guests`, 'available')} bytes available`)
  const before = zfsState([a.pool])
  for (const dialect of dialects) {
    for (const dest of ['guests/full/disk-0', `${a.pool}/guests/full/disk-0`, 'guests/flat']) {
      t.equal((await a.call(dialect, 'CloneImage', { id: IMAGE_ID, dest })).error, 'no space left on device', `${dialect} ${dest}: the original's error`)
    }
  }
  // The same reckoning as VerifyDisks.
  t.equal((await a.call('v1', 'VerifyDisks', { guest: { id: 'full', disks: [{ image: IMAGE_ID }] } })).error, 'no space left on device', 'VerifyDisks agrees')
  t.same(zfsState([a.pool]), before, 'nothing changed: no clone, no parent filesystem')
  t.notOk(exists(`${a.pool}/guests/full`))

  sh('zfs', ['set', 'quota=none', `${a.pool}/guests`])
  const ok = await a.call('v2', 'CloneImage', { id: IMAGE_ID, dest: 'guests/full/disk-0' })
  t.same(ok.result, { volumes: [{ id: `${a.pool}/guests/full/disk-0`, size: 4, device: `/dev/zvol/${a.pool}/guests/full/disk-0` }] }, 'with room, the clone is made')
  t.equal(prop(`${a.pool}/guests/full/disk-0`, 'origin'), `${a.pool}/images/${IMAGE_ID}@test`)
})

t.test('item 4: concurrent CreateGuestDisks for one new guest both report disks that exist', async (t) => {
  const a = await start(t)
  for (const id of [IMAGE_ID, GZIP_ID]) t.equal((await a.call('v1', 'RequestImage', { id })).result?.images?.[0]?.status, 'complete', `${id} imported`)
  const snapOf = (image: string) => `${a.pool}/images/${image}@test`
  const disksOf = (n: number) => Array.from({ length: n }, (_, i) => ({ image: i % 2 ? GZIP_ID : IMAGE_ID }))

  for (const n of [2, 4]) {
    const id = `race-${n}`
    const guestDs = `${a.pool}/guests/${id}`
    const req = { guest: { id, disks: disksOf(n) } }
    // As an orchestrator retrying after a timeout: the second call arrives while the first runs.
    const [x, y] = await Promise.all([a.call('v1', 'CreateGuestDisks', req), a.call('v2', 'CreateGuestDisks', req)])
    t.notOk(x.error, `${n} disks, first call: ${x.error ?? 'ok'}`)
    t.notOk(y.error, `${n} disks, second call: ${y.error ?? 'ok'}`)
    t.same(y.result, x.result, `${n} disks: both answer the same disks`)
    const reported = (x.result?.guest?.disks ?? []) as Array<{ volume: string; image: string }>
    t.equal(reported.length, n)
    for (const d of reported) {
      t.ok(exists(d.volume), `${d.volume} (reported created) exists`)
      t.equal(prop(d.volume, 'origin'), snapOf(d.image), `${d.volume} is a clone of ${d.image}`)
    }
    t.same(names(guestDs), [guestDs, ...reported.map((d) => d.volume)].sort(), 'exactly the guest and its disks')
  }

  // A third image whose record says complete but whose dataset an operator
  // destroyed: a request naming it passes VerifyDisks and fails while the
  // disks are being made, after the ones before it were cloned.
  a.images.routes.set('/images/gone/download', makeZvolStream(a.pool))
  t.equal((await a.call('v1', 'RequestImage', { id: 'gone' })).result?.images?.[0]?.status, 'complete')
  destroyWhenFree(`${a.pool}/images/gone`) // udev may still be probing the zvol it was just told about

  for (const [label, bad] of [['missing image', 'no-such-image'], ['vanished image', 'gone']] as const) {
    for (const badFirst of [false, true]) {
      const id = `fail-${bad}-${badFirst ? 'b' : 'a'}`
      const guestDs = `${a.pool}/guests/${id}`
      const good = { guest: { id, disks: disksOf(2) } }
      const failing = { guest: { id, disks: [...disksOf(2), { image: bad }] } }
      const [g, f] = badFirst
        ? await Promise.all([a.call('v1', 'CreateGuestDisks', failing), a.call('v2', 'CreateGuestDisks', good)]).then(([f, g]) => [g, f])
        : await Promise.all([a.call('v1', 'CreateGuestDisks', good), a.call('v2', 'CreateGuestDisks', failing)])
      const tag = `${label}, ${badFirst ? 'failing call sent first' : 'good call sent first'}`
      t.notOk(g!.error, `${tag}: the good call succeeds (${g!.error ?? 'ok'})`)
      t.equal(f!.error, 'not found', `${tag}: the other fails with 'not found'`)
      const reported = (g!.result?.guest?.disks ?? []) as Array<{ volume: string }>
      t.equal(reported.length, 2)
      t.same(names(guestDs), [guestDs, ...reported.map((d) => d.volume)].sort(), `${tag}: the good call's disks are all there, nothing else`)

      // Sent again on its own, now that the guest exists: refused, the guest untouched.
      const before = zfsState([a.pool])
      t.equal((await a.call('v1', 'CreateGuestDisks', failing)).error, 'not found', `${tag}: refused again alone`)
      t.same(zfsState([a.pool]), before, `${tag}: the refusal changed nothing`)
    }
  }
})

t.test('item 6: a recursive rollback is refused whole when a snapshot it would destroy is held', async (t) => {
  const a = await start(t)
  const P = `${a.pool}/guests/rb`
  const vols = [`${P}/disk-0`, `${P}/disk-1`]
  sh('zfs', ['create', '-p', P])
  for (const v of vols) sh('zfs', ['create', '-V', '8M', v])
  settle()
  const write = () => { for (const v of vols) { const fd = openSync(`/dev/zvol/${v}`, 'r+'); writeSync(fd, randomBytes(1 << 20)); closeSync(fd) } }
  write()
  sh('zfs', ['snapshot', '-r', `${P}@old`])
  const atOld = await Promise.all(vols.map((v) => sha256Of(`/dev/zvol/${v}`)))
  write()
  sh('zfs', ['snapshot', '-r', `${P}@newer`])
  write()
  // The last dataset in line holds its newer snapshot (as a running download does).
  sh('zfs', ['hold', 'test-tag', `${vols[1]}@newer`])

  const before = zfsState([a.pool])
  for (const dialect of dialects) {
    const r = await a.call(dialect, 'RollbackSnapshot', { id: 'guests/rb@old', recursive: true, destroyMoreRecent: true })
    t.match(r.error, new RegExp(`newer snapshots are held: ${vols[1]}@newer \\(hold test-tag\\)`), `${dialect} recursive: refused, naming the snapshot and the tag: ${r.error}`)
    const one = await a.call(dialect, 'RollbackSnapshot', { id: 'guests/rb/disk-1@old', destroyMoreRecent: true })
    t.match(one.error, /newer snapshots are held: .*disk-1@newer \(hold test-tag\)/, `${dialect} one dataset: refused too`)
  }
  t.same(zfsState([a.pool]), before, 'nothing rolled back: every snapshot, written and guid as they were')

  sh('zfs', ['release', 'test-tag', `${vols[1]}@newer`])
  const ok = await a.call('v1', 'RollbackSnapshot', { id: 'guests/rb@old', recursive: true, destroyMoreRecent: true })
  t.same(ok.result?.snapshots?.map((s: { id: string }) => s.id), [`${P}@old`, `${vols[0]}@old`, `${vols[1]}@old`], `released: rolled back whole (${ok.error ?? 'ok'})`)
  t.same(names(P).filter((n) => n.includes('@')), [`${P}/disk-0@old`, `${P}/disk-1@old`, `${P}@old`].sort(), 'the newer snapshots are gone, @old stays')
  settle()
  t.same(await Promise.all(vols.map((v) => sha256Of(`/dev/zvol/${v}`))), atOld, 'every disk holds its @old bytes')
})

// Every "nothing changed" above rests on zfsState: it must see each kind of change it stands for.
t.test('zfsState sees every kind of change a refusal must not make', async (t) => {
  const { name: P } = createFilePool(t, { sizeMiB: 256 })
  sh('zfs', ['create', `${P}/images`])
  volumeWithSnapshot(`${P}/images/v`, { sizeMiB: 8, fillMiB: 1 })
  let before = zfsState([P])
  t.same(zfsState([P]), before, 'two captures of an idle pool are equal')
  const changes: Array<[string, () => void]> = [
    ['data overwritten in a volume (its snapshot keeps the old blocks)', () => fillRandom(`/dev/zvol/${P}/images/v`, 1, 0)],
    ['a property set', () => sh('zfs', ['set', 'compression=off', `${P}/images/v`])],
    ['a user property set', () => sh('zfs', ['set', 'mistify:x=1', `${P}/images`])],
    ['a snapshot made', () => sh('zfs', ['snapshot', `${P}/images/v@t`])],
    ['a hold placed', () => sh('zfs', ['hold', 'keep', `${P}/images/v@s`])],
    ['a dataset renamed', () => sh('zfs', ['rename', `${P}/images/v`, `${P}/images/w`])],
    ['a snapshot destroyed', () => sh('zfs', ['destroy', `${P}/images/w@t`])],
    ['a dataset created', () => sh('zfs', ['create', `${P}/guests`])],
  ]
  for (const [what, change] of changes) {
    change()
    settle()
    const after = zfsState([P])
    t.notSame(after, before, `${what}: the capture differs`)
    before = after
  }
  sh('zfs', ['release', 'keep', `${P}/images/w@s`])
})
