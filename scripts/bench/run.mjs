#!/usr/bin/env node
// The benchmark runner. Runs INSIDE the ZFS VM as root from the unpacked
// project (see scripts/bench.sh), on a throw-away file-backed pool that is
// destroyed on the way out whatever happens. Each benchmark sets the agent
// (dist/src/agent/main.js, a process of its own) next to the raw CLI on the same
// data in the same run. Prints one markdown table and per-benchmark detail,
// and writes JSON to argv[2] (default ./bench.json).
//
// Knobs (environment): BENCH_ONLY=clone,download,import,requests,rss,list,startup
// BENCH_ROUNDS (3) BENCH_CLONES (50) BENCH_DL_MIB (1024) BENCH_IMPORT_MIB (256)
// BENCH_CONCURRENCY (16) BENCH_RPS_SECONDS (10) BENCH_RPS_WARMUP (10) BENCH_RECORDS (10000)
// BENCH_LIST_CALLS (20) BENCH_GUEST_ROUNDS (10) BENCH_STARTUP_RECORDS (1000) BENCH_VOLUMES (500)
// BENCH_LIST_ROUNDS (3) BENCH_RSS_MIB (4096) BENCH_VOLBLOCKSIZE (128K)
// BENCH_STALL_SECONDS (1800: a benchmark running that long is reported with the
// VM's zfs state and given up) BENCH_PROFILE=DIR (agents run with --cpu-prof into DIR).
import { createServer } from 'node:http'
import { execFileSync } from 'node:child_process'
import { createReadStream, mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { pipeline } from 'node:stream'
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import os from 'node:os'
import { bash, env, fillPattern, killAll, num, sh, startAgent, fmt } from './lib.mjs'
import * as clone from './clone.mjs'
import * as download from './download.mjs'
import * as importBench from './import.mjs'
import * as requests from './requests.mjs'
import * as list from './list.mjs'
import * as rss from './rss.mjs'
import * as startup from './startup.mjs'
import * as receive from './receive.mjs'
import { svgChart } from './chart.mjs'

// Order matters: rss is the biggest transfer and its figures must not be skewed by leftovers;
// startup and list leave ~1000 datasets each behind (destroyed with the pool), so they run last;
// startup renames its images/ away, so list's agent does not scan them at start-up.
const ALL = [clone, download, importBench, receive, requests, rss, startup, list]
const out = process.argv[2] ?? 'bench.json'
const only = env('BENCH_ONLY', '').split(',').map((s) => s.trim()).filter(Boolean)
for (const o of only) if (!ALL.some((b) => b.name === o)) throw new Error(`BENCH_ONLY: unknown benchmark ${o} (have ${ALL.map((b) => b.name).join(', ')})`)
const selected = ALL.filter((b) => !only.length || only.includes(b.name))

const t0 = Date.now()
const log = (msg) => process.stderr.write(`[bench +${((Date.now() - t0) / 1000).toFixed(0)}s] ${msg}\n`)

const pool = `mbench${randomBytes(3).toString('hex')}`
// On the VM's ext4 root, not /tmp (tmpfs, RAM): the random-data import is real bytes on disk.
const dir = mkdtempSync('/var/tmp/mistify-bench-')
let poolMade = false
function cleanup() {
  killAll()
  if (poolMade) { try { sh('zpool', ['destroy', '-f', pool]) } catch (e) { log(`zpool destroy ${pool}: ${e.message}`) } }
  poolMade = false
  // A pool that would not go keeps its mounts under dir; the VM is thrown away anyway: say so, do not crash.
  try { rmSync(dir, { recursive: true, force: true }) } catch (e) { log(`rm ${dir}: ${e.message}`) }
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { log(`${sig}: cleaning up`); cleanup(); process.exit(130) })

const fileServers = []
const ctx = {
  pool, dir, log,
  filesDir: join(dir, 'files'),
  volblocksize: env('BENCH_VOLBLOCKSIZE', '128K'),
  prof: process.env.BENCH_PROFILE || undefined,
  // --file-sources: importTiny reads its image by file:// (refused without it).
  startAgent: (o) => startAgent({ pool, dir, prof: ctx.prof, ...o, extraArgs: ['--file-sources', ctx.filesDir, ...(o?.extraArgs ?? [])] }),
  /**
   * Serve one file as every /images/<id>/download, with Content-Length and the digests the image
   * service publishes (X-Image-Sha256, X-Image-Blake2b512); ids starting `sha-` get the sha256
   * alone, as from an image service that predates the BLAKE2b.
   */
  async fileServer(file) {
    const size = statSync(file).size
    const sha = createHash('sha256'), b2 = createHash('blake2b512')
    for await (const c of createReadStream(file)) { sha.update(c); b2.update(c) }
    const sha256 = sha.digest('hex'), blake2b512 = b2.digest('hex')
    const server = createServer((req, res) => {
      const m = /^\/images\/([^/]+)\/download$/.exec(req.url ?? '')
      if (!m) { res.writeHead(404); res.end(); return }
      const digests = m[1].startsWith('sha-') ? { 'X-Image-Sha256': sha256 } : { 'X-Image-Sha256': sha256, 'X-Image-Blake2b512': blake2b512 }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size, ...digests })
      // pipeline, not pipe: a client gone early must close the file too, or the pool cannot be destroyed at the end.
      pipeline(createReadStream(file), res, () => {})
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    fileServers.push(server)
    return { base: `http://127.0.0.1:${server.address().port}`, close: () => { server.closeAllConnections(); return new Promise((r) => server.close(r)) } }
  },
  /** A small image (16 MiB zvol, pattern) imported through RequestImage from a file:// source. */
  async importTiny(agent, id) {
    const file = join(ctx.filesDir, 'tiny.zfs')
    try { statSync(file) } catch {
      const ds = `${pool}/tiny-src`
      await bash(`zfs destroy -r ${ds} 2>/dev/null; zfs create -V 16M ${ds} && udevadm settle --timeout=30`)
      await fillPattern(`/dev/zvol/${ds}`, 16)
      await bash(`zfs snapshot ${ds}@base && zfs send ${ds}@base > ${file} && zfs destroy -r ${ds}`)
    }
    const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex') // 16 MiB: fine in memory
    const r = await agent.rpc('RequestImage', { id, source: `file://${file}`, sha256 })
    return r.images[0]
  },
}

const results = {}
let failed = 0

/** What the VM's zfs is doing, for a benchmark that made no progress: processes, their kernel stacks, zfs's debug log. */
function stallReport() {
  const run = (script) => { try { return execFileSync('bash', ['-c', script], { encoding: 'utf8', timeout: 30_000 }) } catch (e) { return `(${script}: ${e.message})` } }
  return [
    run("ps -eo pid,stat,wchan:32,etime,args | grep -E '[z]fs|[z]pool|[u]dev|[n]ode' | head -40"),
    run("for p in $(pgrep -x zfs; pgrep -x zpool); do echo \"== $p $(tr '\\0' ' ' < /proc/$p/cmdline)\"; cat /proc/$p/stack; done 2>&1 | head -120"),
    run(`zpool status ${pool} 2>&1 | head -20; tail -40 /proc/spl/kstat/zfs/dbgmsg 2>&1`),
  ].join('\n')
}

/** SIGKILL every process below `pid` (bash → xargs → zfs), deepest first. */
function killDescendants(pid) {
  let kids = []
  try { kids = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number) } catch { /* none */ }
  for (const k of kids) { killDescendants(k); try { process.kill(k, 'SIGKILL') } catch { /* gone */ } }
}

