/**
 * Security issue 12 items 4, 5, 6 and 10 on the host: the services over an
 * in-memory zfs that behaves like the real one where these rules depend on it
 * (already exists, parent does not exist, has children, holds block destroys,
 * rollback destroys newer snapshots) and yields between commands, so that
 * concurrent calls interleave as they do against real zfs. The same items run
 * against real ZFS in test/integration/security-generic.test.ts.
 */
import t from 'tap'
import { createScope } from '../../../src/agent/services/scope.js'
import { createDiskService } from '../../../src/agent/services/disks.js'
import { createSnapshotService } from '../../../src/agent/services/snapshots.js'
import { createVolumeService } from '../../../src/agent/services/volumes.js'
import { createImageService } from '../../../src/agent/services/images.js'
import type { Deps } from '../../../src/agent/services/deps.js'
import { cachedTable, type ImageRecord } from '../../../src/agent/catalog.js'
import {
  DatasetBusyError, DatasetExistsError, DatasetNotFoundError, HasChildrenError, MoreRecentSnapshotsError, ParentNotFoundError,
  type Dataset, type DatasetType, type Hold, type Zfs,
} from '../../../src/zfs/index.js'

const MiB = 1 << 20
const POOL = 'tank'

interface Node { type: DatasetType; volsize?: number; origin?: string; createtxg: number; data: number }

/** Just enough zfs for the services under test; every command yields first. */
class FakeZfs {
  readonly ds = new Map<string, Node>()
  readonly held = new Map<string, string[]>()
  /** Every command that changes something, in order. */
  readonly changes: string[] = []
  guestsAvailable = 1024 * MiB
  private txg = 1

  constructor() {
    for (const n of [POOL, `${POOL}/images`, `${POOL}/guests`]) this.add(n, 'filesystem')
  }

  add(name: string, type: DatasetType, o: { volsize?: number; origin?: string } = {}): void {
    this.ds.set(name, { type, createtxg: this.txg++, data: 0, ...o })
  }

  private async yieldNow(): Promise<void> { await new Promise((r) => setTimeout(r, 1)) }
  private parentOf(name: string): string { return name.slice(0, name.lastIndexOf('/')) }
  private under(name: string): string[] { return [...this.ds.keys()].filter((n) => n.startsWith(`${name}/`) || n.startsWith(`${name}@`)) }

  private view(name: string): Dataset {
    const n = this.ds.get(name)!
    return {
      name, type: n.type, origin: n.origin, used: 0, available: name === `${POOL}/guests` ? this.guestsAvailable : n.type === 'snapshot' ? undefined : 0,
      referenced: 0, volsize: n.volsize, written: n.data, quota: undefined, creation: 0, createtxg: n.createtxg, guid: String(n.createtxg),
      clones: [...this.ds].filter(([, c]) => c.origin === name).map(([c]) => c), receiveResumeToken: undefined,
    }
  }

  private create(name: string, type: DatasetType, o: { volsize?: number; origin?: string } = {}): void {
    if (this.ds.has(name)) throw new DatasetExistsError(`cannot create '${name}': dataset already exists`)
    if (!this.ds.has(this.parentOf(name))) throw new ParentNotFoundError(`cannot create '${name}': parent does not exist`)
    this.add(name, type, o)
    this.changes.push(`create ${name}`)
  }

