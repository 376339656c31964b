import t from 'tap'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { countingStream } from '../../../src/common/counting.js'

t.test('counts every byte that passes and passes them unchanged, at the reader\'s pace', async (t) => {
  const chunks = [Buffer.alloc(70_000, 1), Buffer.from('abc'), Buffer.alloc(1, 9)]
  let counted = 0
  const got: Buffer[] = []
  const slow = new Writable({ highWaterMark: 1024, write(c: Buffer, _e, cb) { got.push(c); setImmediate(cb) } })
  await pipeline(Readable.from(chunks), countingStream((n) => { counted += n }), slow)
  t.equal(counted, 70_004)
  t.same(Buffer.concat(got), Buffer.concat(chunks))
})

t.test('an error downstream reaches the writer through it', async (t) => {
  const failing = new Writable({ write(_c, _e, cb) { cb(Object.assign(new Error('broken pipe'), { code: 'EPIPE' })) } })
  const counter = countingStream(() => {})
  await t.rejects(pipeline(Readable.from([Buffer.alloc(10)]), counter, failing), { code: 'EPIPE' })
})
