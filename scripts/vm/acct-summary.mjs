#!/usr/bin/env node
// Inside the VM: sum a BSD process-accounting file (acct v3, written by the kernel for
// every process that ended) by command name, with the whole VM's CPU from /proc/stat.
//   node scripts/vm/acct-summary.mjs ACCT-FILE STAT-BEFORE-LINE
// scripts/test.mjs runs it when MISTIFY_VM_ACCT is set. Kernel threads that are still
// running at the end (ZFS's txg_sync, z_wr_iss…) are counted in /proc/stat but not here.
import { readFileSync } from 'node:fs'

const [file, before] = process.argv.slice(2)
const HZ = 100 // AHZ of acct v3 and USER_HZ of /proc/stat on x86
/** comp_t: a 13-bit mantissa and a 3-bit base-8 exponent. */
const comp = (c) => (c & 0x1fff) * 8 ** (c >> 13)

const data = readFileSync(file)
const by = new Map()
for (let off = 0; off + 64 <= data.length; off += 64) {
  if (data[off + 1] !== 3) continue // ac_version
  const comm = data.subarray(off + 48, off + 64).toString('latin1').replace(/\0.*$/s, '')
  const e = by.get(comm) ?? { n: 0, user: 0, sys: 0 }
  e.n++
  e.user += comp(data.readUInt16LE(off + 32)) / HZ
  e.sys += comp(data.readUInt16LE(off + 34)) / HZ
  by.set(comm, e)
}

// cpu  user nice system idle iowait irq softirq steal …
const ticks = (line) => line.trim().split(/\s+/).slice(1).map(Number)
const [a, b] = [ticks(before), ticks(readFileSync('/proc/stat', 'utf8').split('\n')[0])]
const d = b.map((v, i) => (v - (a[i] ?? 0)) / HZ)
const busy = d[0] + d[1] + d[2] + d[5] + d[6]
console.log(`# acct: VM CPU ${busy.toFixed(1)} s busy (user ${(d[0] + d[1]).toFixed(1)}, system ${(d[2] + d[5] + d[6]).toFixed(1)}), idle ${d[3].toFixed(1)} s, iowait ${d[4].toFixed(1)} s`)
const rows = [...by].sort((x, y) => (y[1].user + y[1].sys) - (x[1].user + x[1].sys))
const ended = rows.reduce((s, [, e]) => s + e.user + e.sys, 0)
console.log(`# acct: processes that ended: ${rows.reduce((s, [, e]) => s + e.n, 0)}, ${ended.toFixed(1)} s CPU; by command (CPU s, share of busy, count, CPU per process):`)
for (const [comm, e] of rows.slice(0, 15)) {
  const cpu = e.user + e.sys
  console.log(`# acct: ${comm.padEnd(16)} ${cpu.toFixed(1).padStart(7)} s ${(100 * cpu / busy).toFixed(0).padStart(3)}%  n=${String(e.n).padStart(5)}  ${(1000 * cpu / e.n).toFixed(0)} ms each`)
}
