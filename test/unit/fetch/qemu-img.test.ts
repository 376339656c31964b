import t from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { qcow2Info } from '../../../src/agent/import/qemu-img.js'

/** A stand-in qemu-img that prints `json` for `info`. */
function fakeQemuImg(dir: string, json: unknown): string {
  const bin = join(dir, 'qemu-img')
  writeFileSync(bin, `#!/bin/sh\ncat <<'EOF'\n${JSON.stringify(json)}\nEOF\n`)
  chmodSync(bin, 0o755)
  return bin
}

t.test('qemu-img missing: a clear error', async (t) => {
  await t.rejects(qcow2Info('/nonexistent', { bin: '/nonexistent/qemu-img' }), { message: /need qemu-img \(package qemu-utils\), which is not installed/ })
})

t.test('self-contained images only', async (t) => {
  const dir = t.testdir()
  t.same(await qcow2Info('x', { bin: fakeQemuImg(dir, { 'virtual-size': 1048576, format: 'qcow2' }) }), { virtualSize: 1048576 })
  await t.rejects(qcow2Info('x', { bin: fakeQemuImg(dir, { 'virtual-size': 1048576, 'backing-filename': '/etc/shadow' }) }), { message: /backing file/ })
  await t.rejects(qcow2Info('x', { bin: fakeQemuImg(dir, { 'virtual-size': 1048576, 'format-specific': { type: 'qcow2', data: { 'data-file': '/dev/sda' } } }) }), { message: /external data file/ })
  await t.rejects(qcow2Info('x', { bin: fakeQemuImg(dir, { format: 'qcow2' }) }), { message: /no usable virtual size/ })
})
