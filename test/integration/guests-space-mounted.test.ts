/**
 * The space check of CloneImage, VerifyDisks and CreateGuestDisks when
 * <pool>/guests is mounted: the kernel's statfs answers instead of `zfs list`
 * (src/zfs/mounted.ts), with the same verdicts as zfs's `available`.
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { haveZfs, sh } from '../helpers/zpool.js'
import { startAgent, IMAGE_ID, type TestAgent } from '../helpers/agent.js'
import { zfsState } from '../helpers/reliability.js'
import { mountedAvailable } from '../../src/zfs/mounted.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const prop = (ds: string, p: string) => sh('zfs', ['get', '-H', '-p', '-o', 'value', p, ds]).trim()

/** zfs list commands the agent has run so far (its command histogram). */
async function lists(a: TestAgent): Promise<number> {
  const m = await a.agent.metrics.zfsDuration.get()
  return m.values.filter((v) => v.metricName?.endsWith('_count') && v.labels.bin === 'zfs' && v.labels.command === 'list').reduce((s, v) => s + v.value, 0)
}

t.test('guests/ mounted: statfs gives zfs\'s available, and the checks refuse and allow as with zfs list', async (t) => {
  const a = await startAgent(t)
  t.equal((await a.call('v1', 'RequestImage', { id: IMAGE_ID })).result?.images?.[0]?.status, 'complete', 'image imported (4 MiB)')
  const guests = `${a.pool}/guests`
  t.equal(await mountedAvailable(guests), undefined, 'not mounted (mountpoint=none): zfs answers')
  const where = mkdtempSync(join(tmpdir(), 'mistify-guests-'))
  sh('zfs', ['set', `mountpoint=${where}`, guests])
  t.teardown(() => { try { sh('zfs', ['set', 'mountpoint=none', guests]) } catch { /* pool gone */ } rmSync(where, { recursive: true, force: true }) })
  t.equal(prop(guests, 'mounted'), 'yes')

  const viaKernel = await mountedAvailable(guests)
  const viaZfs = Number(prop(guests, 'available'))
  t.ok(viaKernel !== undefined && viaKernel <= viaZfs && viaZfs - viaKernel < 1 << 20,
    `statfs ${viaKernel} bytes, zfs available ${viaZfs}: the same less the record-size rounding`)

  sh('zfs', ['set', 'quota=2M', guests])
  const kernelFull = await mountedAvailable(guests)
  t.ok(kernelFull !== undefined && kernelFull < 4 << 20, `with quota=2M statfs says ${kernelFull} bytes`)
  const before = zfsState([a.pool])
  const listsBefore = await lists(a)
  for (const dialect of ['v1', 'v2'] as const) {
    t.equal((await a.call(dialect, 'CloneImage', { id: IMAGE_ID, dest: 'guests/full/disk-0' })).error, 'no space left on device', `${dialect} CloneImage refused`)
    t.equal((await a.call(dialect, 'VerifyDisks', { guest: { id: 'full', disks: [{ image: IMAGE_ID }] } })).error, 'no space left on device', `${dialect} VerifyDisks agrees`)
    t.equal((await a.call(dialect, 'CreateGuestDisks', { guest: { id: 'full', disks: [{ image: IMAGE_ID }] } })).error, 'no space left on device', `${dialect} CreateGuestDisks agrees`)
  }
  t.equal(await lists(a), listsBefore, 'no zfs list ran for the checks: the kernel answered')
  t.same(zfsState([a.pool]), before, 'nothing changed')

  sh('zfs', ['set', 'quota=none', guests])
  const ok = await a.call('v2', 'CloneImage', { id: IMAGE_ID, dest: 'guests/full/disk-0' })
  t.same(ok.result, { volumes: [{ id: `${guests}/full/disk-0`, size: 4, device: `/dev/zvol/${guests}/full/disk-0` }] }, 'with room, the clone is made')
  t.equal(prop(`${guests}/full/disk-0`, 'origin'), `${a.pool}/images/${IMAGE_ID}@test`)
  const g = await a.call('v1', 'CreateGuestDisks', { guest: { id: 'g1', disks: [{ image: IMAGE_ID }, { image: IMAGE_ID }] } })
  t.equal(g.error, undefined, 'CreateGuestDisks with room')
  t.equal(prop(`${guests}/g1/disk-1`, 'origin'), `${a.pool}/images/${IMAGE_ID}@test`)
  t.equal(await lists(a), listsBefore, 'still no zfs list: a clone and a guest need none when guests/ is mounted')
})
