// 5. ListSnapshots and ListVolumes over many datasets: zfs invocations per RPC
// call (from the agent's zfs command histogram; should be 1) and time per call
// against one raw `zfs list -H -p -t snapshot|volume -r <pool>/guests`.
import { bash, median, num, timed, zfsDelta, fmt } from './lib.mjs'

export const name = 'list'

export async function run(ctx) {
  const nVol = num('BENCH_VOLUMES', 500)
  const rounds = num('BENCH_LIST_ROUNDS', 3)
  const bulk = `${ctx.pool}/guests/bulk`
  // Sparse 1 MiB zvols, no device nodes (volmode=none) so udev stays out of
  // it; two creation loops at once; then one recursive snapshot for all.
  const half = Math.ceil(nVol / 2)
  const made = await timed(() => bash(`zfs create -p -o volmode=none ${bulk} &&
    for j in 0 1; do ( for i in $(seq $((j*${half})) $((j*${half}+${half}-1))); do [ $i -lt ${nVol} ] && zfs create -s -V 1M ${bulk}/v$i; done; true ) & done; wait
    zfs snapshot -r ${bulk}@s`))
  const counted = (await bash(`zfs list -H -t volume -r ${bulk} | wc -l; zfs list -H -t snapshot -r ${bulk} | wc -l`)).trim().split('\n').map(Number)
  ctx.log(`list: ${counted[0]} volumes and ${counted[1]} snapshots made in ${fmt.s(made.seconds)} s`)
  const agent = await ctx.startAgent({ name: 'list' })
  try {
    const out = { created: { volumes: counted[0], snapshots: counted[1], seconds: made.seconds }, rounds }
    const rows = [], text = [`${counted[0]} sparse 1 MiB volumes with a snapshot each (${counted[0] + counted[1]} datasets) made in ${fmt.s(made.seconds)} s`]
    for (const [method, type, key] of [['ListSnapshots', 'snapshot', 'snapshots'], ['ListVolumes', 'volume', 'volumes']]) {
      const a = [], r = []
      let items = 0, lines = 0
      const before = await agent.zfsCounts()
      for (let i = 0; i < rounds; i++) {
        const got = await timed(() => agent.rpc(method, {}))
        items = got.value[key].length
        a.push(got.seconds)
        const raw = await timed(() => bash(`zfs list -H -p -t ${type} -r ${ctx.pool}/guests | wc -l`))
        lines = Number(raw.value.trim())
        r.push(raw.seconds)
      }
      const calls = zfsDelta(before, await agent.zfsCounts())
      const am = median(a), rm = median(r)
      out[method] = { items, rawLines: lines, agentSeconds: a, rawSeconds: r, zfsCallsPerRpc: calls.total / rounds, zfsPerCommand: calls.byCommand }
      rows.push({
        benchmark: `${method}, ${items} ${key}`, agent: `${fmt.s(am)} s`, raw: `${fmt.s(rm)} s (\`zfs list -H -p -t ${type} -r\`)`, ratio: am / rm,
        note: `${calls.total / rounds} zfs call(s) per RPC; median of ${rounds}`,
      })
      text.push(`${method}: ${items} ${key} (agent lists images/ and guests/, 14 columns); ${a.map(fmt.s).join(', ')} s; zfs invocations per call ${calls.total / rounds} (${Object.entries(calls.byCommand).map(([k, v]) => `${k} ×${v.count / rounds}`).join(', ')})`)
      text.push(`zfs list -H -p -t ${type} -r ${ctx.pool}/guests: ${lines} lines; ${r.map(fmt.s).join(', ')} s`)
    }
    return { rows, detail: out, text }
  } finally {
    await agent.stop()
    // The bulk datasets stay until the pool is destroyed (one destroy of ~1000
    // datasets costs minutes under TCG); this benchmark runs last.
  }
}
