import t from 'tap'
import * as cmd from '../../../src/zfs/commands.js'
import { InvalidDatasetNameError } from '../../../src/zfs/errors.js'

const COLS = cmd.DATASET_COLUMNS.join(',')

t.test('listings use scripting mode and the fixed columns', async (t) => {
  t.same(cmd.list({ types: ['snapshot'], roots: ['tank/guests'] }), ['list', '-H', '-p', '-t', 'snapshot', '-o', COLS, '-r', 'tank/guests'])
  t.same(cmd.list({ types: ['volume', 'filesystem'], roots: ['tank'], depth: 1 }), ['list', '-H', '-p', '-t', 'volume,filesystem', '-o', COLS, '-d', '1', 'tank'])
  t.same(cmd.list({ types: ['volume'], roots: ['a', 'b'], recursive: false }), ['list', '-H', '-p', '-t', 'volume', '-o', COLS, 'a', 'b'])
  t.same(cmd.getDataset('tank/x@s'), ['list', '-H', '-p', '-t', 'all', '-o', COLS, 'tank/x@s'])
  t.same(cmd.getProps(['tank/a'], ['quota', 'mistify:image']), ['get', '-H', '-p', '-o', 'name,property,value,source', 'quota,mistify:image', 'tank/a'])
  t.same(cmd.zpoolList('tank'), ['list', '-H', '-p', '-o', 'name,size,allocated,free,health,readonly', 'tank'])
  t.same(cmd.zpoolList(), ['list', '-H', '-p', '-o', 'name,size,allocated,free,health,readonly'])
})

t.test('create, snapshot, clone', async (t) => {
  t.same(cmd.createFilesystem('tank/images'), ['create', 'tank/images'])
  t.same(cmd.createFilesystem('tank/g/x', { parents: true, props: { compression: 'lz4' } }), ['create', '-p', '-o', 'compression=lz4', 'tank/g/x'])
  t.same(cmd.createVolume('tank/v', 64 * 1048576, { parents: true, props: { compression: 'lz4' } }), ['create', '-p', '-V', '67108864', '-o', 'compression=lz4', 'tank/v'])
  t.same(cmd.createVolume('tank/v', 4096, { sparse: true, blockSize: 16384 }), ['create', '-s', '-V', '4096', '-b', '16384', 'tank/v'])
  t.same(cmd.createFilesystem('tank/x', { props: { quota: '1', compression: 'lz4' } }), ['create', '-o', 'compression=lz4', '-o', 'quota=1', 'tank/x'], 'props in a stable order')
  t.throws(() => cmd.createVolume('tank/v', 0), RangeError)
  t.throws(() => cmd.createVolume('tank/v', 1.5), RangeError)
  t.throws(() => cmd.createVolume('tank/v', Number.MAX_SAFE_INTEGER + 2), RangeError)
  t.same(cmd.snapshot('tank/g@s'), ['snapshot', 'tank/g@s'])
  t.same(cmd.snapshot('tank/g@s', { recursive: true }), ['snapshot', '-r', 'tank/g@s'])
  t.same(cmd.clone('tank/i/a@s', 'tank/g/x/disk-0', { parents: true, props: { compression: 'lz4' } }), ['clone', '-p', '-o', 'compression=lz4', 'tank/i/a@s', 'tank/g/x/disk-0'])
  t.same(cmd.setProps('tank/x', { quota: '10', 'mistify:image': 'abc' }), ['set', 'mistify:image=abc', 'quota=10', 'tank/x'])
})

t.test('destroy, rollback, rename: flags as options', async (t) => {
  t.same(cmd.destroy('tank/x'), ['destroy', 'tank/x'])
  t.same(cmd.destroy('tank/x', { recursive: true, dependents: true, defer: true, force: true }), ['destroy', '-r', '-R', '-d', '-f', 'tank/x'])
  t.same(cmd.rollback('tank/x@s'), ['rollback', 'tank/x@s'])
  t.same(cmd.rollback('tank/x@s', { destroyMoreRecent: true }), ['rollback', '-r', 'tank/x@s'])
  t.same(cmd.rollback('tank/x@s', { destroyMoreRecent: true, destroyClones: true }), ['rollback', '-R', 'tank/x@s'])
  t.same(cmd.rename('tank/a', 'tank/b/c', { parents: true }), ['rename', '-p', 'tank/a', 'tank/b/c'])
  t.same(cmd.rename('tank/a@s', 'tank/a@t', { parents: true }), ['rename', 'tank/a@s', 'tank/a@t'])
  t.throws(() => cmd.rename('tank/a@s', 'tank/b'), InvalidDatasetNameError)
  t.throws(() => cmd.rollback('tank/x'), InvalidDatasetNameError)
})