/**
 * One benchmark, given up when it has run `stallSeconds` (the VM's whole run
 * has its own, longer limit): the state it stalled in is logged, its agents
 * and commands are killed, and the benchmarks after it still run.
 */
async function runGuarded(b, stallSeconds) {
  let timer, probe
  const stalled = new Promise((_, reject) => {
    const giveUp = (why) => {
      clearTimeout(timer); clearInterval(probe)
      log(`${b.name}: ${why}; state of the VM:\n${stallReport()}`)
      killAll()
      killDescendants(process.pid)
      reject(new Error(`${why} (state in the log above)`))
    }
    timer = setTimeout(() => giveUp(`stalled: no result after ${stallSeconds} s`), stallSeconds * 1000)
    // A suspended pool (a vdev's I/O failed) never resumes by itself: every zfs command waits on it.
    probe = setInterval(() => {
      let health = ''
      try { health = execFileSync('zpool', ['list', '-H', '-o', 'health', pool], { encoding: 'utf8', timeout: 10_000 }).trim() } catch { return }
      if (health === 'SUSPENDED') { poolSuspended = true; giveUp(`the pool is suspended (I/O errors on its vdev)`) }
    }, 20_000)
  })
  try { return await Promise.race([b.run(ctx), stalled]) } finally { clearTimeout(timer); clearInterval(probe) }
}
let poolSuspended = false
try {
  // A disk of its own (scripts/bench.sh attaches one); else a sparse file, which only suits short runs:
  // the pool's writes grow it, and a full file system under a vdev suspends the pool.
  let disk = process.env.BENCH_POOL_DEVICE
  if (!disk) {
    disk = join(dir, 'disk0')
    writeFileSync(disk, '')
    truncateSync(disk, 32 * 1024 ** 3)
  }
  sh('zpool', ['create', '-f', '-o', 'ashift=12', '-O', 'mountpoint=none', '-O', 'compression=lz4', pool, disk])
  poolMade = true
  mkdirSync(ctx.filesDir, { recursive: true })
  sh('zfs', ['create', '-o', `mountpoint=${ctx.filesDir}`, '-o', 'recordsize=1M', `${pool}/files`])
  // The agent would make these at its first start; a benchmark may need them before (BENCH_ONLY=download).
  // guests/ mounted, as zfs's default mountpoints have it on a hypervisor: the agent then
  // reads its free space with statfs instead of running zfs list (src/zfs/mounted.ts).
  sh('zfs', ['create', `${pool}/images`])
  sh('zfs', ['create', '-o', `mountpoint=${join(dir, 'guests')}`, `${pool}/guests`])
  if (ctx.prof) mkdirSync(ctx.prof, { recursive: true })
  log(`pool ${pool} on ${disk}; running ${selected.map((b) => b.name).join(', ')}`)
  for (const b of selected) {
    const s = Date.now()
    log(`${b.name}: start`)
    try {
      if (poolSuspended) throw new Error('not run: the pool was suspended by an earlier benchmark')
      results[b.name] = await runGuarded(b, num('BENCH_STALL_SECONDS', 1800))
      results[b.name].seconds = (Date.now() - s) / 1000
      log(`${b.name}: done in ${results[b.name].seconds.toFixed(0)} s`)
      for (const t of results[b.name].text) log(`${b.name}: ${t}`)
    } catch (e) {
      failed++
      results[b.name] = { error: e.stack ?? String(e), seconds: (Date.now() - s) / 1000 }
      log(`${b.name}: FAILED: ${e.stack ?? e}`)
    }
    report() // so far: a run cut short (the VM's time limit) still leaves what it measured
  }
} finally {
  for (const s of fileServers) { s.closeAllConnections(); s.close() }
  cleanup()
}

