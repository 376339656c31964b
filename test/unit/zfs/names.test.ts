import t from 'tap'
import { assertDatasetName, assertSnapshotName, isWithin, splitSnapshotName } from '../../../src/zfs/names.js'
import { InvalidDatasetNameError } from '../../../src/zfs/errors.js'

t.test('valid dataset names', async (t) => {
  for (const n of ['tank', 'tank/images', 'tank/guests/6f1c-2a/disk-0', 'p/a_b.c:d-e', 'p/0abc']) {
    t.doesNotThrow(() => assertDatasetName(n), n)
  }
})

t.test('invalid dataset names', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    ['tank/', /empty component/],
    ['tank//x', /empty component/],
    ['/tank/x', /pool name/],
    ['tank/../etc', /'\.\.'/],
    ['tank/./x', /'\.'/],
    ['tank/-o', /start with "-"/],
    ['-tank', /pool name/],
    ['tank/a b', /bad characters/],
    ['tank/a*', /bad characters/],
    ['tank/x@y', /snapshot/],
    ['mirror/x', /reserved/],
    ['tank/é', /bad characters/],
    ['tank/' + 'a'.repeat(260), /longer than/],
    ['tank/a\nb', /bad characters/],
  ]
  for (const [n, why] of bad) {
    t.throws(() => assertDatasetName(n), InvalidDatasetNameError, JSON.stringify(n))
    t.throws(() => assertDatasetName(n), { message: why }, JSON.stringify(n))
  }
})

t.test('snapshot names', async (t) => {
  t.doesNotThrow(() => assertSnapshotName('tank/x@snap-1443600000'))
  t.same(splitSnapshotName('tank/x@s'), { dataset: 'tank/x', snapshot: 's' })
  for (const n of ['tank/x', 'tank/x@', 'tank/x@a@b', 'tank/x@-r', 'tank/x@a/b', '@s', 'tank/../x@s']) {
    t.throws(() => assertSnapshotName(n), InvalidDatasetNameError, n)
  }
})

t.test('scope helpers', async (t) => {
  t.ok(isWithin('tank/images', 'tank/images'))
  t.ok(isWithin('tank/images/x@s', 'tank/images'))
  t.ok(isWithin('tank/images@s', 'tank/images'))
  t.notOk(isWithin('tank/imagesX', 'tank/images'))
  t.notOk(isWithin('tank', 'tank/images'))
})
