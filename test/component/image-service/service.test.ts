// The program: flags and environment, the real entry point as a process,
// persistence across restarts, and repair of records a restart interrupted.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULTS, parseConfig } from '../../../src/image-service/config.js'
import { getJson, nativeUpload, startSourceServer, startTestService, tempDir, waitFor, waitForNative, TESTDATA } from '../../helpers/image-service.js'

const MAIN = fileURLToPath(new URL('../../../src/image-service/main.js', import.meta.url))

t.test('config: defaults, environment, flags', async (t) => {
  t.same(parseConfig([], {}), DEFAULTS, 'defaults')
  t.equal(DEFAULTS.port, 20000)
  t.equal(DEFAULTS.glancePort, 9292)
  t.equal(DEFAULTS.listen, '127.0.0.1', 'loopback by default: there is no auth')
  const env = {
    MISTIFY_IMAGE_SERVICE_PORT: '21000', MISTIFY_IMAGE_SERVICE_GLANCE_PORT: '0', MISTIFY_IMAGE_SERVICE_LISTEN: '::1',
    MISTIFY_IMAGE_SERVICE_DATA_DIR: '/srv/img', MISTIFY_IMAGE_SERVICE_MAX_UPLOAD_SIZE: '10G', MISTIFY_IMAGE_SERVICE_FETCH_TIMEOUT: '5',
    MISTIFY_IMAGE_SERVICE_IDLE_TIMEOUT: '1.5',
  }
  t.match(parseConfig([], env), {
    port: 21000, glancePort: 0, listen: '::1', dataDir: '/srv/img', maxUploadSize: 10 * 1024 ** 3, fetchTimeoutMs: 5000, idleTimeoutMs: 1500,
  })
  t.match(parseConfig(['--port', '22000', '--data-dir', '/d', '--max-upload-size', '512M'], env), { port: 22000, dataDir: '/d', maxUploadSize: 512 * 1024 ** 2 }, 'flags win')
  t.match(parseConfig(['-a', '23000'], {}), { port: 23000 }, '-a as in the original')
  t.match(parseConfig([], { MISTIFY_IMAGE_SERVICE_PORT: '' }), { port: 20000 }, 'an empty env value is unset')
  t.equal(parseConfig(['--help'], {}), 'help')
  for (const argv of [['--port', 'x'], ['--port', '70000'], ['--max-upload-size', '12Q'], ['--fetch-timeout', '0'], ['--bogus'], ['extra'], ['--data-dir', '']]) {
    t.throws(() => parseConfig(argv, {}), { name: 'UsageError' }, argv.join(' '))
  }
})

/** Start main.js; resolve with its native URL once it says it is listening. */
function runMain(t: { teardown(fn: () => void): void }, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ url: string; stop: () => Promise<number | null>; log: () => string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`main.js did not start: ${log}`)), 15_000)
    child.stderr.on('data', (c: Buffer) => {
      log += c.toString()
      const m = /native API listening on (http:\/\/[^\s"]+)/.exec(log)
      if (m) {
        clearTimeout(timer)
        resolve({
          url: m[1] as string,
          log: () => log,
          stop: async () => {
            child.kill('SIGTERM')
            return exited
          },
        })
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`main.js exited ${code}: ${log}`))
    })
  })
}

t.test('main.js: listens, serves, stops on SIGTERM, keeps data across restarts', async (t) => {
  const dir = tempDir(t)
  const a = await runMain(t, ['--port', '0', '--glance-port', '0', '--data-dir', dir])
  t.match(a.url, /^http:\/\/127\.0\.0\.1:\d+$/, 'loopback, ephemeral port')
  t.notMatch(a.log(), /glance API listening/, '--glance-port 0 disables the Glance API')
  t.same((await getJson(`${a.url}/images`)).body, [])
  const up = await nativeUpload(a.url, TESTDATA, { 'x-image-name': 'keep' })
  t.equal(up.body.status, 'complete')
  t.equal(await a.stop(), 0, 'SIGTERM → clean exit 0')

  const b = await runMain(t, ['--port', '0', '--glance-port', '0'], { MISTIFY_IMAGE_SERVICE_DATA_DIR: dir })
  const again = await getJson(`${b.url}/images/${up.body.id}`)
  t.same(again.body, up.body, 'record survives a restart (data dir from the environment)')
  t.equal(await (await fetch(`${b.url}/images/${up.body.id}/download`)).text(), TESTDATA)
  t.equal(await b.stop(), 0)
})

t.test('main.js: usage errors exit 2, --help exits 0', async (t) => {
  const bad = spawnSync(process.execPath, [MAIN, '--port', 'nope'], { encoding: 'utf8', timeout: 15_000 })
  t.equal(bad.status, 2)
  t.match(bad.stderr, /not a port number/)
  t.match(bad.stderr, /Usage: mistify-image-service/)
  const help = spawnSync(process.execPath, [MAIN, '--help'], { encoding: 'utf8', timeout: 15_000 })
  t.equal(help.status, 0)
  t.match(help.stdout, /--glance-port/)
})

t.test('restart repairs interrupted records', async (t) => {
  const dir = tempDir(t)
  const src = await startSourceServer(t)
  src.stalling.add('/later')
  const a = await startTestService(t, { fetchTimeoutMs: 30_000 }, dir)
  const fetch1 = await getJson(`${a.native}/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: `${src.url}/later`, type: 'kvm' }) })
  await waitForNative(a.native, fetch1.body.id, ['downloading'])
  const queued = await getJson(`${a.glance}/v2/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"q"}' })
  const gone = await nativeUpload(a.native, 'data')
  const upload = await a.svc.deps.store.create({ type: 'kvm', name: 'mid-upload' })
  await a.svc.deps.store.update(upload.id, (r) => ({ ...r, status: 'downloading' }))
  await a.svc.close()

  t.equal((await a.svc.deps.store.get(fetch1.body.id).catch(() => undefined)), undefined, 'store closed with the service')
  rmSync(join(dir, 'images', gone.body.id))
  writeFileSync(join(dir, 'tmp', 'leftover.part'), 'junk')
  src.stalling.delete('/later')

  const b = await startTestService(t, {}, dir)
  const resumed = await waitForNative(b.native, fetch1.body.id, ['complete', 'error'])
  t.equal(resumed.status, 'complete', 'an interrupted fetch starts again')
  t.equal(resumed.size, 24)
  t.notOk('error' in resumed)
  t.equal((await getJson(`${b.native}/images/${upload.id}`)).body.error, 'upload interrupted by a service restart', 'an interrupted upload → error')
  t.equal((await getJson(`${b.native}/images/${gone.body.id}`)).body.status, 'error', 'a complete image without its file → error')
  t.equal((await getJson(`${b.glance}/v2/images/${queued.body.id}`)).body.status, 'queued', 'a queued Glance image stays queued')
  t.notOk(existsSync(join(dir, 'tmp', 'leftover.part')), 'stale temp files removed')
})

t.test('main.js logs through the common pino logger: one JSON object per line', async (t) => {
  const dir = tempDir(t)
  const a = await runMain(t, ['--port', '0', '--glance-port', '0', '--data-dir', dir])
  await waitFor('the data directory line', async () => (a.log().includes('"data directory"') ? true : undefined))
  const lines = a.log().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(lines[0], { level: 'info', pid: Number, msg: `native API listening on ${a.url}`, url: a.url })
  t.match(lines.find((l) => l.msg === 'data directory'), { level: 'info', dir })
  t.equal(await a.stop(), 0)
})
