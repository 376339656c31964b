#!/usr/bin/env node
// The README's test command (`npm test`) after `npm run build`:
//   1. unit and component tests on the host (no root, no ZFS);
//   2. integration tests as root inside the ZFS VM (scripts/vm), against real
//      OpenZFS. The VM is built on first use and cached (see scripts/vm/build.sh).
// Flags: --unit or --vm to run one tier; extra args after -- go to tap (VM tier).
// Ends with one line "N passed, N failed" over both tiers.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const argv = process.argv.slice(2)
const extra = argv.includes('--') ? argv.slice(argv.indexOf('--') + 1) : []
const flags = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv
const only = flags.find((a) => a === '--unit' || a === '--vm')
const tap = 'node_modules/tap/dist/esm/run.mjs'

/** Run a command, echo its output, and collect tap's "# { total: …, pass: … }" summaries. */
function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], ...opts })
    let tail = ''
    const counts = { pass: 0, fail: 0, skip: 0, todo: 0, seen: false }
    child.stdout.on('data', (c) => {
      process.stdout.write(c)
      tail += c.toString()
      let nl
      while ((nl = tail.indexOf('\n')) >= 0) {
        const line = tail.slice(0, nl).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
        tail = tail.slice(nl + 1)
        const m = /^# \{ total: \d+(.*)\}\s*$/.exec(line)
        if (m) {
          counts.seen = true
          for (const k of ['pass', 'fail', 'skip', 'todo']) {
            const v = new RegExp(`${k}: (\\d+)`).exec(m[1])
            if (v) counts[k] += Number(v[1])
          }
        }
      }
    })
    child.on('close', (code, signal) => resolve({ code: code ?? 128, signal, counts }))
  })
}

const tiers = []

if (only !== '--vm') {
  const deps = await run('bash', ['scripts/host-deps.sh'])
  if (deps.code !== 0) { console.error('host prerequisites missing (scripts/host-deps.sh)'); process.exit(1) }
}

if (only !== '--vm') {
  console.log('== unit and component tests (host) ==')
  tiers.push(['host', await run('node', [tap, 'dist/test/unit', 'dist/test/component'].filter((p) => p === tap || existsSync(join(root, p))))])
}

if (only !== '--unit') {
  console.log('== integration tests (real ZFS in the VM) ==')
  // Ship the project as one tar: 9p reads file by file are slow under TCG.
  const share = mkdtempSync(join(tmpdir(), 'mistify-vm-share-'))
  const pack = await run('tar', ['-cf', join(share, 'project.tar'), '--exclude=node_modules/typescript',
    '--exclude=node_modules/@typescript', 'package.json', 'dist', 'node_modules', 'scripts', 'systemd', 'test/fixtures'])
  if (pack.code !== 0) { console.error('could not pack the project'); process.exit(1) }
  // The reliability suites' size knobs travel into the VM (scripts/reliability.sh sets them).
  const q = (v) => `'${v.replace(/'/g, `'\\''`)}'`
  const knobs = Object.entries(process.env)
    .filter(([k]) => /^MISTIFY_(RELIABILITY|CRASH_|CORPUS_|LOAD_|DISCONNECT)/.test(k))
    .map(([k, v]) => `${k}=${q(v ?? '')} `).join('')
  const inner = [
    'set -e; mkdir -p /tmp/p; tar -C /tmp/p -xf /mnt/host/project.tar; cd /tmp/p',
    `${knobs}MISTIFY_TEST_ZPOOL=1 node ${tap} --jobs=1 --reporter=tap ${extra.length ? extra.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ') : 'dist/test/integration'}`,
  ].join('\n')
  const vm = await run('bash', ['scripts/vm/run.sh', '--share', share, '--timeout', process.env.MISTIFY_VM_TIMEOUT ?? '4800', '--', inner])
  rmSync(share, { recursive: true, force: true })
  tiers.push(['vm', vm])
}

let pass = 0, fail = 0, skip = 0, ok = true
for (const [name, r] of tiers) {
  pass += r.counts.pass; fail += r.counts.fail; skip += r.counts.skip
  if (r.code !== 0 || !r.counts.seen) {
    ok = false
    console.error(`${name} tier failed (exit ${r.code}${r.counts.seen ? '' : ', no test summary seen'})`)
  } else {
    console.log(`${name}: ${r.counts.pass} passed, ${r.counts.fail} failed`)
  }
}
if (!ok && fail === 0) fail = 1 // a tier that crashed counts as a failure
console.log(`${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}`)
process.exit(ok ? 0 : 1)
