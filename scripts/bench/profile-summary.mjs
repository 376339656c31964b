#!/usr/bin/env node
// Summarise a V8 .cpuprofile (node --cpu-prof, see BENCH_PROFILE): self time
// by function and by file, top N. Usage: node scripts/bench/profile-summary.mjs FILE [N]
import { readFileSync } from 'node:fs'

const [file, topArg] = process.argv.slice(2)
if (!file) { console.error('usage: profile-summary.mjs FILE.cpuprofile [N]'); process.exit(2) }
const top = Number(topArg ?? 25)
const p = JSON.parse(readFileSync(file, 'utf8'))
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const self = new Map()
for (let i = 0; i < p.samples.length; i++) {
  const dt = p.timeDeltas[i] ?? 0
  self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + dt)
}
const total = [...self.values()].reduce((a, b) => a + b, 0)
const fn = new Map(), url = new Map()
for (const [id, us] of self) {
  const n = byId.get(id)
  const cf = n.callFrame
  const where = cf.url ? cf.url.replace(/^.*\/(node_modules\/[^/]+|dist\/src\/.*|node:[^/]+)/, '$1') : '(native)'
  const k = `${cf.functionName || '(anonymous)'} ${where}${cf.url ? `:${cf.lineNumber + 1}` : ''}`
  fn.set(k, (fn.get(k) ?? 0) + us)
  const u = cf.url ? where.replace(/^(node_modules\/[^/]+).*$/, '$1') : cf.functionName
  url.set(u, (url.get(u) ?? 0) + us)
}
const show = (title, m) => {
  console.log(`\n${title} (of ${(total / 1e6).toFixed(2)} s sampled)`)
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${(us / 1e6).toFixed(2).padStart(8)} s ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`)
}
show('self time by function', fn)
show('self time by file', url)
