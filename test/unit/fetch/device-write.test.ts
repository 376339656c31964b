import t from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dataRuns, writeToDevice } from '../../../src/agent/import/device-write.js'

async function* chunks(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size)
}

t.test('dataRuns finds the non-zero 64 KiB blocks', async (t) => {
  const b = Buffer.alloc(1 << 20)
  t.same(dataRuns(b), [], 'all zero: nothing to write')
  b[0] = 1
  b[5 * 65536 + 3] = 1
  b[6 * 65536] = 1
  t.same(dataRuns(b), [[0, 65536], [5 * 65536, 7 * 65536]], 'adjacent blocks are one run')
  t.same(dataRuns(Buffer.from([0, 0, 9])), [[0, 3]], 'a short tail')
})

t.test('writes the stream, leaves zero blocks as holes, counts bytes', async (t) => {
  const dir = t.testdir()
  const dev = join(dir, 'dev')
  writeFileSync(dev, '') // a regular file stands in for a fresh zvol: it reads as zeros
  const data = Buffer.concat([randomBytes(3 * 65536 + 17), Buffer.alloc(8 << 20), randomBytes(1 << 20), Buffer.alloc(100)])
  // Odd chunk sizes: pieces must be assembled across chunk boundaries.
  const n = await writeToDevice(dev, chunks(data, 12_345), { limit: 64 << 20, what: 'test' })
  t.equal(n, data.length)
  const back = readFileSync(dev)
  t.ok(back.subarray(0, data.length).equals(data), 'every byte as sent (skipped zeros read back as zeros)')
  t.ok(statSync(dev).blocks * 512 < data.length - (6 << 20), 'the zero middle was not written (sparse)')
})

t.test('refuses more than the device holds', async (t) => {
  const dev = join(t.testdir(), 'dev')
  writeFileSync(dev, '')
  await t.rejects(writeToDevice(dev, chunks(randomBytes(3 << 20), 65536), { limit: 2 << 20, what: 'image big' }), { message: 'image big: larger than 2097152 bytes' })
})

t.test('a failing source fails the write', async (t) => {
  const dev = join(t.testdir(), 'dev')
  writeFileSync(dev, '')
  async function* broken(): AsyncGenerator<Buffer> { yield randomBytes(3 << 20); throw new Error('source died') }
  await t.rejects(writeToDevice(dev, broken(), { limit: 64 << 20, what: 'x' }), { message: 'source died' })
})
