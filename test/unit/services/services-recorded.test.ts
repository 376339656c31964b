/**
 * The services over the real zfs adapter and output recorded from the real
 * zfs: recorded listings become the wire shapes, recorded failures the right errors.
 */
import t from 'tap'
import { Readable } from 'node:stream'
import { AgentError, InvalidParamsError, NotFoundError } from '../../../src/agent/errors.js'
import { RPC, wireError } from '../../../src/agent/rpc/error-codes.js'
import {
  createZfs, DatasetExistsError, DatasetNotFoundError, HasDependentClonesError, InvalidStreamError, ZfsError,
} from '../../../src/zfs/index.js'
import { recorded, zfsVersions } from '../../helpers/fixtures.js'
import { recordedRunner, recordedServices, recordingNames } from '../../helpers/recorded-zfs.js'

const MiB = 1024 * 1024
const snapReq = (id: string, o: object = {}) => ({ id, dest: '', recursive: false, destroyMoreRecent: false, ...o })
const dlReq = (o: object) => ({ id: '', recursive: false, from: '', intermediates: false, token: '', compressed: false, raw: false, ...o })
const IMG = { id: 'img', type: '', volume: 'tank/images/img', snapshot: 'tank/images/img@base', size: 16, status: 'complete' as const, source: '' }

async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(() => { throw new Error('expected a failure, got success') }, (e: unknown) => e as Error)
}

