/**
 * The scope fence, method by method, with the real zfs adapter over output
 * recorded from the real zfs: a name outside <pool>/images and <pool>/guests is
 * refused before any zfs command runs (the runner logs every argv it is asked).
 */
import t from 'tap'
import { InvalidParamsError, NotFoundError, type AgentError } from '../../../src/agent/errors.js'
import { RPC, wireError } from '../../../src/agent/rpc/error-codes.js'
import { zfsVersions } from '../../helpers/fixtures.js'
import { recordedRunner, recordedServices, type RecordedRunner } from '../../helpers/recorded-zfs.js'

type Test = Pick<typeof t, 'fail' | 'equal' | 'same'>

/** Ids relative to the pool that name nothing inside its two trees, or nothing valid at all. */
const OUTSIDE = [
  'other/x', 'other', 'tank/guests/g1', 'tank', '/tank/guests/g1', '/guests/g1',
  '.', '..', '../other/x', './guests/g1', 'guests/..', 'guests/../other', 'guests/g1/../../../etc', 'images/../../x',
  'guestsX/g1', 'guests-evil/g1', 'images2', 'imagesX@s',
  'other@s', 'other/x@s', '../x@s', 'tank/images/img@base',
  '@s', 'guests/g1@a@b', 'guests/g1@', 'guests@../x', 'guests/g1@-r', 'guests/g1@.', '@', 'guests/@s',
  'guests//g1', 'guests/g1/', 'guests/-r', 'guests/-o', 'guests/g1\n', 'guests/g1\0', 'guests/g 1', 'guests/g1;rm', 'guests/$(x)',
  `guests/${'x'.repeat(260)}`, `guests/g1@${'x'.repeat(260)}`, 'x'.repeat(10_000),
]
/** Inside, but never for the generic methods that change something (images change only through the image methods). */
const IMAGES = ['images', 'images/img', 'images/img@base', 'images@s', 'images/_incoming-img', 'images/_incoming-img@image', 'images/x/y']
/** The trees' roots, refused by the destructive calls. */
const ROOTS = ['guests']