report(true)
process.exit(failed ? 1 : 0)

/** The table, JSON and chart of the benchmarks run so far; `final` also prints them. */
function report(final = false) {
  const ran = selected.filter((b) => results[b.name])
  const info = {
    date: new Date().toISOString(),
    kernel: os.release(), cpus: os.cpus().length, memMiB: Math.round(os.totalmem() / 2 ** 20), node: process.version,
    zfs: (() => { try { return sh('zfs', ['version']).trim().split('\n').join(', ') } catch { return '?' } })(),
    knobs: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_'))),
    totalSeconds: (Date.now() - t0) / 1000,
    complete: final,
  }
  const rows = ran.flatMap((b) => results[b.name].rows ?? [{ benchmark: b.name, agent: 'FAILED', raw: '', ratio: NaN, note: (results[b.name].error ?? '').split('\n')[0] }])
  const verdict = (r) => r.target === undefined ? '' : `≤ ${r.target}× ${r.ratio <= r.target ? 'met' : 'NOT met'}`
  const lines = [
    '| benchmark | agent | raw CLI / baseline | ratio | target | note |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.benchmark} | ${r.agent} | ${r.raw} | ${fmt.ratio(r.ratio)} | ${verdict(r)} | ${r.note} |`),
  ]
  writeFileSync(out, JSON.stringify({ info, table: lines.join('\n'), rows, results: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { ...v, text: v.text, rows: undefined }])) }, null, 2) + '\n')
  const svg = out.replace(/\.json$/, '') + '.svg'
  writeFileSync(svg, svgChart(rows, `npm run bench, ${info.date.slice(0, 10)}: ${info.cpus} vCPU (QEMU TCG), node ${info.node}`))
  if (!final) return
  console.log(`\n## Benchmark results (${info.date}; ${info.cpus} vCPU, ${info.memMiB} MiB, kernel ${info.kernel}, ${info.zfs}, node ${info.node})\n`)
  console.log('ratio: agent time / raw time (for req/s: baseline rate / agent rate); above 1 the agent is slower.\n')
  console.log(lines.join('\n'))
  for (const b of ran) {
    const r = results[b.name]
    console.log(`\n### ${b.name} (${r.seconds.toFixed(0)} s)\n`)
    if (r.error) console.log(`FAILED: ${r.error}`)
    else for (const t of r.text) console.log(`- ${t}`)
  }
  console.log(`\ntotal ${info.totalSeconds.toFixed(0)} s`)
}