for (const v of zfsVersions) {
  t.test(`zfs ${v}: the replaying runner answers only recorded argv`, async (t) => {
    const runner = recordedRunner(v)
    const zfs = createZfs(runner)
    t.equal((await zfs.getDataset('tank/images/img')).volsize, 16 * MiB, 'a recorded listing, parsed by the adapter')
    t.type(await failure(zfs.getDataset('tank/images/nope')), DatasetNotFoundError, 'a recorded failure, classified by the adapter')
    const e = await failure(zfs.getDataset('tank/images/other'))
    t.notOk(e instanceof ZfsError, 'an argv with no recording is not a zfs answer')
    t.match(e.message, `no recording of zfs ${v} for: zfs list -H -p -t all -o `)
    t.match(e.message, /tank\/images\/other$/, 'the message names the argv')
    t.same(runner.calls.map((c) => c.recording), ['get-volume', 'err-not-found', ''], 'every argv asked is logged')
    t.same(runner.changes(), [])
    await t.rejects(zfs.destroy('tank/images/x'), /no recording of zfs .* for: zfs destroy tank\/images\/x$/)
    t.same(runner.changes(), ['zfs destroy tank/images/x'], 'asked changes are logged even when unanswered')

    // Streams: zfs receive reads its input and fails as recorded.
    const input = () => Readable.from([Buffer.from('this is not a zfs send stream\n'.repeat(1000))])
    const junk = await failure(zfs.receive('tank/images/junk', input()))
    t.type(junk, InvalidStreamError)
    t.equal(junk.message, recorded(v, 'err-invalid-stream').stderr.split('\n')[0])
    t.type(await failure(zfs.receive('tank/images/img', input())), DatasetExistsError)

    const all = recordingNames(v)
    t.ok(all.includes('get-volume') && all.includes('err-not-found'), 'every recording is offered by default')
    const only = recordedRunner(v, ['get-volume'])
    await t.rejects(createZfs(only).getDataset('tank/images/nope'), /no recording/, 'a runner over chosen recordings knows only those')
  })

  t.test(`zfs ${v}: GetVolume and GetSnapshot turn recorded listings into the wire shapes`, async (t) => {
    const runner = recordedRunner(v)
    const { services: s, close } = await recordedServices(t.testdir(), runner)
    t.teardown(close)
    t.same(await s.volumes.getVolume({ id: 'images/img', size: 0 }), {
      volumes: [{ id: 'tank/images/img', size: 16, device: '/dev/zvol/tank/images/img' }],
    }, 'volsize in MiB, the zvol device path')
    t.same(await s.snapshots.getSnapshotRpc(snapReq('images/img@base')), {
      snapshots: [{ id: 'tank/images/img@base', size: 0 }],
    }, 'written in MiB, floored (14336 bytes)')
    t.same(runner.calls.map((c) => c.recording), ['get-volume', 'get-snapshot'], 'one zfs list each')
    await t.rejects(s.volumes.getVolume({ id: 'images/img@base', size: 0 }), new InvalidParamsError('not a volume'))
    await t.rejects(s.snapshots.getSnapshotRpc(snapReq('images/img')), new InvalidParamsError('not a snapshot'))
    t.same(runner.changes(), [])
  })

  t.test(`zfs ${v}: zfs's "dataset does not exist" is the original's 'not found'`, async (t) => {
    const runner = recordedRunner(v)
    const { services: s, close } = await recordedServices(t.testdir(), runner)
    t.teardown(close)
    const e = await failure(s.volumes.getVolume({ id: 'images/nope', size: 0 }))
    t.type(e, NotFoundError)
    t.equal(e.message, 'not found')
    t.type(e.cause, DatasetNotFoundError, 'zfs\'s error kept as the cause')
    t.equal((e.cause as ZfsError).command?.stderr, recorded(v, 'err-not-found').stderr)
    t.match(wireError(e, '2.0'), { rpcCode: -32004, httpStatus: 404, message: 'not found', data: { code: 'not_found' } })
    t.equal(wireError(e, '1.0').message, 'not found', 'gorilla 1.0: the bare text')
    t.same(runner.calls.map((c) => c.recording), ['err-not-found'])
  })

  t.test(`zfs ${v}: DeleteImage of an image with clones: zfs refuses, nothing is forgotten`, async (t) => {
    const runner = recordedRunner(v)
    const { services: s, records, close } = await recordedServices(t.testdir(), runner)
    t.teardown(close)
    await records.put('img', IMG)
    const e = await failure(s.images.deleteImage({ id: 'img', type: '', dest: '', source: '' }))
    t.type(e, HasDependentClonesError)
    t.equal(e.message, "cannot destroy 'tank/images/img': volume has dependent clones: guests/g1/disk-0", 'zfs\'s text, and the clones it named (their snapshots left out)')
    t.match(wireError(e), { rpcCode: -32010, httpStatus: 409, message: e.message, data: { code: 'has_clones' } })
    t.equal(wireError(e, '1.0').message, e.message)
    t.same(runner.calls.map((c) => c.recording), ['get-volume', 'err-has-clones'])
    t.same(runner.changes(), ['zfs destroy -r tank/images/img'], 'one recursive destroy, refused whole')
    t.same(await records.get('img'), IMG, 'the record stays')
  })

  t.test(`zfs ${v}: a download's dry run gives zfs's estimate`, async (t) => {
    const runner = recordedRunner(v)
    const { services: s, close } = await recordedServices(t.testdir(), runner)
    t.teardown(close)
    t.same(await s.downloads.describe(dlReq({ id: 'images/img@base' })), {
      snapshot: 'tank/images/img@base', kind: 'full', estimate: 1079920,
    })
    t.same(runner.calls.map((c) => c.recording), ['get-snapshot', 'send-estimate-full'])
    await t.rejects(s.downloads.describe(dlReq({ id: 'images/img' })), new InvalidParamsError('not a snapshot'))
    await t.rejects(s.downloads.describe(dlReq({ id: 'images/nope' })), new NotFoundError('not found'))
    t.same(runner.changes(), [])
  })

  t.test(`zfs ${v}: recorded zfs failures map to their wire errors`, async (t) => {
    // The adapter's error for each recorded failure, through the one wire table.
    const CASES: Array<[string, string, number, number]> = [
      ['err-not-found', 'not_found', -32004, 404],
      ['err-exists', 'already_exists', -32009, 409],
      ['err-snapshot-exists', 'already_exists', -32009, 409],
      ['err-busy-held', 'busy', -32011, 503],
      ['err-has-clones', 'has_clones', -32010, 409],
      ['err-rollback-clones', 'has_clones', -32010, 409],
      ['err-has-children', 'has_children', -32010, 409],
      ['err-more-recent', 'more_recent_snapshots', -32010, 409],
      ['err-out-of-space', 'out_of_space', -32013, 507],
      ['err-invalid-name', 'invalid_name', RPC.invalidParams, 400],
      ['err-no-pool', 'not_found', -32004, 404],
    ]
    const runner = recordedRunner(v)
    for (const [name, code, rpcCode, httpStatus] of CASES) {
      const r = recorded(v, name)
      const e = await failure(runner.run(r.bin as 'zfs' | 'zpool', r.args))
      t.ok(e instanceof ZfsError && !(e instanceof AgentError), `${name}: a zfs error`)
      t.match(wireError(e), { rpcCode, httpStatus, message: r.stderr.split('\n')[0], data: { code } }, `${name} -> ${code}`)
    }
  })
}