const snapReq = (id: string, o: object = {}) => ({ id, dest: 'x', recursive: false, destroyMoreRecent: false, ...o })
const dlReq = (o: object) => ({ id: '', recursive: false, from: '', intermediates: false, token: '', compressed: false, raw: false, ...o })
const guestReq = (id: unknown, disks: unknown = [{ size: 1 }]) => ({ guest: { id, disks } as never, action: '', args: null })
const printable = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 37)}...` : s)

/** `call` fails with `Cls` (and the wire code that goes with it) and asked zfs nothing. */
async function refused(t: Test, runner: RecordedRunner, label: string, call: () => Promise<unknown>, Cls: new (...a: never[]) => AgentError = InvalidParamsError) {
  const before = runner.calls.length
  const err: unknown = await call().then(() => undefined, (e: unknown) => e)
  if (!(err instanceof Cls)) {
    t.fail(`${label}: want ${Cls.name}, got ${err instanceof Error ? `${err.name}: ${err.message}` : 'success'}`)
    return
  }
  t.equal(wireError(err).rpcCode, Cls === InvalidParamsError ? RPC.invalidParams : -32004, `${label}: ${Cls.name} (${err.message.slice(0, 60)})`)
  t.same(runner.calls.slice(before).map((c) => c.args.join(' ')), [], `${label}: no zfs command`)
}

for (const v of zfsVersions) {
  t.test(`zfs ${v}: every method that takes a dataset name refuses names outside the fence before zfs runs`, async (t) => {
    const runner = recordedRunner(v)
    const { services: s, records, close } = await recordedServices(t.testdir(), runner)
    t.teardown(close)
    await records.put('img', { id: 'img', type: '', volume: 'tank/images/img', snapshot: 'tank/images/img@base', size: 16, status: 'complete', source: '' })

    const byId: Array<[string, (id: string) => Promise<unknown>, string[]]> = [
      ['ListSnapshots', (id) => s.snapshots.listSnapshots(snapReq(id)), OUTSIDE],
      ['GetSnapshot', (id) => s.snapshots.getSnapshotRpc(snapReq(id)), OUTSIDE],
      ['CreateSnapshot', (id) => s.snapshots.createSnapshot(snapReq(id)), [...OUTSIDE, ...IMAGES]],
      ['CreateSnapshot -r', (id) => s.snapshots.createSnapshot(snapReq(id, { recursive: true })), [...OUTSIDE, ...IMAGES]],
      ['DeleteSnapshot', (id) => s.snapshots.deleteSnapshot(snapReq(id)), [...OUTSIDE, ...IMAGES]],
      ['DeleteSnapshot -r', (id) => s.snapshots.deleteSnapshot(snapReq(id, { recursive: true })), [...OUTSIDE, ...IMAGES]],
      ['RollbackSnapshot', (id) => s.snapshots.rollbackSnapshot(snapReq(id, { destroyMoreRecent: true, recursive: true })), [...OUTSIDE, ...IMAGES]],
      ['CreateVolume', (id) => s.volumes.createVolume({ id, size: 1 }), [...OUTSIDE, ...IMAGES, ...ROOTS]],
      ['GetVolume', (id) => s.volumes.getVolume({ id, size: 0 }), OUTSIDE],
      ['DeleteDataset', (id) => s.volumes.deleteDataset({ id, size: 0 }), [...OUTSIDE, ...IMAGES, ...ROOTS]],
      // A dest under <pool>/ is taken as a full name (as the original did), so tank/guests/g1 is inside there.
      ['CloneImage dest', (dest) => s.images.cloneImage({ id: 'img', dest, type: '', source: '' }), [...OUTSIDE.filter((n) => n !== 'tank/guests/g1'), ...IMAGES, ...ROOTS, 'tank/images/c', 'tank/guests', 'tank/other/x', 'tank/../x', 'tank/guests/../images/c']],
      ['download', (id) => s.downloads.open(dlReq({ id })), OUTSIDE],
      ['download HEAD', (id) => s.downloads.describe(dlReq({ id })), OUTSIDE],
    ]
    for (const [method, call, ids] of byId) {
      for (const id of ids) await refused(t, runner, `${method} ${printable(id)}`, () => call(id))
    }
    for (const [method, call] of byId.filter(([m]) => m !== 'ListSnapshots')) {
      await refused(t, runner, `${method} with no id`, () => call(''))
    }

    // Image ids become <pool>/images/<id>; the import's temporaries own the "_" prefix.
    for (const id of ['_incoming-img', '_spool-img', '_', '../x', 'a/b', 'a@b', '/x', '.', '..', '-x', 'x y', '', 'x'.repeat(240), 'x\n']) {
      await refused(t, runner, `RequestImage ${printable(id)}`, () => s.images.requestImage({ id, type: '', dest: '', source: '' }))
      if (id) {
        // Ids that name no record: not found, answered from the catalog alone.
        await refused(t, runner, `GetImage ${printable(id)}`, () => s.images.getImage({ id, type: '', dest: '', source: '' }), NotFoundError)
        await refused(t, runner, `DeleteImage ${printable(id)}`, () => s.images.deleteImage({ id, type: '', dest: '', source: '' }), NotFoundError)
      }
    }

    // Guest ids become <pool>/guests/<id>: one component.
    for (const id of ['../x', 'a/b', 'g1@s', '', '-r', '.', '..', '/g1', 'g 1', 'x'.repeat(300), 7]) {
      const label = printable(String(id))
      await refused(t, runner, `VerifyDisks ${label}`, () => s.disks.verifyDisks(guestReq(id)))
      await refused(t, runner, `CreateGuestDisks ${label}`, () => s.disks.createGuestDisks(guestReq(id)))
      await refused(t, runner, `DeleteGuestsDisks ${label}`, () => s.disks.deleteGuestsDisks(guestReq(id)))
    }
    await refused(t, runner, 'CreateGuestDisks with no guest', () => s.disks.createGuestDisks({ guest: null, action: '', args: null }))

    // Resume tokens: zfs is not asked to decode one that is not token-shaped.
    for (const token of ['nope', '../tank/other@s', '1-2-3', '1-2-3-4 5', `1-2-3-${'f'.repeat(5000)}`]) {
      await refused(t, runner, `download token ${printable(token)}`, () => s.downloads.open(dlReq({ token })))
    }
    await refused(t, runner, 'download token with from', () => s.downloads.open(dlReq({ token: '1-2-3-4', from: '@s' })))
    await refused(t, runner, 'download token with recursive', () => s.downloads.open(dlReq({ token: '1-2-3-4', recursive: true })))

    t.same(runner.calls, [], 'zfs was never asked anything')
  })

  t.test(`zfs ${v}: a record naming a dataset outside the fence is not acted on`, async (t) => {
    const runner = recordedRunner(v)
    const { services: s, records, close } = await recordedServices(t.testdir(), runner)
    t.teardown(close)
    // A catalog written by hand or by an older agent: DeleteImage must not destroy what it names.
    for (const volume of ['tank/other/x', 'tank', 'tank/images', 'other/images/x', 'tank/images/../x']) {
      await records.put('evil', { id: 'evil', type: '', volume, snapshot: `${volume}@base`, size: 1, status: 'complete', source: '' })
      await refused(t, runner, `DeleteImage of a record naming ${volume}`, () => s.images.deleteImage({ id: 'evil', type: '', dest: '', source: '' }))
      t.ok(await records.get('evil'), 'the record stays')
    }
    t.same(runner.calls, [])
  })

  t.test(`zfs ${v}: an incremental base outside the fence is refused after reading only the snapshot asked for`, async (t) => {
    const runner = recordedRunner(v)
    const { services: s, close } = await recordedServices(t.testdir(), runner)
    t.teardown(close)
    for (const from of ['other/x@s', '../x@s', 'tank/other@s', '/tank/images/img@base', '@../x', '@a@b', '#bm', 'images/../other@s', 'tank/images/img@base@x', `@${'x'.repeat(300)}`]) {
      const before = runner.calls.length
      const err: unknown = await s.downloads.describe(dlReq({ id: 'images/img@base', from })).then(() => undefined, (e: unknown) => e)
      t.type(err, InvalidParamsError, `from ${printable(from)}`)
      t.match((err as Error).message, /^bad from /)
      t.same(runner.calls.slice(before).map((c) => c.recording), ['get-snapshot'], 'one zfs list of the snapshot asked for, answered from its recording')
    }
    t.same(runner.changes(), [], 'nothing that changes the pool')
  })
}
