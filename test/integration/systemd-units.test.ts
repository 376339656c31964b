/**
 * The systemd units in systemd/, as far as the test VM allows (its PID 1 is a
 * small init, not systemd, so `systemctl start` is out):
 *   1. install both units into /etc/systemd/system, their env files into
 *      /etc/default, ExecStart pointed at this project (what `npm install -g`
 *      would put in /usr/local/bin), and `systemd-analyze verify` them;
 *   2. start both programs exactly as ExecStart=, Environment= and
 *      EnvironmentFile= say (parsed from the installed unit files), with the
 *      StateDirectory= created as systemd would, and check they answer and
 *      work together: an image uploaded to the service is fetched by the
 *      agent into the pool named in the env file;
 *   3. SIGTERM (systemd's default stop signal) ends both with status 0 within
 *      TimeoutStopSec=.
 * The sandboxing directives (DynamicUser=, Protect*=, …) are checked by
 * `verify` only; without systemd running nothing applies them.
 */
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { createFilePool, haveZfs } from '../helpers/zpool.js'
import { makeZvolStream } from '../helpers/agent.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

/** The project root: dist/test/integration → ../../.. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const UNITS_DIR = process.env.MISTIFY_SYSTEMD_DIR ?? join(ROOT, 'systemd')
const UNITS = ['mistify-image-service', 'mistify-agent-image'] as const
const SYSTEM_DIR = '/etc/systemd/system'
const AGENT = 'http://127.0.0.1:19999'
const IMAGES = 'http://127.0.0.1:20000'
const GLANCE = 'http://127.0.0.1:9292'

/** Unit file → [key, value] pairs of one section, in order, continuation lines joined. */
function unitSection(text: string, section: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  let cur = ''
  for (const raw of text.replace(/\\\n/g, ' ').split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const sec = /^\[(.+)\]$/.exec(line)
    if (sec) { cur = sec[1]!; continue }
    if (cur !== section) continue
    const eq = line.indexOf('=')
    if (eq > 0) out.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()])
  }
  return out
}

/** Split a systemd command line or Environment= value into words (double and single quotes). */
function words(s: string): string[] {
  const out: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g
  for (let m; (m = re.exec(s)) !== null;) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2] ?? m[3]!)
  return out
}

/** An EnvironmentFile: KEY=VALUE lines, # and ; comments, optional quotes. */
function envFile(text: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line)
    if (!m) continue
    let v = m[2]!
    if (/^"(.*)"$/.test(v)) v = v.slice(1, -1).replace(/\\(.)/g, '$1')
    else if (/^'(.*)'$/.test(v)) v = v.slice(1, -1)
    env[m[1]!] = v
  }
  return env
}

interface Service {
  readonly name: string
  readonly argv: string[]
  readonly env: Record<string, string>
  readonly stateDirs: string[]
  readonly stopTimeoutMs: number
}

/** What systemd would run for a unit: ExecStart=, the environment, the state directories. */
function serviceFromUnit(name: string, text: string): Service {
  const kv = unitSection(text, 'Service')
  const get = (k: string) => kv.filter(([key]) => key === k).map(([, v]) => v)
  const exec = get('ExecStart')
  if (exec.length !== 1) throw new Error(`${name}: expected one ExecStart=, found ${exec.length}`)
  // Prefixes -@:+! change how systemd runs it; none of ours should need them.
  const argv = words(exec[0]!.replace(/^[-@:+!]+/, ''))
  const stateDirs = get('StateDirectory').flatMap(words)
  // systemd's own environment for a system service, then Environment=, then EnvironmentFile= (which wins).
  const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' }
  if (stateDirs.length > 0) env.STATE_DIRECTORY = stateDirs.map((d) => `/var/lib/${d}`).join(':')
  for (const v of get('Environment')) {
    for (const w of words(v)) { const eq = w.indexOf('='); if (eq > 0) env[w.slice(0, eq)] = w.slice(eq + 1) }
  }
  for (const v of get('EnvironmentFile')) {
    const optional = v.startsWith('-')
    const file = optional ? v.slice(1) : v
    if (!existsSync(file)) { if (optional) continue; throw new Error(`${name}: EnvironmentFile ${file} is missing`) }
    Object.assign(env, envFile(readFileSync(file, 'utf8')))
  }
  const stop = get('TimeoutStopSec')[0] ?? '90s'
  const m = /^(\d+)\s*(s|sec|min|m)?$/.exec(stop)
  const stopTimeoutMs = m ? Number(m[1]) * (m[2] === 'min' || m[2] === 'm' ? 60_000 : 1000) : 90_000
  return { name, argv, env, stateDirs, stopTimeoutMs }
}

