// Shared helpers for the benchmarks (run INSIDE the ZFS VM as root, see scripts/bench.sh):
// commands, timing and statistics, an HTTP client with keep-alive, the agent
// as a process of its own (dist/src/agent/main.js), /metrics parsing, RSS sampling.
import { execFile, execFileSync, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { openSync, closeSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'

export const env = (name, dflt) => process.env[name] ?? String(dflt)
export const num = (name, dflt) => {
  const v = Number(env(name, dflt))
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name}: not a number: ${process.env[name]}`)
  return v
}

/** Synchronous command, C locale. Only for setup: never while an in-process server must answer. */
export function sh(cmd, args, o = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 1 << 28, ...o })
}

/** A bash script (pipefail), asynchronous; rejects on a non-zero exit with its stderr. */
export function bash(script) {
  return new Promise((resolve, reject) => {
    execFile('bash', ['-o', 'pipefail', '-c', script], { maxBuffer: 1 << 26, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`bash -c ${JSON.stringify(script)} failed: ${stderr || err.message}`))
      else resolve(stdout)
    })
  })
}

export const now = () => Number(process.hrtime.bigint()) / 1e9
export async function timed(fn) {
  const t0 = now()
  const value = await fn()
  return { seconds: now() - t0, value }
}

/** The VM's CPU ticks since boot, all CPUs: busy (everything but idle and iowait) and all. */
function cpuTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  return { busy: f.reduce((x, y) => x + y, 0) - f[3] - f[4], all: f.reduce((x, y) => x + y, 0) }
}

/**
 * The user and system CPU seconds a live process has used, and those of the children it
 * has reaped (utime, stime, cutime, cstime of /proc/PID/stat; USER_HZ 100).
 */
export function cpuSecondsOf(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ').slice(11, 15).map((x) => Number(x) / 100)
  return { user: f[0], sys: f[1], children: f[2] + f[3] }
}

/** timed(), with how busy the VM's CPUs were meanwhile (0..1 of all of them) and the CPU seconds each of `pids` used. */
export async function timedCpu(fn, pids = []) {
  const c0 = cpuTicks()
  const p0 = pids.map(cpuSecondsOf)
  const t = await timed(fn)
  const c1 = cpuTicks()
  const cpu = pids.map((p, i) => { const c = cpuSecondsOf(p); return { user: c.user - p0[i].user, sys: c.sys - p0[i].sys, children: c.children - p0[i].children } })
  return { ...t, busy: (c1.busy - c0.busy) / (c1.all - c0.all), cpu }
}

export function quantile(xs, q) {
  if (!xs.length) return NaN
  const s = [...xs].sort((a, b) => a - b)
  // nearest rank
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]
}
export const median = (xs) => quantile(xs, 0.5)
export const MiB = 1024 * 1024

export async function freePort() {
  const s = createServer()
  await new Promise((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address()
  await new Promise((r) => s.close(r))
  return port
}

/** Minimal HTTP client on a keep-alive agent: resolves { status, body (Buffer) }. */
export function request(url, { method = 'GET', body, agent, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))
    const req = http.request(url, {
      method, agent,
      headers: { ...headers, ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}) },
    }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(data)
  })
}

let rpcId = 1
/** One JSON-RPC 2.0 call; throws on an error answer. */
export async function rpc(base, method, params, agent) {
  const res = await request(`${base}/_mistify_RPC_`, { method: 'POST', agent, body: { jsonrpc: '2.0', method, params, id: rpcId++ } })
  if (res.status !== 200) throw new Error(`${method}: HTTP ${res.status}: ${res.body}`)
  const env = JSON.parse(res.body.toString())
  if (env.error) throw new Error(`${method}: ${env.error.message}`)
  return env.result
}

/** Parse Prometheus text into { 'name{labels}': value }. */
export function parseMetrics(text) {
  const out = {}
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out[line.slice(0, i)] = Number(line.slice(i + 1))
  }
  return out
}

/** zfs command counts and seconds per subcommand, from the agent's histogram. */
export function zfsCommands(metrics) {
  const byCmd = {}
  for (const [k, v] of Object.entries(metrics)) {
    const m = /^mistify_zfs_command_duration_seconds_(count|sum)\{bin="zfs",command="([^"]+)"/.exec(k)
    if (!m) continue
    const e = (byCmd[m[2]] ??= { count: 0, seconds: 0 })
    if (m[1] === 'count') e.count += v
    else e.seconds += v
  }
  return byCmd
}

/** b - a, per subcommand, dropping zeros; plus the total count. */
export function zfsDelta(a, b) {
  const out = {}
  let total = 0
  for (const [cmd, e] of Object.entries(b)) {
    const count = e.count - (a[cmd]?.count ?? 0)
    if (count <= 0) continue
    out[cmd] = { count, seconds: e.seconds - (a[cmd]?.seconds ?? 0) }
    total += count
  }
  return { total, byCommand: out }
}

/** Agent processes still running: killed on the way out, whatever happened. */
const live = new Set()
export function killAll() {
  for (const p of live) { try { p.kill('SIGKILL') } catch {} }
}

/**
 * The agent as its own process (dist/src/agent/main.js), so its RSS is its own and
 * the load generator does not share its event loop. Logs (JSON lines, one
 * per RPC, as in production) go to a file. `prof`: a directory for --cpu-prof.
 */
export async function startAgent({ pool, dir, name = 'agent', imageServer = 'http://127.0.0.1:9', prof, extraArgs = [] }) {
  const port = await freePort()
  const metadataDir = join(dir, `${name}-db`)
  const logFile = join(dir, `${name}.log`)
  const fd = openSync(logFile, 'a')
  const nodeArgs = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`] : []
  const child = spawn(process.execPath, [...nodeArgs, 'dist/src/agent/main.js', '--zpool', pool, '--port', String(port), '--metadata-dir', metadataDir,
    '--image-service', imageServer, ...extraArgs], { stdio: ['ignore', fd, fd] })
  closeSync(fd)
  live.add(child)
  const exited = new Promise((r) => child.once('exit', (code, signal) => { live.delete(child); r({ code, signal }) }))
  const base = `http://127.0.0.1:${port}`
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
  const t0 = now()
  for (;;) {
    const gone = await Promise.race([exited, new Promise((r) => setTimeout(() => r(null), 200))])
    if (gone) throw new Error(`agent exited during start-up (${JSON.stringify(gone)}); log:\n${readFileSync(logFile, 'utf8').slice(-2000)}`)
    try {
      const res = await request(`${base}/healthz`, { agent })
      if (res.status === 200) break
    } catch { /* not listening yet */ }
    if (now() - t0 > 180) throw new Error('agent did not become healthy in 180 s')
  }
  const startSeconds = now() - t0
  return {
    pid: child.pid, base, agent, metadataDir, logFile, startSeconds,
    rpc: (method, params) => rpc(base, method, params, agent),
    async metrics() { return parseMetrics((await request(`${base}/metrics`, { agent })).body.toString()) },
    async zfsCounts() { return zfsCommands(await this.metrics()) },
    async stop() {
      agent.destroy()
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 20_000)
      await exited
      clearTimeout(t)
    },
  }
}

