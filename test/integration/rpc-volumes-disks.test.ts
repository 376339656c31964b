import t from 'tap'
import { existsSync } from 'node:fs'
import { haveZfs, sh, settle } from '../helpers/zpool.js'
import { startAgent, IMAGE_ID, type Dialect } from '../helpers/agent.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const names = (root: string, type = 'all') => sh('zfs', ['list', '-H', '-o', 'name', '-t', type, '-r', root]).trim().split('\n').filter(Boolean)
const exists = (n: string) => { try { sh('zfs', ['list', '-H', '-o', 'name', n]); return true } catch { return false } }

for (const dialect of ['v1', 'v2'] as Dialect[]) {
  t.test(`volume methods (${dialect})`, async (t) => {
    const a = await startAgent(t)
    const call = (m: string, p: unknown) => a.call(dialect, m, p)
    const id = 'guests/vols/v1'

    t.same((await call('ListVolumes', {})).result, { volumes: [] })
    t.equal((await call('CreateVolume', { id: 'asdf' })).error, 'need a valid size')
    t.equal((await call('CreateVolume', { id: 'asdf', size: 0 })).error, 'need a valid size')
    t.equal((await call('CreateVolume', { size: 64 })).error, 'need an id')
    const made = await call('CreateVolume', { id, size: 64 })
    t.same(made.result, { volumes: [{ id: `${a.pool}/${id}`, size: 64, device: `/dev/zvol/${a.pool}/${id}` }] })
    settle()
    t.ok(existsSync(`/dev/zvol/${a.pool}/${id}`), 'the device node exists')
    t.equal(sh('zfs', ['get', '-H', '-p', '-o', 'value', 'volsize', `${a.pool}/${id}`]).trim(), String(64 << 20))
    t.match((await call('CreateVolume', { id, size: 64 })).error, /already exists/)
    t.match((await call('CreateVolume', { id: 'x', size: 64 })).error, /outside/)
    t.match((await call('CreateVolume', { id: 'guests', size: 64 })).error, /refusing/)
    t.match((await call('CreateVolume', { id: 'guests/v', size: -1 })).error, /cannot unmarshal number -1/)
    t.match((await call('CreateVolume', { id: 'guests/v', size: '64' })).error, /cannot unmarshal string/)
    t.match((await call('CreateVolume', { id: 'guests/v', size: 2 ** 50 })).error, /need a valid size|out of space/)
    t.same((await call('ListVolumes', {})).result.volumes.map((v: { id: string }) => v.id), [`${a.pool}/${id}`])

    t.equal((await call('GetVolume', {})).error, 'need an id')
    t.equal((await call('GetVolume', { id: 'guests/adsf' })).error, 'not found')
    t.equal((await call('GetVolume', { id: 'guests/vols' })).error, 'not a volume')
    t.equal((await call('GetVolume', { id })).result.volumes[0].id, `${a.pool}/${id}`)

    t.equal((await call('DeleteDataset', {})).error, 'need an id')
    t.equal((await call('DeleteDataset', { id: 'guests/adsf' })).error, 'not found')
    t.equal((await call('DeleteDataset', { id: `${id}*` })).error, 'not a valid dataset')
    t.match((await call('DeleteDataset', { id: 'guests' })).error, /refusing/, 'never the tree itself')
    t.match((await call('DeleteDataset', { id: '../../x' })).error, /not a valid dataset/)
    await call('RequestImage', { id: IMAGE_ID })
    t.match((await call('DeleteDataset', { id: `images/${IMAGE_ID}` })).error, /^not a valid dataset: \S+ is in \S+\/images; images change only through the image methods \(RequestImage, DeleteImage\)$/, 'an image goes through DeleteImage')
    t.same((await call('DeleteDataset', { id })).result, { volumes: [{ id: `${a.pool}/${id}`, size: 64, device: `/dev/zvol/${a.pool}/${id}` }] })
    t.notOk(exists(`${a.pool}/${id}`))
  })

  t.test(`guest disk methods (${dialect})`, async (t) => {
    const a = await startAgent(t)
    const call = (m: string, p: unknown) => a.call(dialect, m, p)
    await call('RequestImage', { id: IMAGE_ID })
    const guest = (disks: unknown[] | undefined, id = 'g-1') => ({ guest: { id, ...(disks ? { disks } : {}) } })

    for (const m of ['VerifyDisks', 'CreateGuestDisks']) {
      t.equal((await call(m, {})).error, 'invalid argument', `${m}: missing guest`)
      t.equal((await call(m, { guest: {} })).error, 'invalid argument', `${m}: guest without id`)
      t.equal((await call(m, guest(undefined))).error, 'invalid argument', `${m}: no disks`)
      t.equal((await call(m, guest([{}]))).error, 'invalid argument', `${m}: disk with neither size nor image`)
      t.equal((await call(m, guest([{ size: 1e10 }]))).error, 'no space left on device', `${m}: too much space`)
      t.equal((await call(m, guest([{ image: 'asdf' }]))).error, 'not found', `${m}: unknown image`)
      t.match((await call(m, guest([{ size: 10 }], '../x'))).error, /invalid guest id/, `${m}: guest id checked`)
    }
    t.notOk(exists(`${a.pool}/guests/g-1`), 'failed calls created nothing')

    const v = await call('VerifyDisks', guest([{ size: 10 }, { image: IMAGE_ID }]))
    t.same(v.result.guest.disks.map((d: { size: number }) => d.size), [10, 4], 'image disks take the image size')
    // The space check is in bytes: 10 MiB under a 256 MiB pool fits, the pool's free space plus one MiB does not.
    const avail = Number(sh('zfs', ['get', '-H', '-p', '-o', 'value', 'available', `${a.pool}/guests`]).trim())
    t.equal((await call('VerifyDisks', guest([{ size: Math.floor(avail / 2 ** 20) + 1 }]))).error, 'no space left on device')
    t.ok((await call('VerifyDisks', guest([{ size: Math.floor(avail / 2 ** 20) - 8 }]))).result, 'just under the free space is fine')

    const req = { guest: { id: 'g-1', memory: 512, extra: 'dropped', nics: [{ network: 'n', model: 'virtio', address: '', netmask: '', gateway: '' }], disks: [{ bus: 'virtio', device: 'vda', image: IMAGE_ID }, { bus: 'virtio', device: 'vdb', size: 16 }] } }
    const c = await call('CreateGuestDisks', req)
    t.same(c.result, {
      guest: {
        id: 'g-1',
        nics: [{ network: 'n', model: 'virtio', address: '', netmask: '', gateway: '', vlans: null }],
        disks: [
          { bus: 'virtio', device: 'vda', size: 4, volume: `${a.pool}/guests/g-1/disk-0`, image: IMAGE_ID, source: `/dev/zvol/${a.pool}/guests/g-1/disk-0` },
          { bus: 'virtio', device: 'vdb', size: 16, volume: `${a.pool}/guests/g-1/disk-1`, image: '', source: `/dev/zvol/${a.pool}/guests/g-1/disk-1` },
        ],
        memory: 512,
      },
    }, 'the guest echoed as Go would: unknown keys dropped, empties omitted')
    t.equal(sh('zfs', ['get', '-H', '-o', 'value', 'origin', `${a.pool}/guests/g-1/disk-0`]).trim(), `${a.pool}/images/${IMAGE_ID}@test`)
    settle()
    t.ok(existsSync(`/dev/zvol/${a.pool}/guests/g-1/disk-1`))
    t.same((await call('CreateGuestDisks', req)).result, c.result, 'sent again: the same answer, nothing new')

    // All or nothing: the third disk cannot be made (too big for the pool's free space after the first two).
    const before = names(`${a.pool}/guests`)
    sh('zfs', ['create', '-V', '1M', `${a.pool}/guests/g-2`]) // a non-filesystem where g-2's parent must go
    const partial = await call('CreateGuestDisks', { guest: { id: 'g-2', disks: [{ size: 8 }, { size: 8 }] } })
    t.ok(partial.error, `fails: ${partial.error}`)
    sh('zfs', ['destroy', `${a.pool}/guests/g-2`])
    sh('zfs', ['create', '-o', 'quota=20M', `${a.pool}/guests/g-3`])
    const over = await call('CreateGuestDisks', { guest: { id: 'g-3', disks: [{ size: 8 }, { size: 30 }] } })
    t.ok(over.error, `fails on the second disk: ${over.error}`)
    t.same(names(`${a.pool}/guests/g-3`), [`${a.pool}/guests/g-3`], 'the first disk was destroyed again; the pre-existing guest filesystem kept')
    sh('zfs', ['destroy', `${a.pool}/guests/g-3`])
    t.same(names(`${a.pool}/guests`), before, 'nothing left behind')

    t.equal((await call('DeleteGuestsDisks', {})).error, 'invalid argument')
    t.equal((await call('DeleteGuestsDisks', { guest: {} })).error, 'invalid argument')
    t.same((await call('DeleteGuestsDisks', guest(undefined, 'never-created'))).result, { guest: { id: 'never-created' } }, 'a missing guest is success (the original erred)')
    t.match((await call('DeleteImage', { id: IMAGE_ID })).error, /dependent clones/)
    const d = await call('DeleteGuestsDisks', req)
    t.same(d.result, { guest: { id: 'g-1', nics: c.result.guest.nics, memory: 512 } }, 'disks emptied: no disks key')
    t.notOk(exists(`${a.pool}/guests/g-1`))
    t.equal((await call('DeleteImage', { id: IMAGE_ID })).result.images[0].id, IMAGE_ID, 'the image is free to go now')
  })
}