  readonly api: Partial<Zfs> = {
    getDataset: async (name) => {
      await this.yieldNow()
      if (!this.ds.has(name)) throw new DatasetNotFoundError(`cannot open '${name}': dataset does not exist`)
      return this.view(name)
    },
    findDataset: async (name) => { await this.yieldNow(); return this.ds.has(name) ? this.view(name) : undefined },
    listDatasets: async (o) => {
      await this.yieldNow()
      return [...this.ds.keys()].filter((n) => o.roots!.some((r) => {
        if (n !== r && !n.startsWith(`${r}/`) && !n.startsWith(`${r}@`)) return false
        return o.depth === undefined || n.slice(r.length).split('/').length - 1 <= o.depth
      })).filter((n) => !o.types || o.types.includes(this.ds.get(n)!.type)).map((n) => this.view(n))
    },
    createFilesystem: async (name, o) => {
      await this.yieldNow()
      if (o?.parents) {
        const parts = name.split('/')
        for (let i = 2; i <= parts.length; i++) { const p = parts.slice(0, i).join('/'); if (!this.ds.has(p)) this.create(p, 'filesystem') }
        return
      }
      this.create(name, 'filesystem')
    },
    createVolume: async (name, bytes) => { await this.yieldNow(); this.create(name, 'volume', { volsize: bytes }) },
    clone: async (snap, dest) => {
      await this.yieldNow()
      if (!this.ds.has(snap)) throw new DatasetNotFoundError(`cannot open '${snap}': dataset does not exist`)
      this.create(dest, 'volume', { volsize: this.ds.get(snap)!.volsize ?? 0, origin: snap })
    },
    snapshot: async (name, o) => {
      await this.yieldNow()
      const [ds, snap] = name.split('@') as [string, string]
      for (const d of [ds, ...(o?.recursive ? this.under(ds).filter((n) => !n.includes('@')) : [])]) this.create(`${d}@${snap}`, 'snapshot')
    },
    destroy: async (name, o) => {
      await this.yieldNow()
      if (!this.ds.has(name)) throw new DatasetNotFoundError(`cannot open '${name}': dataset does not exist`)
      const below = this.under(name)
      if (below.length && !o?.recursive) throw new HasChildrenError(`cannot destroy '${name}': filesystem has children`)
      for (const n of [...below, name]) this.ds.delete(n)
      this.changes.push(`destroy ${name}${o?.recursive ? ' -r' : ''}`)
    },
    rollback: async (snap, o) => {
      await this.yieldNow()
      const [ds] = snap.split('@') as [string]
      const target = this.ds.get(snap)!
      const newer = [...this.ds].filter(([n, s]) => n.startsWith(`${ds}@`) && s.createtxg > target.createtxg).map(([n]) => n)
      if (newer.length && !o?.destroyMoreRecent) throw new MoreRecentSnapshotsError(`cannot rollback to '${snap}': more recent snapshots or bookmarks exist`)
      const busy = newer.filter((n) => this.held.get(n)?.length)
      if (busy.length) throw new DatasetBusyError(`cannot destroy '${busy[0]}': dataset is busy`)
      for (const n of newer) this.ds.delete(n)
      this.ds.get(ds)!.data = 0
      this.changes.push(`rollback ${snap}`)
    },
    holds: async (snaps) => {
      await this.yieldNow()
      const out: Hold[] = []
      for (const s of snaps) for (const tag of this.held.get(s) ?? []) out.push({ snapshot: s, tag, created: 'now' })
      return out
    },
  }
}

function setup(records: ImageRecord[] = []) {
  const fz = new FakeZfs()
  const recs = new Map(records.map((r) => [r.id, r]))
  for (const r of records) {
    fz.add(r.volume, 'volume', { volsize: r.size * MiB })
    fz.add(r.snapshot, 'snapshot', { volsize: r.size * MiB })
  }
  const d = {
    zfs: fz.api as Zfs,
    scope: createScope(POOL),
    records: cachedTable<ImageRecord>({
      get: async (id) => recs.get(id), values: async () => [...recs.values()], entries: async () => [...recs.entries()],
      put: async () => {}, del: async () => {}, batch: async () => {},
    }),
    fetches: { has: () => false },
    config: { imageServer: 'http://127.0.0.1:1', fetchIdleTimeoutMs: 1000, fileSources: undefined },
  } as unknown as Deps
  return {
    fz,
    disks: createDiskService(d),
    snapshots: createSnapshotService(d),
    volumes: createVolumeService(d),
    images: createImageService(d),
  }
}

const image = (id: string, size = 4): ImageRecord => ({
  id, type: '', volume: `${POOL}/images/${id}`, snapshot: `${POOL}/images/${id}@base`, size, status: 'complete', source: '',
})
const IMAGES_REFUSED = /^not a valid dataset: \S+ is in tank\/images; images change only through the image methods \(RequestImage, DeleteImage\)$/

t.test('scope: guestsOnly fences the generic writers to guests/; reads keep both trees', async (t) => {
  const s = createScope(POOL)
  t.equal(s.resolve('images/x@s'), 'tank/images/x@s', 'a read may name images/')
  t.equal(s.resolve('guests/x', { guestsOnly: true }), 'tank/guests/x')
  for (const rel of ['images', 'images/x', 'images/x@s', 'images@s', 'images/x/y']) {
    t.throws(() => s.resolve(rel, { guestsOnly: true }), { message: IMAGES_REFUSED, code: 'invalid_params' }, rel)
  }
  t.throws(() => s.check('tank/images/x', { guestsOnly: true, below: true }), { message: IMAGES_REFUSED })
  t.throws(() => s.resolve('other/x', { guestsOnly: true }), { message: /^not a valid dataset: tank\/other\/x is outside/ }, 'outside is still outside')
  t.throws(() => s.resolve('guests', { guestsOnly: true, below: true }), { message: /refusing to act on tank\/guests itself/ })
})

