import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { mountedAvailable, zfsMountpoint } from '../../../src/zfs/mounted.js'

const INFO = [
  '22 27 0:21 / /proc rw,relatime - proc proc rw',
  '80 27 0:50 / /tank rw,relatime shared:40 - zfs tank rw,xattr,noacl',
  '81 80 0:51 / /tank/guests rw,relatime shared:41 - zfs tank/guests rw,xattr,noacl',
  '82 27 0:52 / /srv/with\\040space rw - zfs tank/odd\\040name rw',
  '83 27 0:53 / /not-zfs rw - ext4 tank/guests2 rw',
  '84 27 0:54 / /no-optional-fields rw - zfs tank/plain rw',
].join('\n')

t.test('zfsMountpoint: the mountpoint of a zfs mount of exactly that dataset', async (t) => {
  t.equal(zfsMountpoint(INFO, 'tank/guests'), '/tank/guests')
  t.equal(zfsMountpoint(INFO, 'tank'), '/tank')
  t.equal(zfsMountpoint(INFO, 'tank/odd name'), '/srv/with space', 'octal escapes undone')
  t.equal(zfsMountpoint(INFO, 'tank/plain'), '/no-optional-fields')
  t.equal(zfsMountpoint(INFO, 'tank/guests2'), undefined, 'only zfs mounts count')
  t.equal(zfsMountpoint(INFO, 'tank/gues'), undefined, 'no prefix matches')
  t.equal(zfsMountpoint(INFO, 'proc'), undefined)
  t.equal(zfsMountpoint('', 'tank'), undefined)
})

t.test('mountedAvailable: undefined (ask zfs) when not mounted, or mounted where statfs fails', async (t) => {
  const dir = t.testdir()
  const info = join(dir, 'mountinfo')
  writeFileSync(info, INFO)
  t.equal(await mountedAvailable('tank/elsewhere', info), undefined)
  t.equal(await mountedAvailable('tank/guests', join(dir, 'missing')), undefined, 'no mountinfo: ask zfs')
  writeFileSync(info, `90 27 0:60 / ${dir}/gone rw - zfs tank/guests rw`)
  t.equal(await mountedAvailable('tank/guests', info), undefined, 'mountpoint gone in between: ask zfs')
  writeFileSync(info, `90 27 0:60 / ${dir} rw - zfs tank/guests rw`)
  const bytes = await mountedAvailable('tank/guests', info)
  t.ok(typeof bytes === 'number' && bytes > 0, `statfs of the mountpoint answers (${bytes} bytes)`)
})