t.test('send and receive', async (t) => {
  t.same(cmd.send('tank/x@s'), ['send', 'tank/x@s'])
  t.same(cmd.send('tank/x@s2', { from: 'tank/x@s1' }), ['send', '-i', 'tank/x@s1', 'tank/x@s2'])
  t.same(cmd.send('tank/x@s2', { from: '@s1', intermediates: true, replicate: true, compressed: true }), ['send', '-R', '-c', '-I', '@s1', 'tank/x@s2'])
  t.same(cmd.send('tank/x@s2', { from: '#bm', raw: true, largeBlocks: true, embedded: true }), ['send', '-w', '-L', '-e', '-i', '#bm', 'tank/x@s2'])
  t.same(cmd.sendEstimate('tank/x@s'), ['send', '-n', '-P', 'tank/x@s'])
  t.same(cmd.sendResume('1-abc-d0-789c'), ['send', '-t', '1-abc-d0-789c'])
  t.throws(() => cmd.sendResume('-o x'), InvalidDatasetNameError)
  t.throws(() => cmd.send('tank/x@s', { from: '@-x' }), InvalidDatasetNameError)
  t.throws(() => cmd.send('tank/x'), InvalidDatasetNameError)
  t.same(cmd.receive('tank/i/x'), ['receive', 'tank/i/x'])
  t.same(cmd.receive('tank/i/x', { resumable: true, force: true, noMount: true, props: { compression: 'lz4' } }), ['receive', '-s', '-F', '-u', '-o', 'compression=lz4', 'tank/i/x'])
})

t.test('scan: one recursive get of type, userrefs and the properties asked for', async (t) => {
  t.same(cmd.scan(['tank/images', 'tank/guests']), ['get', '-H', '-p', '-r', '-t', 'all', '-o', 'name,property,value,source', 'type,userrefs', 'tank/images', 'tank/guests'])
  t.same(cmd.scan(['tank/images'], ['mistify:image']), ['get', '-H', '-p', '-r', '-t', 'all', '-o', 'name,property,value,source', 'type,userrefs,mistify:image', 'tank/images'])
  t.throws(() => cmd.scan(['-r']), InvalidDatasetNameError)
  t.throws(() => cmd.scan(['tank/images'], ['type,-r']), InvalidDatasetNameError, 'a property list cannot smuggle an option')
})

t.test('holds', async (t) => {
  t.same(cmd.hold('mistify-send', 'tank/x@s'), ['hold', 'mistify-send', 'tank/x@s'])
  t.same(cmd.release('mistify-send', 'tank/x@s'), ['release', 'mistify-send', 'tank/x@s'])
  t.same(cmd.holds(['tank/x@s'], { recursive: true }), ['holds', '-H', '-r', 'tank/x@s'])
  t.throws(() => cmd.hold('-r', 'tank/x@s'), InvalidDatasetNameError)
  t.same(cmd.hold('t', 'tank/x@s', { recursive: true }), ['hold', '-r', 't', 'tank/x@s'])
  t.same(cmd.release('t', 'tank/x@s', { recursive: true }), ['release', '-r', 't', 'tank/x@s'])
  t.same(cmd.sendResume('1-abc-d0-789c', { describe: true }), ['send', '-n', '-v', '-P', '-t', '1-abc-d0-789c'])
})

t.test('nothing unchecked reaches argv', async (t) => {
  const bad = ['tank/../x', '-Rf', 'tank/-o', 'tank//a', 'tank/a b', '', 'tank/x\n', 'tank/x;rm']
  for (const b of bad) {
    t.throws(() => cmd.destroy(b), InvalidDatasetNameError, `destroy ${JSON.stringify(b)}`)
    t.throws(() => cmd.createFilesystem(b), InvalidDatasetNameError, `create ${JSON.stringify(b)}`)
    t.throws(() => cmd.clone('tank/a@s', b), InvalidDatasetNameError, `clone ${JSON.stringify(b)}`)
    t.throws(() => cmd.receive(b), InvalidDatasetNameError, `receive ${JSON.stringify(b)}`)
    t.throws(() => cmd.list({ types: ['all' as 'volume'], roots: [b] }), InvalidDatasetNameError, `list ${JSON.stringify(b)}`)
  }
  t.throws(() => cmd.createFilesystem('tank/x', { props: { 'Bad Prop': 'x' } }), InvalidDatasetNameError)
  t.throws(() => cmd.createFilesystem('tank/x', { props: { quota: 'a\nb' } }), InvalidDatasetNameError)
  t.throws(() => cmd.setProps('tank/x', {}), InvalidDatasetNameError)
})