t.test('item 10: every generic writer refuses images/ before any zfs command, record or not', async (t) => {
  const { fz, snapshots, volumes, images } = setup([image('img')])
  fz.add('tank/images/stranger', 'volume', { volsize: MiB })
  fz.add('tank/images/stranger@s', 'snapshot')
  const before = [...fz.ds.keys()]
  const req = (o: object) => ({ id: '', dest: '', recursive: false, destroyMoreRecent: false, ...o })
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['DeleteSnapshot', () => snapshots.deleteSnapshot(req({ id: 'images/img@base' }))],
    ['DeleteSnapshot -r', () => snapshots.deleteSnapshot(req({ id: 'images@base', recursive: true }))],
    ['CreateSnapshot', () => snapshots.createSnapshot(req({ id: 'images/img', dest: 'x' }))],
    ['CreateSnapshot root', () => snapshots.createSnapshot(req({ id: 'images', dest: 'x', recursive: true }))],
    ['RollbackSnapshot', () => snapshots.rollbackSnapshot(req({ id: 'images/stranger@s', destroyMoreRecent: true }))],
    ['CreateVolume', () => volumes.createVolume({ id: 'images/new', size: 1 })],
    ['DeleteDataset image', () => volumes.deleteDataset({ id: 'images/img', size: 0 })],
    ['DeleteDataset stranger', () => volumes.deleteDataset({ id: 'images/stranger', size: 0 })],
    ['CloneImage relative', () => images.cloneImage({ id: 'img', dest: 'images/c', type: '', source: '' })],
    ['CloneImage full', () => images.cloneImage({ id: 'img', dest: 'tank/images/c', type: '', source: '' })],
  ]
  for (const [name, call] of calls) await t.rejects(call(), { message: IMAGES_REFUSED }, name)
  t.same([...fz.ds.keys()], before, 'nothing created or destroyed')
  t.same(fz.changes, [])
  // Reads and the download's resolver take images/.
  t.equal((await snapshots.getSnapshot('images/img@base')).name, 'tank/images/img@base')
  t.equal((await volumes.getVolume({ id: 'images/img', size: 0 })).volumes[0]?.id, 'tank/images/img')
})

t.test('item 5: CloneImage refuses with no space left on device before any change', async (t) => {
  const { fz, images, disks } = setup([image('img', 4)])
  fz.guestsAvailable = 4 * MiB - 1
  await t.rejects(images.cloneImage({ id: 'img', dest: 'guests/g/disk-0', type: '', source: '' }), { message: 'no space left on device', code: 'no_space' })
  await t.rejects(disks.verifyDisks({ guest: { id: 'g', disks: [{ image: 'img' }] } as never, action: '', args: null }), { message: 'no space left on device' }, 'the same reckoning as VerifyDisks')
  t.same(fz.changes, [], 'no zfs change')
  fz.guestsAvailable = 4 * MiB
  const ok = await images.cloneImage({ id: 'img', dest: 'guests/g/disk-0', type: '', source: '' })
  t.same(ok.volumes, [{ id: 'tank/guests/g/disk-0', size: 4, device: '/dev/zvol/tank/guests/g/disk-0' }])
})

t.test('item 4: concurrent CreateGuestDisks for one new guest both report disks that exist', async (t) => {
  for (const n of [2, 4]) {
    const { fz, disks } = setup([image('a'), image('b')])
    const guest = { id: 'g', disks: Array.from({ length: n }, (_, i) => ({ image: i % 2 ? 'b' : 'a' })) }
    const call = () => disks.createGuestDisks({ guest: guest as never, action: '', args: null })
    const results = await Promise.allSettled([call(), call()])
    t.same(results.map((r) => r.status), ['fulfilled', 'fulfilled'], `${n} disks: both succeed (${results.map((r) => r.status === 'rejected' ? (r.reason as Error).message : 'ok').join(', ')})`)
    const [x, y] = results.map((r) => (r as PromiseFulfilledResult<{ guest: { disks: Array<{ volume: string }> } }>).value)
    t.same(y, x, 'the same disks')
    for (const d of x!.guest.disks) t.ok(fz.ds.has(d.volume), `${d.volume} exists`)
    t.equal(fz.changes.filter((c) => c.startsWith('destroy')).length, 0, 'nothing destroyed')
  }
})

