import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { batchedStderr, jsonLogger } from '../../../src/common/log.js'

const logModule = fileURLToPath(new URL('../../../src/common/log.js', import.meta.url))

t.test('the lines of one event-loop turn reach the output in one write, the next turn in another', async (t) => {
  const writes: string[] = []
  const log = jsonLogger(batchedStderr({ write: (s: string) => writes.push(s) }))
  log.info({ n: 1 }, 'a')
  log.warn({ n: 2 }, 'b')
  log.error({ n: 3 }, 'c')
  t.equal(writes.length, 0, 'nothing written synchronously')
  await new Promise((r) => setImmediate(r))
  t.equal(writes.length, 1)
  t.same(writes[0]!.trim().split('\n').map((l) => JSON.parse(l).msg), ['a', 'b', 'c'])
  log.info({}, 'd')
  await new Promise((r) => setImmediate(r))
  t.equal(writes.length, 2)
  t.equal(JSON.parse(writes[1]!).msg, 'd')
})

t.test('lines logged just before process.exit still reach stderr', async (t) => {
  const script = `import { jsonLogger } from ${JSON.stringify(logModule)}
const log = jsonLogger()
for (let i = 0; i < 100; i++) log.error({ i }, 'line')
process.exit(3)`
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
  t.equal(r.status, 3)
  const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l))
  t.equal(lines.length, 100)
  t.same(lines.map((l) => l.i), Array.from({ length: 100 }, (_, i) => i))
})

t.test('a token is still redacted', async (t) => {
  const writes: string[] = []
  const log = jsonLogger(batchedStderr({ write: (s: string) => writes.push(s) }))
  log.info({ token: 'secret', config: { token: 'secret2' } }, 'x')
  await new Promise((r) => setImmediate(r))
  t.notMatch(writes.join(''), /secret/)
})
