import t from 'tap'
import * as parse from '../../../src/zfs/parse.js'
import * as cmd from '../../../src/zfs/commands.js'
import { ZfsParseError } from '../../../src/zfs/errors.js'
import { recorded, zfsVersions } from '../../helpers/fixtures.js'

for (const v of zfsVersions) {
  t.test(`zfs ${v}`, async (t) => {
    t.test('the recorded argv is what the builders make today', async (t) => {
      t.same(recorded(v, 'list-all').args, cmd.list({ types: ['filesystem', 'volume', 'snapshot'], roots: ['tank'] }))
      t.same(recorded(v, 'get-volume').args, cmd.getDataset('tank/images/img'))
      t.same(recorded(v, 'zpool-list').args, cmd.zpoolList('tank'))
    })

    t.test('list -t all', async (t) => {
      const ds = parse.parseDatasets(recorded(v, 'list-all').stdout)
      t.equal(ds.length, 11)
      const byName = new Map(ds.map((d) => [d.name, d]))
      const pool = byName.get('tank')!
      t.equal(pool.type, 'filesystem')
      t.equal(pool.quota, undefined, 'quota 0 means none')
      t.ok(pool.available! > 0)
      t.equal(byName.get('tank/guests')!.quota, 200 * 1024 * 1024)
      const clone = byName.get('tank/guests/g1/disk-0')!
      t.equal(clone.type, 'volume')
      t.equal(clone.origin, 'tank/images/img@base')
      t.same(byName.get('tank/images/img@base')!.clones, ['tank/guests/g1/disk-0'])
      t.same(clone.clones, [])
      t.ok(byName.get('tank/guests/g1@snap-2')!.createtxg > byName.get('tank/guests/g1@snap-1')!.createtxg)
      t.equal(clone.volsize, 16 * 1024 * 1024)
      const snap = byName.get('tank/images/img@base')!
      t.equal(snap.type, 'snapshot')
      t.equal(snap.available, undefined)
      t.equal(snap.quota, undefined)
      t.equal(snap.volsize, 16 * 1024 * 1024)
      t.ok(snap.written > 0)
      t.match(snap.guid, /^\d+$/)
      t.ok(snap.creation > 1_600_000_000)
      t.equal(snap.receiveResumeToken, undefined)
      t.equal(byName.get('tank/guests')!.volsize, undefined)
    })

    t.test('other listings', async (t) => {
      t.same(parse.parseDatasets(recorded(v, 'list-snapshots').stdout).map((d) => d.name), [
        'tank/guests/g1@snap-1', 'tank/guests/g1@snap-2', 'tank/guests/g1/disk-0@snap-1', 'tank/guests/g1/disk-0@snap-2'])
      t.same(parse.parseDatasets(recorded(v, 'list-volumes').stdout).map((d) => d.name), ['tank/guests/g1/disk-0', 'tank/images/img'])
      t.same(parse.parseDatasets(recorded(v, 'list-empty').stdout), [])
      t.equal(parse.parseDatasets(recorded(v, 'get-snapshot').stdout)[0]?.name, 'tank/images/img@base')
    })

    t.test('get', async (t) => {
      const props = parse.parseProps(recorded(v, 'get-props').stdout)
      t.same(props.filter((p) => p.name === 'tank/guests').map((p) => [p.property, p.value, p.source]), [
        ['compression', 'off', 'default'], ['quota', '209715200', 'local'], ['volsize', undefined, undefined]])
    })

    t.test('scan', async (t) => {
      const tree = parse.parseScan(recorded(v, 'svc-scan').stdout)
      const by = new Map(tree.map((d) => [d.name, d]))
      t.match(by.get('tank/images'), { type: 'filesystem', userrefs: 0 })
      t.match(by.get('tank/images/img'), { type: 'volume', userrefs: 0 })
      t.match(by.get('tank/images/img@base'), { type: 'snapshot', userrefs: 0 })
      t.match(by.get('tank/guests/g1@snap-2'), { type: 'snapshot', userrefs: 1 }, 'the operator\'s mistify-send hold')
      t.ok(tree.every((d) => d.name.startsWith('tank/images') || d.name.startsWith('tank/guests')))
      t.throws(() => parse.parseScan('tank/x\ttype\tweird\t-\n'), ZfsParseError, 'an unknown type')
      t.throws(() => parse.parseScan('tank/x\tuserrefs\t1\t-\n'), ZfsParseError, 'no type')
      t.throws(() => parse.parseScan('tank/x@s\ttype\tsnapshot\t-\ntank/x@s\tuserrefs\tmany\t-\n'), ZfsParseError, 'userrefs not a number')
      t.same(parse.parseScan('tank/x@s\ttype\tsnapshot\t-\ntank/x@s\tuserrefs\t2\t-\ntank/x\ttype\tvolume\t-\ntank/x\tuserrefs\t-\t-\n'),
        [{ name: 'tank/x@s', type: 'snapshot', userrefs: 2, props: new Map() }, { name: 'tank/x', type: 'volume', userrefs: 0, props: new Map() }])
      const marked = parse.parseScan('tank/x\ttype\tvolume\t-\ntank/x\tuserrefs\t-\t-\ntank/x\tmistify:image\tx\tlocal\ntank/x\tmistify:format\t-\t-\n')
      t.same([...marked[0]!.props], [['mistify:image', 'x']], 'a user property set is kept, one not set ("-") is not')
    })

    t.test('zpool, holds, send estimate', async (t) => {
      const [pool] = parse.parsePools(recorded(v, 'zpool-list').stdout)
      t.match(pool, { name: 'tank', health: 'ONLINE', readonly: false })
      t.equal(pool!.size, pool!.allocated + pool!.free)
      const [hold] = parse.parseHolds(recorded(v, 'holds').stdout)
      t.match(hold, { snapshot: 'tank/guests/g1@snap-2', tag: 'mistify-send' })
      t.ok(parse.parseSendEstimate(recorded(v, 'send-estimate-full').stdout) > 1024 * 1024)
      const inc = parse.parseSendEstimate(recorded(v, 'send-estimate-incremental').stdout)
      t.ok(inc > 0 && inc < 64 * 1024)
    })
  })
}