t.test('item 4: a concurrent call that fails undoes only what it made', async (t) => {
  for (const badFirst of [false, true]) {
    const { fz, disks } = setup([image('a'), image('b'), image('gone')])
    fz.ds.delete('tank/images/gone@base') // record complete, snapshot destroyed behind the agent's back
    const good = { id: 'g', disks: [{ image: 'a' }, { image: 'b' }] }
    const bad = { id: 'g', disks: [{ image: 'a' }, { image: 'b' }, { image: 'gone' }] }
    const call = (g: object) => disks.createGuestDisks({ guest: g as never, action: '', args: null })
    const [ok, failed] = badFirst
      ? await Promise.allSettled([call(bad), call(good)]).then(([f, g]) => [g, f])
      : await Promise.allSettled([call(good), call(bad)])
    t.equal(ok!.status, 'fulfilled', `${badFirst ? 'failing call first' : 'good call first'}: the good call succeeds`)
    t.match(failed, { status: 'rejected', reason: { message: 'not found' } }, 'the other fails: not found')
    const volumes = (ok as PromiseFulfilledResult<{ guest: { disks: Array<{ volume: string }> } }>).value.guest.disks.map((d) => d.volume)
    t.same([...fz.ds.keys()].filter((k) => k.startsWith('tank/guests/')).sort(), ['tank/guests/g', ...volumes].sort(), 'the good call\'s disks all exist')
  }
})

t.test('item 4: the guest dataset is destroyed on failure only if this call made it and it is empty', async (t) => {
  const { fz, disks } = setup([image('a'), image('gone')])
  fz.ds.delete('tank/images/gone@base')
  const call = (g: object) => disks.createGuestDisks({ guest: g as never, action: '', args: null })
  await t.rejects(call({ id: 'new', disks: [{ image: 'a' }, { image: 'gone' }] }), { message: 'not found' })
  t.notOk(fz.ds.has('tank/guests/new'), 'made by the call, left empty: destroyed')
  fz.add('tank/guests/old', 'filesystem')
  await t.rejects(call({ id: 'old', disks: [{ image: 'a' }, { image: 'gone' }] }), { message: 'not found' })
  t.ok(fz.ds.has('tank/guests/old'), 'there before: kept')
  t.notOk(fz.ds.has('tank/guests/old/disk-0'), 'the disk this call made: destroyed')
})

t.test('item 6: a rollback checks holds on every snapshot it would destroy, before the first rollback', async (t) => {
  const { fz, snapshots } = setup()
  for (const n of ['tank/guests/rb', 'tank/guests/rb/disk-0', 'tank/guests/rb/disk-1']) fz.add(n, n.endsWith('rb') ? 'filesystem' : 'volume')
  await snapshots.createSnapshot({ id: 'guests/rb', dest: 'old', recursive: true, destroyMoreRecent: false })
  await snapshots.createSnapshot({ id: 'guests/rb', dest: 'newer', recursive: true, destroyMoreRecent: false })
  fz.changes.length = 0
  fz.held.set('tank/guests/rb/disk-1@newer', ['test-tag'])
  const before = [...fz.ds.keys()]
  const p = { id: 'guests/rb@old', dest: '', recursive: true, destroyMoreRecent: true }
  await t.rejects(snapshots.rollbackSnapshot(p), { code: 'conflict', message: /newer snapshots are held: tank\/guests\/rb\/disk-1@newer \(hold test-tag\)/ })
  await t.rejects(snapshots.rollbackSnapshot({ ...p, id: 'guests/rb/disk-1@old', recursive: false }), { message: /hold test-tag/ }, 'one dataset too')
  t.same(fz.changes, [], 'nothing rolled back')
  t.same([...fz.ds.keys()], before)
  fz.held.delete('tank/guests/rb/disk-1@newer')
  const ok = await snapshots.rollbackSnapshot(p)
  t.same(ok.snapshots.map((s) => s.id), ['tank/guests/rb@old', 'tank/guests/rb/disk-0@old', 'tank/guests/rb/disk-1@old'])
  t.same(fz.changes, ['rollback tank/guests/rb@old', 'rollback tank/guests/rb/disk-0@old', 'rollback tank/guests/rb/disk-1@old'])
})
