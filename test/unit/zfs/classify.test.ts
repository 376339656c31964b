import t from 'tap'
import { classify } from '../../../src/zfs/classify.js'
import * as E from '../../../src/zfs/errors.js'
import { recorded, zfsVersions } from '../../helpers/fixtures.js'

/** Each recorded failure and the class it must become. */
const CASES: Array<[string, new (...a: never[]) => E.ZfsError]> = [
  ['err-not-found', E.DatasetNotFoundError],
  ['err-destroy-not-found', E.DatasetNotFoundError],
  ['err-clone-missing', E.DatasetNotFoundError],
  ['err-no-pool', E.DatasetNotFoundError],
  ['err-exists', E.DatasetExistsError],
  ['err-snapshot-exists', E.DatasetExistsError],
  ['err-receive-exists', E.DatasetExistsError],
  ['err-has-clones', E.HasDependentClonesError],
  ['err-rollback-clones', E.HasDependentClonesError],
  ['err-has-children', E.HasChildrenError],
  ['err-more-recent', E.MoreRecentSnapshotsError],
  ['err-busy-held', E.DatasetBusyError],
  ['err-invalid-name', E.InvalidDatasetNameError],
  ['err-out-of-space', E.OutOfSpaceError],
  ['err-invalid-stream', E.InvalidStreamError],
]

for (const v of zfsVersions) {
  t.test(`recorded stderr of zfs ${v}`, async (t) => {
    for (const [name, Cls] of CASES) {
      const r = recorded(v, name)
      t.not(r.exitCode, 0, `${name} really failed`)
      const e = classify({ bin: r.bin, args: r.args, exitCode: r.exitCode, stderr: r.stderr })
      t.type(e, Cls, name)
      t.equal(e.message, r.stderr.split('\n')[0], `${name}: message is zfs's first line`)
      t.same(e.command?.args, r.args)
    }
  })
}

t.test('a missing parent is its own kind of not found (callers make it and retry)', async (t) => {
  const e = classify({ bin: 'zfs', args: ['clone', 'p/images/i@s', 'p/guests/g/disk-0'], exitCode: 1, stderr: "cannot create 'p/guests/g/disk-0': parent does not exist\n" })
  t.type(e, E.ParentNotFoundError)
  t.type(e, E.DatasetNotFoundError, 'still a not-found for everyone else')
  t.type(classify({ bin: 'zfs', args: ['clone'], exitCode: 1, stderr: "cannot open 'p/images/i@s': dataset does not exist\n" }), E.DatasetNotFoundError)
  t.notOk(classify({ bin: 'zfs', args: ['clone'], exitCode: 1, stderr: "cannot open 'p/images/i@s': dataset does not exist\n" }) instanceof E.ParentNotFoundError)
})

t.test('the rest', async (t) => {
  const other = classify({ bin: 'zfs', args: ['x'], exitCode: 1, stderr: 'permission denied\n' })
  t.type(other, E.ZfsCommandError)
  t.equal(other.kind, 'other')
  t.match(other.message, /^zfs x: permission denied$/)
  t.type(classify({ bin: 'zfs', args: ['x'], exitCode: undefined, timedOut: true, stderr: '' }), E.ZfsTimeoutError)
  t.match(classify({ bin: 'zfs', args: ['x'], exitCode: undefined, signal: 'SIGKILL', stderr: '' }).message, /killed by SIGKILL/)
  t.match(classify({ bin: 'zfs', args: ['x'], exitCode: 2, stderr: '' }).message, /exit code 2/)
})