t.test('resume token contents (as zfs 2.1.11 printed them in the VM)', async (t) => {
  const out = 'resume token contents:\nnvlist version: 0\n\tobject = 0x1\n\toffset = 0x2be000\n\tbytes = 0x2daf70\n\ttoguid = 0xc6e9c113b057c99b\n\ttoname = p/v@s\nfull\tp/v@s\t14251568\nsize\t14251568\n'
  t.same(parse.parseResumeToken(out), { toname: 'p/v@s', toguid: 0xc6e9c113b057c99bn, fromguid: undefined, resolved: { to: 'p/v@s' }, size: 14251568 })
  t.throws(() => parse.parseResumeToken('nvlist version: 0\nsize\t1\n'), ZfsParseError)
  // The dry run names what the guids resolved to, which need not be toname (issue 12 item 1).
  const forged = out.replace('full\tp/v@s', 'full\tp/outside@s')
  t.same(parse.parseResumeToken(forged).resolved, { to: 'p/outside@s' })
  const inc = out.replace('\ttoname', '\tfromguid = 0x10\n\ttoname').replace('full\tp/v@s', 'incremental\tp/v@a\tp/v@s')
  t.match(parse.parseResumeToken(inc), { fromguid: 16n, resolved: { from: 'p/v@a', to: 'p/v@s' } })
  t.throws(() => parse.parseResumeToken(out.replace('0xc6e9c113b057c99b', 'zz')), ZfsParseError)
})

t.test('shape drift fails loudly', async (t) => {
  const row = (o: Record<number, string>) => ['tank', 'filesystem', '-', '1', '2', '3', '-', '4', '0', '5', '7', '6', '-', '-'].map((c, i) => o[i] ?? c).join('\t') + '\n'
  t.equal(parse.parseDatasets(row({}))[0]?.createtxg, 7, 'the row helper makes a valid row')
  t.throws(() => parse.parseDatasets('tank\tfilesystem\n'), ZfsParseError)
  t.throws(() => parse.parseDatasets(row({ 14: 'extra' }).replace('\n', '\textra\n')), { message: /15 columns, expected 14/ })
  t.throws(() => parse.parseDatasets(row({ 1: 'weird' })), { message: /unknown type/ })
  t.throws(() => parse.parseDatasets(row({ 3: '1.5G' })), { message: /whole number/ })
  t.throws(() => parse.parseDatasets(row({ 3: '99999999999999999999' })), ZfsParseError)
  t.throws(() => parse.parseSendEstimate('full\tx\t12\n'), ZfsParseError)
  t.throws(() => parse.parsePools('tank\t1\t2\n'), ZfsParseError)
  t.same(parse.parseDatasets(''), [])
})
