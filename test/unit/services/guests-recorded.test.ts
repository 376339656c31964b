/**
 * The services' own argv against output recorded from the real zfs (the svc-*
 * recordings of scripts/record-zfs-fixtures.mjs): listings, refusals and errors under <pool>/guests.
 */
import tap from 'tap'
import { join } from 'node:path'
import { ConflictError, InvalidParamsError, NoSpaceError, NotFoundError } from '../../../src/agent/errors.js'
import { RPC, wireError } from '../../../src/agent/rpc/error-codes.js'
import { createZfs, DatasetBusyError, DatasetExistsError, OutOfSpaceError } from '../../../src/zfs/index.js'
import { SCAN_PROPS } from '../../../src/agent/catalog.js'
import { recorded, zfsVersions } from '../../helpers/fixtures.js'
import { recordedRunner, recordedServices, recordingNames, type RecordedRunner } from '../../helpers/recorded-zfs.js'

const MiB = 1024 * 1024
const snapReq = (id: string, o: object = {}) => ({ id, dest: '', recursive: false, destroyMoreRecent: false, ...o })
const dlReq = (o: object) => ({ id: '', recursive: false, from: '', intermediates: false, token: '', compressed: false, raw: false, ...o })
const imgReq = (id: string, dest = '') => ({ id, dest, type: '', source: '' })
const record = (id: string, o: object = {}) => ({ id, type: '', volume: `tank/images/${id}`, snapshot: `tank/images/${id}@base`, size: 16, status: 'complete' as const, source: '', ...o })
const guest = (id: string, disks: object[]) => ({ guest: { id, disks } as never, action: '', args: null })

async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(() => { throw new Error('expected a failure, got success') }, (e: unknown) => e as Error)
}
const asked = (r: RecordedRunner) => r.calls.map((c) => c.recording)

/** `available` of <pool>/guests as recorded. */
const guestsAvailable = (v: string) => Number(recorded(v, 'svc-get-guests').stdout.split('\t')[4])

// Versions recorded since the services' own argv were added to the recording script.
const versions = zfsVersions.filter((v) => recordingNames(v).some((n) => n.startsWith('svc-')))
tap.ok(versions.length > 0, 'a zfs version with the svc- recordings')

