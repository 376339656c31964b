#!/usr/bin/env node
// Import throughput: RequestImage (agent: HTTP → sha256 → zfs receive → verify → rename)
// against the raw CLI `curl URL | zfs receive`, in the same VM run, same stream,
// same HTTP server. Runs INSIDE the ZFS VM as root (see scripts/bench.sh).
// Prints a table and writes JSON to the path in argv[2] (default ./bench-import.json).
import { execFileSync, execFile } from 'node:child_process'
import { createServer } from 'node:http'
import { createReadStream, statSync, writeFileSync, truncateSync, mkdtempSync } from 'node:fs'
import { once } from 'node:events'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { promisify } from 'node:util'
import { createAgent } from '../dist/src/agent.js'
import { DEFAULTS } from '../dist/src/config.js'
import { silentLogger } from '../dist/src/log.js'

const SIZE_MIB = Number(process.env.BENCH_SIZE_MIB ?? 256)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const out = process.argv[2] ?? 'bench-import.json'
const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } })
const bash = (script) => promisify(execFile)('bash', ['-o', 'pipefail', '-c', script], { maxBuffer: 1 << 20 })

const dir = mkdtempSync(join(tmpdir(), 'bench-'))
const disk = join(dir, 'disk0')
writeFileSync(disk, '')
truncateSync(disk, (SIZE_MIB * 4 + 512) * 1024 * 1024)
const pool = 'benchpool'
sh('zpool', ['create', '-f', '-O', 'mountpoint=none', pool, disk])
try {
  sh('zfs', ['create', '-V', `${SIZE_MIB}M`, `${pool}/src`])
  sh('udevadm', ['settle'])
  sh('dd', ['if=/dev/urandom', `of=/dev/zvol/${pool}/src`, 'bs=1M', `count=${SIZE_MIB}`, 'status=none'])
  sh('zfs', ['snapshot', `${pool}/src@img`])
  const file = join(dir, 'image.zfs')
  await bash(`zfs send ${pool}/src@img > ${file}`)
  const bytes = statSync(file).size
  const server = createServer((req, res) => {
    res.writeHead(200, { 'Content-Length': bytes })
    createReadStream(file).pipe(res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const base = `http://127.0.0.1:${server.address().port}`
  const agent = await createAgent({ ...DEFAULTS, zpool: pool, metadataDir: join(dir, 'db'), imageServer: base }, { log: silentLogger })

  const results = { cli: [], agent: [] }
  for (let r = 0; r < ROUNDS; r++) {
    let t0 = process.hrtime.bigint()
    await bash(`curl -sfS ${base}/images/cli${r}/download | zfs receive ${pool}/images/cli${r}`)
    results.cli.push(Number(process.hrtime.bigint() - t0) / 1e9)
    t0 = process.hrtime.bigint()
    await agent.services.images.requestImage({ id: `agent${r}`, type: '', dest: '', source: '' })
    results.agent.push(Number(process.hrtime.bigint() - t0) / 1e9)
    sh('zfs', ['destroy', '-r', `${pool}/images/cli${r}`])
    await agent.services.images.deleteImage({ id: `agent${r}`, type: '', dest: '', source: '' })
  }
  await agent.close()
  server.close()
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const mbps = (s) => bytes / s / 1e6
  const row = (name, xs) => ({ name, medianSeconds: median(xs), MBps: mbps(median(xs)), runs: xs })
  const report = {
    what: 'import of one zfs send stream over loopback HTTP into zfs receive', streamBytes: bytes, zvolMiB: SIZE_MIB, rounds: ROUNDS,
    cli: row('curl URL | zfs receive', results.cli), agent: row('RequestImage (agent)', results.agent),
  }
  report.ratio = report.agent.medianSeconds / report.cli.medianSeconds
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n')
  console.log(`stream ${bytes} bytes (${SIZE_MIB} MiB zvol of random data), ${ROUNDS} rounds, median`)
  console.log('| path | seconds | MB/s |')
  console.log('|---|---|---|')
  for (const r of [report.cli, report.agent]) console.log(`| ${r.name} | ${r.medianSeconds.toFixed(2)} | ${r.MBps.toFixed(1)} |`)
  console.log(`agent / raw CLI time ratio: ${report.ratio.toFixed(2)}`)
} finally {
  try { sh('zpool', ['destroy', '-f', pool]) } catch {}
}
