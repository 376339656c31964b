#!/usr/bin/env node
// Where the VM tier's test processes spend their time, from the V8 CPU profiles
// that `MISTIFY_VM_PROFILE=DIR npm run test:vm` leaves in DIR.
//   node scripts/test-profile.mjs DIR [N]
// Per test file: seconds sampled and idle (waiting on the agent's zfs children,
// timers, sockets). Then the busy time by the test helpers on the stack (outermost
// and innermost, so `unchanged > zfsState > sh` is a state capture's synchronous
// zfs calls), the agent's own code, the test file's body, and the rest (module
// loading, tap, GC), and the leaf functions of that rest.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const [dir, topArg] = process.argv.slice(2)
if (!dir) { console.error('usage: test-profile.mjs DIR [N]'); process.exit(2) }
const top = Number(topArg ?? 25)
const where = (url) => url.replace(/^.*\/(node_modules\/[^/]+|dist\/|node:)/, '$1')
const add = (m, k, us) => m.set(k, (m.get(k) ?? 0) + us)
const byHelper = new Map(), rest = new Map(), files = []
// CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread; another is a
// worker of that process (under tap's runner, the ESM loader-hooks worker of its --import loaders).
const ids = (f) => { const m = /\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(f); return m ? { pid: m[1], thread: m[2] } : { pid: f, thread: '0' } }
const mainName = new Map()
let all = 0, allIdle = 0

for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
  const p = JSON.parse(readFileSync(join(dir, f), 'utf8'))
  const node = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const urls = p.nodes.map((n) => n.callFrame.url)
  const { pid, thread } = ids(f)
  const name = thread === '0'
    ? (urls.find((u) => /dist\/test\/integration\/.*\.test\.js$/.test(u)) ?? urls.find((u) => /dist\/src\/.*main\.js$/.test(u)) ?? f).replace(/^.*\//, '')
    : `pid ${pid} thread ${thread}`
  const self = new Map()
  for (let i = 0; i < p.samples.length; i++) add(self, p.samples[i], p.timeDeltas[i] ?? 0)
  let total = 0, idle = 0
  for (const [id, us] of self) {
    total += us
    const leaf = node.get(id).callFrame
    if (leaf.functionName === '(idle)') { idle += us; continue }
    const helpers = []
    let kind
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const fr = node.get(cur).callFrame
      if (fr.url.includes('/dist/test/helpers/')) { const h = fr.functionName || '(anonymous)'; if (helpers.at(-1) !== h) helpers.push(h) }
      kind ??= fr.url.includes('/dist/src/') ? 'the agent (dist/src)' : fr.url.includes('/dist/test/integration/') ? 'the test file body' : undefined
    }
    if (helpers.length) add(byHelper, helpers.length === 1 ? helpers[0] : `${helpers.at(-1)} > ${helpers.length > 2 ? `${helpers.at(-2)} > ` : ''}${helpers[0]}`, us)
    else if (kind) add(byHelper, kind, us)
    else { add(byHelper, 'the rest (module loading, tap, GC)', us); add(rest, `${leaf.functionName || '(anonymous)'} ${where(leaf.url)}`, us) }
  }
  all += total; allIdle += idle
  if (thread === '0') mainName.set(pid, name)
  files.push([name, total, idle, pid, thread])
}
const s = (us) => (us / 1e6).toFixed(1).padStart(8)
console.log(`${files.length} profiles, ${s(all).trim()} s sampled, ${s(allIdle).trim()} s idle`)
for (const [n, t, i, pid, thread] of files.sort((a, b) => b[1] - a[1])) {
  console.log(`${s(t)} s  idle ${s(i)} s  ${thread === '0' ? n : `${mainName.get(pid) ?? n}, its worker thread ${thread}`}`)
}
console.log(`\nbusy, by the test helpers on the stack (of ${s(all - allIdle).trim()} s)`)
for (const [k, us] of [...byHelper].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${s(us)} s  ${k}`)
console.log('\nthe rest, by leaf function')
for (const [k, us] of [...rest].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${s(us)} s  ${k}`)
