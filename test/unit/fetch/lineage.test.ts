import t from 'tap'
import { parseServiceRecord, planFetch, type ServiceRecord, type Step } from '../../../src/agent/import/lineage.js'
import { assertIncrementFrom } from '../../../src/agent/import/payload.js'
import { UpstreamError } from '../../../src/agent/errors.js'
import { HasDependentClonesError } from '../../../src/zfs/index.js'

/** v1 (root) ← v2 ← v3 ← v4, each version 1000 bytes whole and its increment 10. */
function chain(n: number, o: { full?: number; inc?: number } = {}): Map<string, ServiceRecord> {
  const m = new Map<string, ServiceRecord>()
  for (let i = 1; i <= n; i++) {
    m.set(`v${i}`, {
      id: `v${i}`, size: o.full ?? 1000, snapshot_guid: String(100 + i),
      origin: i === 1 ? '' : `v${i - 1}`, increment: i === 1 ? null : { from_guid: String(99 + i), size: o.inc ?? 10, sha256: 'a'.repeat(64) },
    })
  }
  return m
}

const inputs = (m: Map<string, ServiceRecord>, held: string[], depth = 8) => {
  const looked: string[] = []
  return {
    looked,
    p: {
      depth,
      lookup: async (id: string) => { looked.push(id); return m.get(id) },
      holds: async (r: ServiceRecord) => held.includes(r.id),
    },
  }
}
const show = (steps: Step[]) => steps.map((s) => `${s.kind}:${s.record.id}`)

t.test('holding a version of the chain: only the increments after it', async (t) => {
  const m = chain(4)
  t.same(show(await planFetch(m.get('v4')!, inputs(m, ['v1']).p)), ['increment:v2', 'increment:v3', 'increment:v4'], 'v1 held: three increments, origin first')
  t.same(show(await planFetch(m.get('v4')!, inputs(m, ['v3', 'v1']).p)), ['increment:v4'], 'the nearest version held wins')
  const { p, looked } = inputs(m, ['v3'])
  await planFetch(m.get('v4')!, p)
  t.same(looked, ['v3'], 'the walk stops at the first version held')
})

t.test('holding nothing: the chain or the full image, whichever is fewer bytes', async (t) => {
  const m = chain(3)
  t.same(show(await planFetch(m.get('v3')!, inputs(m, []).p)), ['full:v3'], 'v1 whole plus increments is more than v3 whole')
  const small = chain(3)
  small.set('v1', { ...small.get('v1')!, size: 500 })
  t.same(show(await planFetch(small.get('v3')!, inputs(small, []).p)), ['full:v1', 'increment:v2', 'increment:v3'], 'a small root plus increments is cheaper')
})

t.test('increments bigger than the image: the full stream', async (t) => {
  const m = chain(3, { inc: 600 })
  t.same(show(await planFetch(m.get('v3')!, inputs(m, ['v1']).p)), ['full:v3'], '1200 bytes of increments against 1000 whole')
  t.same(show(await planFetch(m.get('v3')!, inputs(m, ['v2']).p)), ['increment:v3'], 'one increment of 600 is cheaper')
})

t.test('depth bounds the increments fetched', async (t) => {
  const m = chain(4)
  t.same(show(await planFetch(m.get('v4')!, inputs(m, ['v1'], 2).p)), ['full:v4'], 'v1 is three increments away: not reached with depth 2')
  t.same(show(await planFetch(m.get('v4')!, inputs(m, ['v2'], 2).p)), ['increment:v3', 'increment:v4'])
  t.same(show(await planFetch(m.get('v4')!, inputs(m, ['v3'], 0).p)), ['full:v4'], 'depth 0: always whole')
})

t.test('a link that does not hold ends the walk', async (t) => {
  const m = chain(3)
  m.set('v2', { ...m.get('v2')!, snapshot_guid: '999' }) // v3's increment is not from v2's snapshot
  t.same(show(await planFetch(m.get('v3')!, inputs(m, ['v2']).p)), ['full:v3'], 'a from-guid that is not the origin\'s snapshot guid')
  const gone = chain(3)
  gone.delete('v1')
  t.same(show(await planFetch(gone.get('v3')!, inputs(gone, ['v1']).p)), ['full:v3'], 'an origin the service no longer has')
  const cyc = chain(2)
  cyc.set('v1', { ...cyc.get('v1')!, origin: 'v2', increment: { from_guid: '102', size: 10, sha256: 'a'.repeat(64) } })
  t.same(show(await planFetch(cyc.get('v2')!, inputs(cyc, []).p)), ['full:v2'], 'a cycle ends')
  const noGuid = chain(2)
  noGuid.set('v2', { ...noGuid.get('v2')!, snapshot_guid: '' })
  t.same(show(await planFetch(noGuid.get('v2')!, inputs(noGuid, ['v1']).p)), ['full:v2'], 'no snapshot guid, no chain')
})

t.test('records as the image service sends them', async (t) => {
  const r = parseServiceRecord('b2', JSON.stringify({ id: 'b2', size: 5, snapshot_guid: '14333961404386478491', origin: 'a1', increment: { from_guid: '2097', size: 3, sha256: 'f'.repeat(64) }, name: 'x' }))
  t.same(r, { id: 'b2', size: 5, snapshot_guid: '14333961404386478491', origin: 'a1', increment: { from_guid: '2097', size: 3, sha256: 'f'.repeat(64) } })
  t.same(parseServiceRecord('a', '{"id":"a","size":1}'), { id: 'a', size: 1, snapshot_guid: '', origin: '', increment: null }, 'an older service: no lineage')
  for (const [body, what] of [['nope', /not JSON/], ['{"id":"other","size":1}', /bad id/], ['{"id":"a","size":-1}', /bad size/],
    ['{"id":"a","size":1,"snapshot_guid":"12x"}', /snapshot_guid/], ['{"id":"a","size":1,"increment":{"from_guid":"1","size":1,"sha256":"zz"}}', /increment.sha256/]] as const) {
    t.throws(() => parseServiceRecord('a', body), what)
  }
})

t.test('an increment is checked against the origin snapshot\'s guid before receiving', async (t) => {
  const origin = { snapshot: 'tank/images/a@v1', guid: 42n }
  const h = { compound: false, clone: false, fromguid: 42n, toguid: 43n }
  t.doesNotThrow(() => assertIncrementFrom('b', h, origin))
  t.doesNotThrow(() => assertIncrementFrom('b', { ...h, clone: true }, origin), 'a clone stream of that same snapshot')
  t.throws(() => assertIncrementFrom('b', { ...h, fromguid: 7n }, origin), new UpstreamError('image b: the increment starts from guid 7, not from tank/images/a@v1 (guid 42); refused before receiving'))
  t.throws(() => assertIncrementFrom('b', { ...h, fromguid: 0n }, origin), /a full stream/)
  t.throws(() => assertIncrementFrom('b', { ...h, compound: true }, origin), /zfs send -R\/-p/)
})

t.test('zfs names the clones in the way of a destroy', async (t) => {
  const stderr = "cannot destroy 'tank/images/a': volume has dependent clones\nuse '-R' to destroy the following datasets:\ntank/images/b@v2\ntank/images/b\ntank/guests/g/disk-0\n"
  const e = new HasDependentClonesError('x', { bin: 'zfs', args: [], stderr, exitCode: 1 } as never)
  t.same(e.dependents, ['tank/images/b', 'tank/guests/g/disk-0'])
  t.same(new HasDependentClonesError('x').dependents, [], 'no command, no names')
})
