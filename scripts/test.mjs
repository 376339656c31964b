#!/usr/bin/env node
// The README's test command (`npm test`) after `npm run build`:
//   1. unit and component tests on the host (no root, no ZFS);
//   2. integration tests as root inside the ZFS VM (scripts/vm), against real
//      OpenZFS. The VM is built on first use and cached (see scripts/vm/build.sh).
// Flags: --unit, --fleet or --vm to run one tier. Other args (or those after --) pick the
// files or directories to run (VM or fleet tier); in the VM tier, args starting with - go to node.
// Ends with one line "N passed, N failed" over all tiers.
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, existsSync, statSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const argv = process.argv.slice(2)
const before = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv
// Files may come after `--` or bare (`npm run test:vm -- dist/test/integration/x.test.js`).
const extra = [...before.filter((a) => !a.startsWith('--')), ...(argv.includes('--') ? argv.slice(argv.indexOf('--') + 1) : [])]
const flags = before.filter((a) => a.startsWith('--'))
const only = flags.find((a) => a === '--unit' || a === '--fleet' || a === '--vm')
const tap = 'node_modules/tap/dist/esm/run.mjs'

/** Run a command, echo its output, and collect tap's "# { total: …, pass: … }" summaries. */
function run(cmd, args, opts = {}, sink = (c) => process.stdout.write(c)) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], ...opts })
    let tail = ''
    const counts = { pass: 0, fail: 0, skip: 0, todo: 0, seen: false, failedFiles: [] }
    // scripts/vm/test-files.sh ends each file with "# file: F exit=N seconds=S": a file that
    // failed without a failing test in its summary (it crashed, or hung) counts as one failure.
    let fileFails = -1
    child.stdout.on('data', (c) => {
      sink(c)
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
          fileFails = Number(/fail: (\d+)/.exec(m[1])?.[1] ?? 0)
        }
        const f = /^# file: (\S+) exit=(\d+)/.exec(line)
        if (f) {
          if (f[2] !== '0') {
            counts.failedFiles.push(`${f[1]} (exit ${f[2]})`)
            if (fileFails <= 0) counts.fail += 1
          }
          fileFails = -1
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

// A machine without the VM image builds it (scripts/vm/build.sh: apt and the ZFS
// module compile, many minutes) while the host tier runs, not after it.
let vmImage
if (only === undefined || only === '--vm') {
  vmImage = new Promise((resolve) => {
    const b = spawn('bash', ['scripts/vm/build.sh'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
    b.on('close', (code) => resolve(code ?? 1))
  })
}

if (only === undefined || only === '--unit') {
  console.log('== unit and component tests (host) ==')
  tiers.push(['host', await run('node', [tap, 'dist/test/unit', 'dist/test/component'].filter((p) => p === tap || existsSync(join(root, p))))])
}

// The image service's cluster mode against real etcd and Ceph RGW (nginx per test),
// started once for the whole tier, on loopback, and always torn down.
if ((only === undefined || only === '--fleet') && existsSync(join(root, 'dist/test/fleet'))) {
  console.log('== cluster-mode tests (etcd, Ceph RGW, nginx on loopback) ==')
  const dir = mkdtempSync(join(tmpdir(), 'mistify-engines-'))
  const down = () => spawnSync('bash', ['scripts/fleet/engines.sh', 'down', dir], { cwd: root, stdio: 'inherit' })
  process.once('exit', down)
  const up = await run('bash', ['scripts/fleet/engines.sh', 'up', dir])
  if (up.code !== 0) {
    tiers.push(['fleet', up])
  } else {
    const env = { ...process.env }
    for (const line of readFileSync(join(dir, 'engines.env'), 'utf8').split('\n')) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line)
      if (m) env[m[1]] = m[2]
    }
    const fleetFiles = only === '--fleet' && extra.length ? extra : ['dist/test/fleet']
    tiers.push(['fleet', await run('node', [tap, '--jobs=1', ...fleetFiles], { env })])
  }
  process.off('exit', down)
  down()
}

if (only === undefined || only === '--vm') {
  console.log('== integration tests (real ZFS in the VM) ==')
  if (await vmImage !== 0) { console.error('could not build the VM image (scripts/vm/build.sh)'); process.exit(1) }
  // tap compiles its plugin set (package.json "tap.plugin") with TypeScript on first
  // use; the host tier does that, but alone the VM tier must, since the VM has no tsc.
  if (only === '--vm' && (await run('node', [tap, 'build'])).code !== 0) { console.error('tap build failed'); process.exit(1) }
  // Ship the project as an ext4 disk made on the host (mkfs.ext4 -d), mounted in the VM:
  // 9p reads file by file, and unpacking 14,000 files, are slow under TCG.
  const share = mkdtempSync(join(tmpdir(), 'mistify-vm-share-'))
  const stage = join(share, 'stage')
  mkdirSync(join(stage, 'test'), { recursive: true })
  const parts = ['package.json', 'dist', 'node_modules', 'scripts', 'systemd']
  const copy = async (flags) => (await run('cp', [flags, ...parts, stage])).code === 0
    && (await run('cp', [flags, 'test/fixtures', join(stage, 'test')])).code === 0
  // Hard links when the temporary directory is on the same file system: no bytes copied.
  if (!await copy('-al') && !await copy('-a')) { console.error('could not stage the project'); process.exit(1) }
  rmSync(join(stage, 'node_modules/typescript'), { recursive: true, force: true })
  rmSync(join(stage, 'node_modules/@typescript'), { recursive: true, force: true })
  const pack = await run('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-N', '65536', '-L', 'project', '-d', stage, join(share, 'project.img'), '2G'])
  rmSync(stage, { recursive: true, force: true })
  if (pack.code !== 0) { console.error('could not pack the project (mkfs.ext4 -d)'); process.exit(1) }
  // The reliability suites' size knobs travel into the VM (scripts/reliability.sh sets them), and publish-increments' size.
  const q = (v) => `'${v.replace(/'/g, `'\\''`)}'`
  const knobs = Object.entries(process.env)
    .filter(([k]) => /^MISTIFY_(RELIABILITY|CRASH_|CORPUS_|LOAD_|DISCONNECT|INCREMENT_)/.test(k))
    .map(([k, v]) => `${k}=${q(v ?? '')} `).join('')
  // MISTIFY_VM_PROFILE=DIR: each test process writes a V8 CPU profile, copied to DIR
  // (summary: node scripts/test-profile.mjs DIR). Profiling makes the files 2-3 times slower.
  const profileDir = process.env.MISTIFY_VM_PROFILE
  const nodeArgs = [...extra.filter((a) => a.startsWith('-')), ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir=/mnt/host/prof'] : [])]
  // One file at a time inside a VM: with files side by side, OpenZFS 2.1's zvol_open
  // leaked ERESTARTSYS (errno 512) to a test and three files hung (a run of tap --jobs=3).
  // Instead, the whole suite is split over MISTIFY_VM_COUNT VMs (default 2, one per host
  // core), each with its own kernel and ZFS, balanced by the files' last measured seconds.
  const picked = testFiles(extra.filter((a) => !a.startsWith('-')))
  const groups = picked.length ? [picked] : splitFiles(Number(process.env.MISTIFY_VM_COUNT ?? 2))
  // vCPUs per VM: the host's cores shared out, so two VMs on two cores get one each.
  // Four emulated vCPUs on two host cores were slower: two VMs each running rpc-cancel
  // and ops-agent took 235 s with 2 vCPUs each and 187 s with 1 (MTTCG, 2026-12-07).
  const cpus = process.env.MISTIFY_VM_CPUS ?? String(Math.max(1, Math.floor(availableParallelism() / groups.length)))
  // MISTIFY_VM_ACCT=1: the kernel's process accounting (acct(2), switched on with perl, which
  // every Debian has) records every process the tests run; at the end each VM prints the CPU
  // by command (scripts/vm/acct-summary.mjs): where the emulated CPU goes.
  const acct = process.env.MISTIFY_VM_ACCT ? 'stat0=$(head -1 /proc/stat); : > /tmp/acct.log; perl -e \'my $f = "/tmp/acct.log"; syscall(163, $f) == 0 or die "acct: $!\\n"\'' : ''
  const accounted = (cmd) => acct ? `${acct}\nrc=0; ${cmd} || rc=$?\nperl -e 'syscall(163, 0)'; node scripts/vm/acct-summary.mjs /tmp/acct.log "$stat0"; exit $rc` : cmd
  const inner = (args) => [
    'set -e; echo "vm: booted after $(cut -d" " -f1 /proc/uptime) s of uptime"',
    `mkdir -p /tmp/p${profileDir ? ' /mnt/host/prof' : ''}; mount /dev/vdb /tmp/p; cd /tmp/p`,
    'echo "vm: ready after $(cut -d" " -f1 /proc/uptime) s of uptime"',
    accounted(`${knobs}MISTIFY_TEST_ZPOOL=1 bash scripts/vm/test-files.sh ${[...nodeArgs, ...args].map(q).join(' ')}`),
  ].join('\n')
  // The first VM's output streams; the others' is held and printed whole after it.
  const held = groups.map(() => [])
  const flush = () => { for (const h of held.slice(1)) process.stdout.write(Buffer.concat(h.splice(0).map((c) => Buffer.from(c)))) }
  // Stopped early: what the other VMs said so far is still shown.
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { flush(); process.exit(130) })
  const vms = await Promise.all(groups.map(async (args, i) => {
    const own = i === 0 ? share : mkdtempSync(join(tmpdir(), 'mistify-vm-share-'))
    if (groups.length > 1) held[i].push(`== VM ${i + 1} of ${groups.length}: ${args.map((f) => f.replace(/^.*\//, '')).join(' ')} ==\n`)
    if (i === 0) process.stdout.write(held[0].splice(0).join(''))
    const r = await run('bash', ['scripts/vm/run.sh', '--share', own, '--disk', join(share, 'project.img'), '--cpus', cpus, '--timeout', process.env.MISTIFY_VM_TIMEOUT ?? '4800', '--', inner(args)],
      {}, i === 0 ? undefined : (c) => held[i].push(c))
    if (profileDir && existsSync(join(own, 'prof'))) {
      mkdirSync(profileDir, { recursive: true })
      for (const f of readdirSync(join(own, 'prof'))) cpSync(join(own, 'prof', f), join(profileDir, f))
    }
    if (i !== 0) rmSync(own, { recursive: true, force: true })
    return r
  }))
  flush()
  rmSync(share, { recursive: true, force: true })
  vms.forEach((vm, i) => tiers.push([groups.length > 1 ? `vm ${i + 1}` : 'vm', vm]))
}

/** Test files named, directories expanded to their *.test.js files. */
function testFiles(args) {
  return args.flatMap((a) => {
    const p = join(root, a)
    if (!existsSync(p) || !statSync(p).isDirectory()) return [a]
    return readdirSync(p, { recursive: true }).map(String).filter((f) => f.endsWith('.test.js')).sort().map((f) => join(a, f))
  })
}

/** The integration files in `n` groups of about equal time (longest first, each to the lightest group). */
function splitFiles(n) {
  const dir = 'dist/test/integration'
  const files = readdirSync(join(root, dir)).filter((f) => f.endsWith('.test.js')).map((f) => `${dir}/${f}`)
  // Seconds per file in one VM of one vCPU beside another (npm run test:vm, 2026-12-07); a new file counts as 60.
  const seconds = { crash: 117, 'publish-increments': 147, 'reliability-disconnect': 50, 'reliability-load': 97, 'rpc-download': 159,
    'rpc-image-formats': 78, 'rpc-increments': 84, 'rpc-replicas': 45, 'security-generic': 142, 'security-sources': 58, 'systemd-units': 39,
    'zfs-adapter': 47, 'guests-space-mounted': 30, 'ops-agent': 35, 'reliability-corpus': 106, 'rpc-cancel': 35, 'rpc-image-status': 36,
    'rpc-images': 160, 'rpc-snapshots': 104, 'rpc-volumes-disks': 63, 'security-imports': 108, 'security-streams': 99, 'security-transport': 102 }
  const weight = (f) => seconds[f.replace(/^.*\/|\.test\.js$/g, '')] ?? 60
  const groups = Array.from({ length: Math.max(1, Math.min(n, files.length)) }, () => ({ files: [], total: 0 }))
  for (const f of [...files].sort((a, b) => weight(b) - weight(a))) {
    const g = groups.reduce((x, y) => (y.total < x.total ? y : x))
    g.files.push(f); g.total += weight(f)
  }
  return groups.map((g) => g.files.sort())
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
  for (const f of r.counts.failedFiles) console.error(`${name}: ${f} failed`)
}
if (!ok && fail === 0) fail = 1 // a tier that crashed counts as a failure
console.log(`${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}`)
process.exit(ok ? 0 : 1)