for (const v of versions) {
  const used = new Set<string>()
  let runs = 0
  const setup = async (t: Pick<typeof tap, 'testdir' | 'teardown'>, names?: string[]) => {
    const runner = recordedRunner(v, names)
    const s = await recordedServices(join(t.testdir(), String(runs++)), runner)
    t.teardown(async () => {
      for (const c of runner.calls) used.add(c.recording)
      await s.close()
    })
    return { runner, ...s }
  }

  tap.test(`zfs ${v}: ListVolumes, ListSnapshots and GetVolume from recorded listings`, async (t) => {
    const { runner, services: s } = await setup(t)
    t.same(await s.volumes.listVolumes(), {
      volumes: ['tank/guests/g1/disk-0', 'tank/guests/g1/disk-1', 'tank/images/img'].map((id) => ({ id, size: 16, device: `/dev/zvol/${id}` })),
    })
    const all = await s.snapshots.listSnapshots(snapReq(''))
    t.same(all.snapshots.map((x) => x.id), [
      'tank/guests/g1@snap-1', 'tank/guests/g1@snap-2', 'tank/guests/g1/disk-0@snap-1', 'tank/guests/g1/disk-0@snap-2',
      'tank/images/img@base', 'tank/images/img@later',
    ], 'both trees, in zfs\'s name order')
    t.ok(all.snapshots.every((x) => Number.isSafeInteger(x.size) && x.size >= 0), 'sizes in whole MiB')
    const g1 = await s.snapshots.listSnapshots(snapReq('guests/g1'))
    t.same(g1.snapshots.map((x) => x.id), ['tank/guests/g1@snap-1', 'tank/guests/g1@snap-2', 'tank/guests/g1/disk-0@snap-1', 'tank/guests/g1/disk-0@snap-2'])
    await t.rejects(s.volumes.getVolume({ id: 'guests/g1', size: 0 }), new InvalidParamsError('not a volume'))
    t.same(asked(runner), ['svc-list-volumes', 'svc-list-snapshots', 'svc-get-g1', 'svc-list-g1-snapshots', 'svc-get-g1'])
    t.same(runner.changes(), [])
  })

  tap.test(`zfs ${v}: CreateSnapshot: zfs's "already exists", and dests that are refused`, async (t) => {
    const { runner, services: s } = await setup(t)
    const e = await failure(s.snapshots.createSnapshot(snapReq('guests/g1', { dest: 'snap-1' })))
    t.type(e, DatasetExistsError)
    t.match(wireError(e), { rpcCode: -32009, httpStatus: 409, message: "cannot create snapshot 'tank/guests/g1@snap-1': dataset already exists" })
    t.same(runner.changes(), ['zfs snapshot tank/guests/g1@snap-1'])
    for (const dest of ['', '../x', 'a@b', 'x/y', '-r', '.', '..', 'a b', '@x', 'x\n', 'x'.repeat(300)]) {
      const before = runner.calls.length
      // Too long a name is refused by the adapter's name check (a ZfsError): the same wire error.
      const e = await failure(s.snapshots.createSnapshot(snapReq('guests/g1', { dest })))
      t.equal(wireError(e).rpcCode, RPC.invalidParams, `dest ${JSON.stringify(dest.slice(0, 20))}: ${e.message.slice(0, 60)}`)
      t.same(asked(runner).slice(before), ['svc-get-g1'], 'only the lookup of guests/g1')
    }
    await t.rejects(s.snapshots.createSnapshot(snapReq('guests/g1@snap-1', { dest: 'x' })), new InvalidParamsError('cannot create a snapshot of a snapshot'))
    t.same(runner.changes(), ['zfs snapshot tank/guests/g1@snap-1'], 'no other snapshot asked for')
  })

  tap.test(`zfs ${v}: DeleteSnapshot of a held snapshot: zfs's "dataset is busy"`, async (t) => {
    const { runner, services: s } = await setup(t)
    const e = await failure(s.snapshots.deleteSnapshot(snapReq('guests/g1@snap-2')))
    t.type(e, DatasetBusyError)
    t.match(wireError(e), { rpcCode: -32011, httpStatus: 503, message: 'cannot destroy snapshot tank/guests/g1@snap-2: dataset is busy', data: { code: 'busy' } })
    t.same(asked(runner), ['svc-get-g1-snap-2', 'err-busy-held'])
  })

  tap.test(`zfs ${v}: RollbackSnapshot refuses from recorded listings and holds, before any rollback`, async (t) => {
    const { runner, services: s } = await setup(t)
    const newer = await failure(s.snapshots.rollbackSnapshot(snapReq('guests/g1@snap-1')))
    t.type(newer, ConflictError)
    t.equal(newer.message, "cannot rollback to 'tank/guests/g1@snap-1': more recent snapshots exist (tank/guests/g1@snap-2); use destroyMoreRecent")
    t.match(wireError(newer), { rpcCode: -32010, httpStatus: 409, data: { code: 'conflict' } })
    const held = await failure(s.snapshots.rollbackSnapshot(snapReq('guests/g1@snap-1', { destroyMoreRecent: true })))
    t.type(held, ConflictError)
    t.match(held.message, /^cannot rollback to 'tank\/guests\/g1@snap-1': newer snapshots are held: tank\/guests\/g1@snap-2 \(hold mistify-send\)$/)
    t.same(asked(runner), ['svc-get-g1-snap-1', 'svc-list-g1-snapshots-depth1', 'svc-get-g1-snap-1', 'svc-list-g1-snapshots-depth1', 'holds'])
    t.same(runner.changes(), [], 'no rollback ran')
  })

  tap.test(`zfs ${v}: CreateVolume: exists, out of space, and a missing parent made`, async (t) => {
    const { runner, services: s } = await setup(t)
    const exists = await failure(s.volumes.createVolume({ id: 'guests/g1/disk-0', size: 1 }))
    t.type(exists, DatasetExistsError)
    t.match(wireError(exists), { rpcCode: -32009, httpStatus: 409, data: { code: 'already_exists' } })
    const full = await failure(s.volumes.createVolume({ id: 'guests/g1/big', size: 1024 }))
    t.type(full, OutOfSpaceError)
    t.match(wireError(full), { rpcCode: -32013, httpStatus: 507, message: "cannot create 'tank/guests/g1/big': out of space", data: { code: 'out_of_space' } })
    t.same(asked(runner), ['svc-create-volume-exists', 'svc-create-volume-no-space'])

    // zfs says the parent is missing: it is made, and the volume made once more.
    // One argv, two recorded answers: only a test that names their order gets either.
    await t.rejects(createZfs(recordedRunner(v)).createVolume('tank/guests/new/vol', MiB, { props: { compression: 'lz4' } }),
      /^recordings svc-create-volume-new, svc-create-volume-no-parent answer the same argv \(zfs create -V 1048576 -o compression=lz4 tank\/guests\/new\/vol\): name them in order$/)
    const made = await setup(t, ['svc-create-volume-no-parent', 'svc-create-parents', 'svc-create-volume-new', 'svc-get-new-vol'])
    t.same(await made.services.volumes.createVolume({ id: 'guests/new/vol', size: 1 }), {
      volumes: [{ id: 'tank/guests/new/vol', size: 1, device: '/dev/zvol/tank/guests/new/vol' }],
    })
    t.same(made.runner.changes(), [
      'zfs create -V 1048576 -o compression=lz4 tank/guests/new/vol', 'zfs create -p tank/guests/new', 'zfs create -V 1048576 -o compression=lz4 tank/guests/new/vol',
    ])
  })

  tap.test(`zfs ${v}: CloneImage and VerifyDisks reckon space from the recorded <pool>/guests`, async (t) => {
    const { runner, services: s, records } = await setup(t)
    const room = guestsAvailable(v)
    t.ok(room > 16 * MiB && room < 200 * MiB, 'under the quota of the recording')
    await records.put('img', record('img'))
    await records.put('big', record('big', { size: Math.floor(room / MiB) + 1 }))
    await records.put('gone', record('gone', { volume: 'tank/images/img', snapshot: 'tank/images/img@nope' }))
    await records.put('evil', record('evil', { volume: 'tank/other/x', snapshot: 'tank/other/x@base' }))

    const exists = await failure(s.images.cloneImage(imgReq('img', 'guests/g1/disk-0')))
    t.type(exists, DatasetExistsError)
    t.same(asked(runner), ['svc-get-guests', 'svc-clone-exists'])
    await t.rejects(s.images.cloneImage(imgReq('gone', 'guests/g1/disk-9')), new NotFoundError('not found'), 'the record\'s snapshot is gone')
    const before = runner.calls.length
    await t.rejects(s.images.cloneImage(imgReq('big', 'guests/g1/disk-9')), new NoSpaceError())
    await t.rejects(s.images.cloneImage(imgReq('evil', 'guests/g1/disk-9')), { code: 'invalid_params', message: /^not a valid dataset: tank\/other\/x@base is outside/ }, 'a record naming a snapshot outside the fence')
    t.same(asked(runner).slice(before), ['svc-get-guests', 'svc-get-guests'], 'refused after the space check, before any clone')

    const fits = Math.floor(room / MiB)
    t.same(await s.disks.verifyDisks(guest('g2', [{ size: fits - 16 }, { image: 'img' }])), {
      guest: { id: 'g2', disks: [
        { bus: undefined, device: undefined, size: fits - 16, volume: undefined, image: undefined, source: undefined },
        { bus: undefined, device: undefined, size: 16, volume: undefined, image: 'img', source: undefined },
      ] },
    }, 'the image disk takes its size from the image')
    const e = await failure(s.disks.verifyDisks(guest('g2', [{ size: fits - 15 }, { image: 'img' }])))
    t.type(e, NoSpaceError)
    t.match(wireError(e), { rpcCode: -32013, httpStatus: 507, message: 'no space left on device' })
    t.same(runner.changes(), ['zfs clone -o compression=lz4 tank/images/img@base tank/guests/g1/disk-0', 'zfs clone -o compression=lz4 tank/images/img@nope tank/guests/g1/disk-9'])
  })

  tap.test(`zfs ${v}: DeleteGuestsDisks of a guest with no datasets succeeds without a destroy; DeleteDataset of a held tree`, async (t) => {
    const { runner, services: s } = await setup(t)
    t.same(await s.disks.deleteGuestsDisks(guest('ghost', [])), { guest: { id: 'ghost' } })
    t.same(asked(runner), ['svc-get-ghost'])
    const r = recorded(v, 'svc-destroy-r-g1')
    t.not(r.exitCode, 0, 'zfs refused the recursive destroy of a tree with a held snapshot')
    const e = await failure(s.volumes.deleteDataset({ id: 'guests/g1', size: 0 }))
    t.type(e, DatasetBusyError)
    t.match(wireError(e), { rpcCode: -32011, httpStatus: 503, data: { code: 'busy' } })
    t.same(runner.changes(), ['zfs destroy -r tank/guests/g1'])
  })

  tap.test(`zfs ${v}: incremental downloads: the base resolved and checked against recorded datasets`, async (t) => {
    const { runner, services: s } = await setup(t)
    const inc = await s.downloads.describe(dlReq({ id: 'guests/g1/disk-0@snap-2', from: '@snap-1' }))
    t.match(inc, { snapshot: 'tank/guests/g1/disk-0@snap-2', kind: 'incremental', estimate: Number })
    t.ok(inc.estimate! > 0)
    t.same(asked(runner), ['svc-get-disk-0-snap-2', 'svc-get-disk-0-snap-1', 'svc-get-disk-0', 'svc-send-estimate-incremental'])
    const fromOrigin = await s.downloads.describe(dlReq({ id: 'guests/g1/disk-0@snap-2', from: 'images/img@base' }))
    t.match(fromOrigin, { snapshot: 'tank/guests/g1/disk-0@snap-2', kind: 'incremental' }, 'from the clone\'s origin')
    for (const [from, why] of [['@snap-2', /is not older than/], ['guests/g1@snap-1', /neither a snapshot of tank\/guests\/g1\/disk-0 nor its origin/]] as const) {
      await t.rejects(s.downloads.describe(dlReq({ id: 'guests/g1/disk-0@snap-2', from })), { code: 'invalid_params', message: why }, `from ${from}`)
    }
    await t.rejects(s.downloads.describe(dlReq({ id: 'guests/g1/disk-0@snap-2', raw: true })), new InvalidParamsError('raw streams are only for encrypted datasets'))
    t.same(runner.changes(), [])
  })

  tap.test(`zfs ${v}: start-up releases the download holds a crashed agent left, and no other`, async (t) => {
    const { runner, services: s } = await setup(t)
    const tree = await createZfs(runner).scan(['tank/images', 'tank/guests'], SCAN_PROPS)
    t.same(tree.filter((d) => d.userrefs > 0).map((d) => d.name), ['tank/guests/g1@snap-2', 'tank/guests/g1/disk-0@snap-1'], 'the scan finds the two held snapshots')
    t.equal(await s.downloads.releaseStale(tree), 1)
    t.same(asked(runner), ['svc-scan', 'svc-holds-held', 'svc-release-stale'], 'holds asked of the held snapshots only')
    t.same(runner.changes(), ['zfs release mistify-download.0123456789ab tank/guests/g1/disk-0@snap-1'], 'the operator\'s mistify-send hold is kept')
  })

  tap.test(`zfs ${v}: every svc- recording was asked for, every argv asked had a recording`, async (t) => {
    t.notOk(used.has(''), 'no argv without a recording (a service could have turned that error into another)')
    t.same(recordingNames(v).filter((n) => n.startsWith('svc-') && !used.has(n)), [])
  })
}
