import t from 'tap'
import { PassThrough } from 'node:stream'
import { createMetrics, outcomeOf } from '../../../src/agent/ops/metrics.js'
import { commandOf, instrumentRunner } from '../../../src/agent/ops/zfs-metrics.js'
import { NotFoundError, BusyError } from '../../../src/agent/errors.js'
import { DatasetNotFoundError } from '../../../src/zfs/errors.js'
import type { ZfsRunner } from '../../../src/zfs/runner.js'
import type { Child } from '../../../src/common/exec.js'

const value = async (m: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string> = {}) => {
  const got = await m.registry.getSingleMetric(name)!.get()
  const v = got.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l) && (!('metricName' in x) || x.metricName === name || x.metricName === undefined))
  return v?.value
}

t.test('outcomeOf', async (t) => {
  t.equal(outcomeOf(undefined), 'ok')
  t.equal(outcomeOf(new NotFoundError()), 'not_found')
  t.equal(outcomeOf(new BusyError('busy')), 'busy')
  t.equal(outcomeOf(new DatasetNotFoundError('x')), 'zfs_not_found')
  t.equal(outcomeOf(new Error('x')), 'internal')
})

t.test('registry: own, prefixed, the expected series', async (t) => {
  const m = createMetrics({ fetchQueue: () => ({ running: 1, waiting: 3 }) })
  const other = createMetrics()
  m.observeRpc('ListImages', 'ok', 0.02)
  m.observeRpc('ListImages', 'ok', 0.03)
  m.observeRpc('GetImage', 'not_found', 0.001)
  m.onImportBytes(1000)
  m.onImportBytes(0)
  m.onSentBytes(5)
  t.equal(await value(m, 'mistify_rpc_requests_total', { method: 'ListImages', outcome: 'ok' }), 2)
  t.equal(await value(m, 'mistify_rpc_requests_total', { method: 'GetImage', outcome: 'not_found' }), 1)
  t.equal(await value(other, 'mistify_rpc_requests_total', { method: 'ListImages', outcome: 'ok' }), undefined, 'registries are separate')
  t.equal(await value(m, 'mistify_import_bytes_total'), 1000)
  t.equal(await value(m, 'mistify_download_bytes_total'), 5)
  t.equal(await value(m, 'mistify_fetch_queue', { state: 'waiting' }), 3)
  const text = await m.registry.metrics()
  t.match(text, /mistify_rpc_duration_seconds_bucket\{le="0.05",method="ListImages",outcome="ok"\} 2/)
  t.match(text, /# TYPE mistify_zfs_command_duration_seconds histogram/)
  t.notMatch(text, /process_cpu/, 'no default metrics unless asked')
  t.match(await createMetrics({ defaultMetrics: true }).registry.metrics(), /mistify_process_cpu_seconds_total/)
})

t.test('commandOf keeps labels bounded', async (t) => {
  t.equal(commandOf(['list', '-H']), 'list')
  t.equal(commandOf(['-H']), 'other')
  t.equal(commandOf([]), 'other')
})

t.test('instrumentRunner: durations, failures by kind, bytes into receive', async (t) => {
  const m = createMetrics()
  const stdin = new PassThrough()
  stdin.resume()
  const stderr = new PassThrough()
  let finish!: () => void
  const fake: ZfsRunner = {
    async run(_bin, args) {
      if (args[0] === 'destroy') throw new DatasetNotFoundError('gone')
      return 'out'
    },
    spawn(_bin, args) {
      const done = new Promise<void>((resolve, reject) => { finish = () => (args[1] === 'bad' ? reject(new Error('x')) : resolve()) })
      done.catch(() => {})
      const c: Child = { pid: 1, stdin, stdout: null, stderr, done, kill() {} }
      return c
    },
  }
  const r = instrumentRunner(fake, m)
  t.equal(await r.run('zfs', ['list', '-H']), 'out')
  await t.rejects(r.run('zfs', ['destroy', 'x']), DatasetNotFoundError, 'errors pass through unchanged')
  const child = r.spawn('zfs', ['receive', 'pool/x'], { stdin: 'pipe' })
  child.stdin!.write(Buffer.alloc(100))
  child.stdin!.write('abc')
  finish()
  await child.done
  const bad = r.spawn('zfs', ['send', 'bad'])
  t.equal(bad.stderr, stderr, 'stderr passes through: its end is when a zero-copy download takes its last count')
  finish()
  await t.rejects(bad.done, { message: 'x' })
  t.equal(await value(m, 'mistify_import_bytes_total'), 103)
  t.equal(await value(m, 'mistify_zfs_command_failures_total', { bin: 'zfs', command: 'destroy', kind: 'not_found' }), 1)
  t.equal(await value(m, 'mistify_zfs_command_failures_total', { bin: 'zfs', command: 'send', kind: 'other' }), 1)
  const text = await m.registry.metrics()
  t.match(text, /mistify_zfs_command_duration_seconds_count\{bin="zfs",command="list",outcome="ok"\} 1/)
  t.match(text, /mistify_zfs_command_duration_seconds_count\{bin="zfs",command="destroy",outcome="error"\} 1/)
  t.match(text, /mistify_zfs_command_duration_seconds_count\{bin="zfs",command="receive",outcome="ok"\} 1/)
})