/** `npm install -g` links package.json's bin entries into /usr/local/bin; point those at this project. */
function localExecStart(unitText: string): string {
  const bins = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin
  return unitText.replace(/^ExecStart=(.*)$/m, (_line, cmd: string) => {
    const [prog, ...rest] = words(cmd)
    const target = bins[basename(prog ?? '')]
    if (target === undefined) throw new Error(`ExecStart=${cmd}: ${prog} is not one of package.json's bin entries`)
    return `ExecStart=${[process.execPath, join(ROOT, target), ...rest].join(' ')}`
  })
}

interface Running { readonly child: ChildProcess; readonly log: () => string; readonly exited: Promise<number | string> }

function start(svc: Service): Running {
  const child = spawn(svc.argv[0]!, svc.argv.slice(1), { env: svc.env, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  child.stdout!.on('data', (c: Buffer) => { log += c.toString() })
  child.stderr!.on('data', (c: Buffer) => { log += c.toString() })
  const exited = new Promise<number | string>((r) => child.on('exit', (code, sig) => r(code ?? sig ?? 'unknown')))
  return { child, log: () => log, exited }
}

async function waitFor(url: string, running: Running, what: string, ms = 120_000): Promise<Response> {
  const end = Date.now() + ms
  for (;;) {
    if (running.child.exitCode !== null) throw new Error(`${what} exited ${running.child.exitCode} before answering:\n${running.log()}`)
    try { return await fetch(url) } catch { /* not yet listening */ }
    if (Date.now() > end) throw new Error(`${what} did not answer ${url} within ${ms / 1000} s:\n${running.log()}`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

t.test('systemd units: install, verify, start as the units say', async (t) => {
  if (!existsSync(join(UNITS_DIR, `${UNITS[0]}.service`))) {
    t.fail(`${UNITS_DIR} was not shipped into the VM: scripts/test.mjs must pack systemd/ along with dist/ (or use scripts/vm-systemd-check.sh)`)
    return
  }

  // Everything below touches the (throw-away) VM's /etc and /var/lib; undo it anyway, services first.
  const undo: Array<() => void | Promise<void>> = []
  t.teardown(async () => { for (const f of undo.reverse()) await f() })

  // 1. install
  const installed: Record<string, string> = {}
  for (const u of UNITS) {
    const path = join(SYSTEM_DIR, `${u}.service`)
    mkdirSync(SYSTEM_DIR, { recursive: true })
    writeFileSync(path, localExecStart(readFileSync(join(UNITS_DIR, `${u}.service`), 'utf8')))
    undo.push(() => rmSync(path, { force: true }))
    installed[u] = path
    // The env file the unit names, from systemd/<unit>.env.
    for (const [, v] of unitSection(readFileSync(path, 'utf8'), 'Service').filter(([k]) => k === 'EnvironmentFile')) {
      const file = v.replace(/^-/, '')
      t.ok(existsSync(join(UNITS_DIR, `${u}.env`)), `systemd/${u}.env ships for ${file}`)
      mkdirSync(dirname(file), { recursive: true })
      writeFileSync(file, readFileSync(join(UNITS_DIR, `${u}.env`)))
      undo.push(() => rmSync(file, { force: true }))
    }
  }

  // 2. systemd-analyze verify
  const analyze = spawnSync('systemd-analyze', ['verify', ...UNITS.map((u) => installed[u]!)], { encoding: 'utf8' })
  if (analyze.error) {
    t.comment(`systemd-analyze is not available here (${analyze.error.message}); skipping verify`)
  } else {
    const said = `${analyze.stdout}${analyze.stderr}`.trim()
    if (said !== '') t.comment(`systemd-analyze verify said:\n${said}`)
    t.equal(analyze.status, 0, 'systemd-analyze verify exits 0')
    t.same(said.split('\n').filter((l) => /mistify/.test(l)), [], 'systemd-analyze verify has nothing to say about our units')
    // A control: verify really checks here (a unit whose program is missing must fail).
    const broken = join(SYSTEM_DIR, 'mistify-verify-control.service')
    writeFileSync(broken, '[Service]\nExecStart=/nonexistent/mistify-control\n')
    undo.push(() => rmSync(broken, { force: true }))
    const control = spawnSync('systemd-analyze', ['verify', broken], { encoding: 'utf8' })
    t.not(control.status, 0, `systemd-analyze verify rejects a unit with a missing program (${control.stderr.trim().split('\n')[0]})`)
  }

  // 3. configure as an operator would: the pool and the image service in the agent's env file
  const later: Array<() => void> = []
  const { name: pool } = createFilePool({ teardown: (fn) => { later.push(fn as () => void) } })
  undo.push(() => { for (const f of later) f() })
  const agentEnvFile = '/etc/default/mistify-agent-image'
  const shipped = readFileSync(agentEnvFile, 'utf8')
  t.match(shipped, /^MISTIFY_ZPOOL=/m, 'the agent env file sets MISTIFY_ZPOOL')
  t.match(shipped, /^MISTIFY_IMAGE_SERVICE=/m, 'the agent env file sets MISTIFY_IMAGE_SERVICE')
  writeFileSync(agentEnvFile, shipped
    .replace(/^MISTIFY_ZPOOL=.*$/m, `MISTIFY_ZPOOL=${pool}`)
    .replace(/^MISTIFY_IMAGE_SERVICE=.*$/m, `MISTIFY_IMAGE_SERVICE=${IMAGES}`))

  // 4. start both exactly as the installed units say
  const svcs = Object.fromEntries(UNITS.map((u) => [u, serviceFromUnit(u, readFileSync(installed[u]!, 'utf8'))])) as Record<typeof UNITS[number], Service>
  const imageSvc = svcs['mistify-image-service']
  const agentSvc = svcs['mistify-agent-image']
  t.same(imageSvc.argv, [process.execPath, join(ROOT, 'dist/src/image-service/main.js')], 'image service ExecStart')
  t.same(agentSvc.argv, [process.execPath, join(ROOT, 'dist/src/agent/main.js')], 'agent ExecStart')
  t.equal(imageSvc.env.MISTIFY_IMAGE_SERVICE_DATA_DIR, '/var/lib/mistify-image-service', 'image service data dir from Environment=')
  t.equal(agentSvc.env.MISTIFY_ZPOOL, pool, 'agent pool from EnvironmentFile=')
  t.equal(agentSvc.env.MISTIFY_METADATA_DIR, '/var/lib/mistify-agent-image', 'agent metadata dir from EnvironmentFile=')
  for (const s of [imageSvc, agentSvc]) {
    t.ok(s.stateDirs.length > 0, `${s.name} has a StateDirectory=`)
    for (const d of s.stateDirs) {
      const dir = `/var/lib/${d}`
      rmSync(dir, { recursive: true, force: true })
      mkdirSync(dir, { recursive: true, mode: 0o750 })
      undo.push(() => rmSync(dir, { recursive: true, force: true }))
    }
  }

  const procs: Running[] = []
  undo.push(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL')
    await Promise.all(procs.map((p) => p.exited))
  })
  const images = start(imageSvc); procs.push(images)
  const agent = start(agentSvc); procs.push(agent)

  const list = await waitFor(`${IMAGES}/images`, images, 'the image service')
  t.equal(list.status, 200, 'GET /images answers 200')
  t.same(await list.json(), [], 'no images yet')
  const glance = await waitFor(`${GLANCE}/v2/images`, images, 'the image service (Glance API)')
  t.equal(glance.status, 200, 'the Glance API answers on 9292 (the env file default)')
  await glance.arrayBuffer()
  const health = await waitFor(`${AGENT}/healthz`, agent, 'the agent')
  t.equal(health.status, 200, 'agent /healthz answers 200')
  t.same(await health.json(), { status: 'ok', pool: { name: pool, health: 'ONLINE' } }, 'agent /healthz names the pool from the env file')

  // 5. they work together: upload an image, the agent fetches it from the configured image service
  const stream = gzipSync(makeZvolStream(pool))
  const up = await fetch(`${IMAGES}/images`, { method: 'PUT', headers: { 'X-Image-Type': 'kvm' }, body: stream })
  t.equal(up.status, 200, 'upload accepted')
  const rec = await up.json() as { id: string; status: string }
  t.equal(rec.status, 'complete', 'the uploaded image is complete')
  t.ok(readdirSync('/var/lib/mistify-image-service', { recursive: true }).some((f) => String(f).includes(rec.id)),
    'the image is stored under the unit\'s StateDirectory')
  const rpc = await fetch(`${AGENT}/_mistify_RPC_`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ method: 'ImageStore.RequestImage', params: [{ id: rec.id }], id: 1 }),
  })
  const env = await rpc.json() as { result: { images: Array<{ status: string; volume: string }> } | null; error: string | null }
  t.equal(env.error, null, 'RequestImage succeeds')
  t.match(env.result?.images[0], { status: 'complete', volume: `${pool}/images/${rec.id}` }, 'imported into the pool from the env file')
  t.ok(readdirSync('/var/lib/mistify-agent-image').length > 0, 'the agent keeps its records under its StateDirectory')

  // 6. stop as systemd does: SIGTERM, then wait at most TimeoutStopSec=
  for (const [p, s] of [[agent, agentSvc], [images, imageSvc]] as const) {
    p.child.kill('SIGTERM')
    const timer = new Promise<string>((r) => setTimeout(() => r('timeout'), s.stopTimeoutMs).unref())
    const how = await Promise.race([p.exited, timer])
    t.equal(how, 0, `${s.name} exits 0 on SIGTERM within TimeoutStopSec=${s.stopTimeoutMs / 1000}s`)
    if (how !== 0) t.comment(p.log().split('\n').slice(-15).join('\n'))
  }
})
