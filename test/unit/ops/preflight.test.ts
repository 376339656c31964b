import t from 'tap'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join, delimiter } from 'node:path'
import { preflight, preflightProblems, PreflightError, which } from '../../../src/agent/ops/preflight.js'

function fakeBin(dir: string, name: string, mode = 0o755): void {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, name), '#!/bin/sh\nexit 0\n')
  chmodSync(join(dir, name), mode)
}

t.test('all present: no problems', async (t) => {
  const root = t.testdir({ dev: { zfs: '' }, sys: { zfs: {} } })
  const bin = join(root, 'bin')
  fakeBin(bin, 'zfs')
  fakeBin(bin, 'zpool')
  t.same(preflightProblems({ path: bin, devZfs: join(root, 'dev/zfs'), sysModule: join(root, 'sys/zfs') }), [])
  t.doesNotThrow(() => preflight({ path: `/nonexistent${delimiter}${bin}`, devZfs: join(root, 'dev/zfs'), sysModule: join(root, 'sys/zfs') }))
  t.equal(which('zpool', `${join(root, 'empty')}${delimiter}${bin}`), join(bin, 'zpool'))
})

t.test('missing binaries, non-executable ones, and no module', async (t) => {
  const root = t.testdir({ dev: {}, sys: {} })
  const a = join(root, 'a')
  fakeBin(a, 'zfs')
  fakeBin(a, 'zpool', 0o644) // not executable: does not count
  mkdirSync(join(a, 'zpool2'))
  const o = { path: a, devZfs: join(root, 'dev/zfs'), sysModule: join(root, 'sys/zfs') }
  const p = preflightProblems(o)
  t.equal(p.length, 2)
  t.match(p[0], /^zpool not found on PATH \(.*\/a\); install zfsutils-linux/)
  t.match(p[1], /ZFS kernel module is not loaded \(.*dev\/zfs and .*sys\/zfs missing\); run `modprobe zfs`/)
  t.throws(() => preflight(o), PreflightError)
  t.throws(() => preflight({ ...o, path: '' }), { message: /zfs and zpool not found on PATH \(empty\)/ })
})

t.test('module half there: /sys/module/zfs without /dev/zfs', async (t) => {
  const root = t.testdir({ sys: { zfs: {} } })
  const bin = join(root, 'bin')
  fakeBin(bin, 'zfs')
  fakeBin(bin, 'zpool')
  const p = preflightProblems({ path: bin, devZfs: join(root, 'dev/zfs'), sysModule: join(root, 'sys/zfs') })
  t.equal(p.length, 1)
  t.match(p[0], /\(.*dev\/zfs missing\)/)
})