/** A node script of ours as a server process; it prints its port on stdout's first line. */
export async function startServerScript(script, envExtra = {}) {
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...envExtra } })
  live.add(child)
  const exited = new Promise((r) => child.once('exit', () => { live.delete(child); r() }))
  const port = await new Promise((resolve, reject) => {
    let buf = ''
    child.stdout.on('data', (c) => { buf += c; const nl = buf.indexOf('\n'); if (nl >= 0) resolve(Number(buf.slice(0, nl))) })
    child.once('exit', (code) => reject(new Error(`${script} exited (${code}) before listening`)))
  })
  return {
    pid: child.pid, base: `http://127.0.0.1:${port}`,
    async stop() { child.kill('SIGTERM'); await exited },
  }
}

function status(pid) {
  try { return readFileSync(`/proc/${pid}/status`, 'utf8') } catch { return undefined }
}
function kib(text, key) {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text ?? '')
  return m ? Number(m[1]) : undefined
}
export function rssKiB(pid) { return kib(status(pid), 'VmRSS') }

/** Reset the process's VmHWM (peak RSS) to its current RSS (Linux clear_refs 5). */
export function resetPeak(pid) {
  try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false }
}

/**
 * Sample VmRSS/VmHWM of `pid` every `everyMs` (and, with `children`, of every
 * descendant by command name) until stop(); returns peaks in KiB.
 */
export function sampleRss(pid, { everyMs = 100, children = false } = {}) {
  let maxRss = 0, lastHwm = 0, samples = 0
  const desc = {} // comm -> max of VmHWM/VmRSS seen
  const tick = () => {
    const s = status(pid)
    if (s) {
      samples++
      maxRss = Math.max(maxRss, kib(s, 'VmRSS') ?? 0)
      lastHwm = Math.max(lastHwm, kib(s, 'VmHWM') ?? 0)
    }
    if (children) {
      for (const p of descendants(pid)) {
        const t = status(p)
        if (!t) continue
        const comm = /^Name:\s+(\S+)/m.exec(t)?.[1] ?? '?'
        desc[comm] = Math.max(desc[comm] ?? 0, kib(t, 'VmHWM') ?? 0, kib(t, 'VmRSS') ?? 0)
      }
    }
  }
  tick()
  const timer = setInterval(tick, everyMs)
  return {
    stop() {
      tick()
      clearInterval(timer)
      return { maxRssKiB: maxRss, hwmKiB: lastHwm, samples, children: desc }
    },
  }
}

function descendants(pid) {
  const out = []
  const walk = (p) => {
    let tasks = []
    try { tasks = readdirSync(`/proc/${p}/task`) } catch { return }
    for (const t of tasks) {
      let kids = ''
      try { kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8') } catch { continue }
      for (const k of kids.trim().split(/\s+/).filter(Boolean)) { out.push(Number(k)); walk(Number(k)) }
    }
  }
  walk(pid)
  return out
}

/** Fill a zvol with a repeating non-zero text pattern (compresses with lz4, is not a hole). */
export async function fillPattern(dev, mib) {
  // yes dies of SIGPIPE when head has had enough: not a failure.
  await bash(`(yes 'mistify-bench-pattern-0123456789abcdefghijklmnopqrstuvwxyz' || true) | head -c ${mib * MiB} | dd of=${dev} bs=1M iflag=fullblock oflag=direct status=none`)
}

export const fmt = {
  s: (x) => (x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3)),
  ms: (x) => `${(x * 1000).toFixed(x < 0.01 ? 2 : x < 1 ? 1 : 0)} ms`,
  mbps: (x) => `${x.toFixed(1)} MB/s`,
  mib: (k) => `${(k / 1024).toFixed(1)} MiB`,
  ratio: (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–'),
}
