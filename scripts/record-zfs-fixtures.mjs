#!/usr/bin/env node
// Runs INSIDE the ZFS VM (see record-zfs-fixtures.sh): builds a scratch pool
// named "tank", runs the adapter's own argv (dist/src/zfs/commands.js) and a
// few deliberate failures, and saves stdout/stderr/exit code per case under
// <out>/<zfs version>/ for the host's unit tests. Recordings already there are
// kept as they are (tests read their exact bytes); --fresh records all anew.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync, truncateSync, mkdtempSync, openSync, writeSync, closeSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import * as cmd from '../dist/src/zfs/commands.js'
import { parseDatasets, parseScan } from '../dist/src/zfs/parse.js'
import { SCAN_PROPS } from '../dist/src/agent/catalog.js'

const fresh = process.argv.includes('--fresh')
const outRoot = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 'test/fixtures/zfs'
const env = { ...process.env, LC_ALL: 'C', LANG: 'C' }
const run = (bin, args, input) => spawnSync(bin, args, { env, encoding: 'utf8', input })
const must = (bin, args, input) => {
  const r = run(bin, args, input)
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

const version = must('zfs', ['version']).split('\n')[0].replace(/^zfs-/, '')
const out = join(outRoot, version)
if (fresh) rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

/** `expectFail: 'either'` records either outcome (the test asserts which). */
function record(name, bin, args, { expectFail = false, input } = {}) {
  const r = run(bin, args, input)
  const failed = r.status !== 0
  if (expectFail !== 'either' && failed !== expectFail) throw new Error(`${name}: expected ${expectFail ? 'failure' : 'success'}, got exit ${r.status}: ${r.stderr}`)
  if (existsSync(join(out, `${name}.json`))) {
    console.log(`${name}: exit ${r.status} (kept the recording there)`)
    return r
  }
  writeFileSync(join(out, `${name}.stdout`), r.stdout)
  writeFileSync(join(out, `${name}.stderr`), r.stderr)
  writeFileSync(join(out, `${name}.json`), JSON.stringify({ bin, args, exitCode: r.status }, null, 2) + '\n')
  console.log(`${name}: exit ${r.status}`)
  return r
}

const dir = mkdtempSync(join(tmpdir(), 'fixtures-'))
const file = join(dir, 'disk0')
writeFileSync(file, '')
truncateSync(file, 256 * 1024 * 1024)
must('zpool', ['create', '-f', '-O', 'mountpoint=none', 'tank', file])
try {
  const z = (args) => must('zfs', args)
  z(cmd.createFilesystem('tank/images'))
  z(cmd.createFilesystem('tank/guests/g1', { parents: true, props: { compression: 'lz4' } }))
  z(cmd.createVolume('tank/images/img', 16 * 1024 * 1024, { props: { compression: 'lz4' } }))
  must('udevadm', ['settle'])
  const fd = openSync('/dev/zvol/tank/images/img', 'r+')
  writeSync(fd, Buffer.alloc(1024 * 1024, 7))
  closeSync(fd)
  z(cmd.snapshot('tank/images/img@base'))
  z(cmd.clone('tank/images/img@base', 'tank/guests/g1/disk-0', { props: { compression: 'lz4' } }))
  z(cmd.snapshot('tank/guests/g1@snap-1', { recursive: true }))
  z(cmd.snapshot('tank/guests/g1@snap-2', { recursive: true }))
  z(cmd.setProps('tank/guests', { quota: String(200 * 1024 * 1024) }))
  z(cmd.hold('mistify-send', 'tank/guests/g1@snap-2'))
  const stream = spawnSync('zfs', cmd.send('tank/images/img@base'), { env, maxBuffer: 1 << 28 }).stdout

  record('version', 'zfs', ['version'])
  record('list-all', 'zfs', cmd.list({ types: ['filesystem', 'volume', 'snapshot'], roots: ['tank'] }))
  record('list-snapshots', 'zfs', cmd.list({ types: ['snapshot'], roots: ['tank/guests'] }))
  record('list-volumes', 'zfs', cmd.list({ types: ['volume'], roots: ['tank'] }))
  record('list-empty', 'zfs', cmd.list({ types: ['snapshot'], roots: ['tank/images/img'], depth: 0 }))
  record('get-volume', 'zfs', cmd.getDataset('tank/images/img'))
  record('get-snapshot', 'zfs', cmd.getDataset('tank/images/img@base'))
  record('get-props', 'zfs', cmd.getProps(['tank/guests', 'tank/images/img'], ['compression', 'quota', 'volsize']))
  record('holds', 'zfs', cmd.holds(['tank/guests/g1@snap-2']))
  record('send-estimate-full', 'zfs', cmd.sendEstimate('tank/images/img@base'))
  record('send-estimate-incremental', 'zfs', cmd.sendEstimate('tank/guests/g1/disk-0@snap-2', { from: '@snap-1' }))
  record('zpool-list', 'zpool', cmd.zpoolList('tank'))

  // stderr of the failures classify.ts must recognise
  record('err-not-found', 'zfs', cmd.getDataset('tank/images/nope'), { expectFail: true })
  record('err-destroy-not-found', 'zfs', cmd.destroy('tank/images/nope@s'), { expectFail: true })
  record('err-exists', 'zfs', cmd.createFilesystem('tank/images'), { expectFail: true })
  record('err-snapshot-exists', 'zfs', cmd.snapshot('tank/images/img@base'), { expectFail: true })
  record('err-has-clones', 'zfs', cmd.destroy('tank/images/img', { recursive: true }), { expectFail: true })
  record('err-has-children', 'zfs', cmd.destroy('tank/guests'), { expectFail: true })
  record('err-more-recent', 'zfs', cmd.rollback('tank/guests/g1@snap-1'), { expectFail: true })
  z(cmd.snapshot('tank/images/img@later'))
  z(cmd.clone('tank/images/img@later', 'tank/guests/g1/disk-1'))
  record('err-rollback-clones', 'zfs', cmd.rollback('tank/images/img@base', { destroyMoreRecent: true }), { expectFail: true })
  record('err-busy-held', 'zfs', cmd.destroy('tank/guests/g1@snap-2'), { expectFail: true })
  record('err-invalid-name', 'zfs', ['create', 'tank/a*b'], { expectFail: true })
  record('err-out-of-space', 'zfs', ['create', '-V', String(8 * 1024 ** 3), 'tank/images/huge'], { expectFail: true })
  record('err-invalid-stream', 'zfs', cmd.receive('tank/images/junk'), { expectFail: true, input: 'this is not a zfs send stream\n'.repeat(1000) })
  record('err-receive-exists', 'zfs', cmd.receive('tank/images/img'), { expectFail: true, input: stream })
  record('err-no-pool', 'zpool', cmd.zpoolList('nopool'), { expectFail: true })
  record('err-clone-missing', 'zfs', cmd.clone('tank/images/img@nope', 'tank/guests/g1/disk-9'), { expectFail: true })

  // The services' own argv (test/unit/services/*-recorded.test.ts), state as left above.
  // Reads first, then failing writes, then the writes that change the pool.
  const lz4 = { props: { compression: 'lz4' } }
  const both = ['tank/images', 'tank/guests']
  record('svc-list-volumes', 'zfs', cmd.list({ types: ['volume'], roots: both }))
  const snaps = parseDatasets(record('svc-list-snapshots', 'zfs', cmd.list({ types: ['snapshot'], roots: both })).stdout).map((d) => d.name)
  for (const [name, ds] of [
    ['svc-get-guests', 'tank/guests'], ['svc-get-g1', 'tank/guests/g1'], ['svc-get-g1-snap-1', 'tank/guests/g1@snap-1'],
    ['svc-get-g1-snap-2', 'tank/guests/g1@snap-2'], ['svc-get-disk-0', 'tank/guests/g1/disk-0'],
    ['svc-get-disk-0-snap-1', 'tank/guests/g1/disk-0@snap-1'], ['svc-get-disk-0-snap-2', 'tank/guests/g1/disk-0@snap-2'],
  ]) record(name, 'zfs', cmd.getDataset(ds))
  record('svc-get-ghost', 'zfs', cmd.getDataset('tank/guests/ghost'), { expectFail: true })
  record('svc-list-g1-snapshots', 'zfs', cmd.list({ types: ['snapshot'], roots: ['tank/guests/g1'] }))
  record('svc-list-g1-snapshots-depth1', 'zfs', cmd.list({ types: ['snapshot'], roots: ['tank/guests/g1'], depth: 1 }))
  record('svc-get-encryption', 'zfs', cmd.getProps(['tank/guests/g1/disk-0@snap-2'], ['encryption']))
  const plain = { replicate: false, compressed: false, raw: false }
  record('svc-send-estimate-incremental', 'zfs', cmd.sendEstimate('tank/guests/g1/disk-0@snap-2', { ...plain, from: 'tank/guests/g1/disk-0@snap-1', intermediates: false }))
  record('svc-send-estimate-from-origin', 'zfs', cmd.sendEstimate('tank/guests/g1/disk-0@snap-2', { ...plain, from: 'tank/images/img@base', intermediates: false }), { expectFail: 'either' })
  record('svc-create-volume-exists', 'zfs', cmd.createVolume('tank/guests/g1/disk-0', 1024 * 1024, lz4), { expectFail: true })
  record('svc-create-volume-no-space', 'zfs', cmd.createVolume('tank/guests/g1/big', 1024 * 1024 * 1024, lz4), { expectFail: 'either' })
  record('svc-snapshot-exists', 'zfs', cmd.snapshot('tank/guests/g1@snap-1', { recursive: false }), { expectFail: true })
  record('svc-clone-exists', 'zfs', cmd.clone('tank/images/img@base', 'tank/guests/g1/disk-0', lz4), { expectFail: true })
  record('svc-clone-missing', 'zfs', cmd.clone('tank/images/img@nope', 'tank/guests/g1/disk-9', lz4), { expectFail: true })
  // CreateVolume under a guest that does not exist yet: refused, parent made, made.
  record('svc-create-volume-no-parent', 'zfs', cmd.createVolume('tank/guests/new/vol', 1024 * 1024, lz4), { expectFail: true })
  record('svc-create-parents', 'zfs', cmd.createFilesystem('tank/guests/new', { parents: true }))
  record('svc-create-volume-new', 'zfs', cmd.createVolume('tank/guests/new/vol', 1024 * 1024, lz4))
  record('svc-get-new-vol', 'zfs', cmd.getDataset('tank/guests/new/vol'))
  // A download hold a crashed agent left behind, for the start-up release.
  z(cmd.hold('mistify-download.0123456789ab', 'tank/guests/g1/disk-0@snap-1'))
  // Start-up's one scan of both trees, then holds of the snapshots it found held (as releaseStale asks).
  const held = parseScan(record('svc-scan', 'zfs', cmd.scan(both, SCAN_PROPS)).stdout).filter((d) => d.type === 'snapshot' && d.userrefs > 0).map((d) => d.name)
  record('svc-holds-held', 'zfs', cmd.holds(held))
  record('svc-release-stale', 'zfs', cmd.release('mistify-download.0123456789ab', 'tank/guests/g1/disk-0@snap-1'))
  // Last: it may destroy part of the tree before the held snapshot stops it.
  record('svc-destroy-r-g1', 'zfs', cmd.destroy('tank/guests/g1', { recursive: true }), { expectFail: 'either' })
} finally {
  run('zfs', ['release', 'mistify-send', 'tank/guests/g1@snap-2'])
  run('zpool', ['destroy', '-f', 'tank'])
  rmSync(dir, { recursive: true, force: true })
}
console.log(`fixtures written to ${out}`)
