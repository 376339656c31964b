// 1. CloneImage latency over HTTP JSON-RPC against `zfs clone` from a shell,
// same snapshot, same number of clones, interleaved (agent, raw, agent, …)
// so background drift hits both alike.
import { bash, num, quantile, timed, zfsDelta, fmt } from './lib.mjs'

export const name = 'clone'

export async function run(ctx) {
  const n = num('BENCH_CLONES', 50)
  const agent = await ctx.startAgent({ name: 'clone' })
  try {
    const image = await ctx.importTiny(agent, 'bench-clone-img')
    const snap = image.snapshot
    const rawParent = `${ctx.pool}/guests/bench-clone-raw`
    await bash(`zfs create -p ${rawParent}`)
    // Warm-up (first call pays for lazy loading, first clone creates the parent in the agent).
    await agent.rpc('CloneImage', { id: 'bench-clone-img', dest: 'guests/bench-clone/warm' })
    await bash(`zfs clone ${snap} ${rawParent}/warm`)
    const before = await agent.zfsCounts()
    const a = [], r = []
    for (let i = 0; i < n; i++) {
      a.push((await timed(() => agent.rpc('CloneImage', { id: 'bench-clone-img', dest: `guests/bench-clone/c${i}` }))).seconds)
      r.push((await timed(() => bash(`zfs clone ${snap} ${rawParent}/c${i}`))).seconds)
    }
    const calls = zfsDelta(before, await agent.zfsCounts())
    const s = (xs) => ({ p50: quantile(xs, 0.5), p95: quantile(xs, 0.95), min: Math.min(...xs), max: Math.max(...xs) })
    const agentS = s(a), rawS = s(r)
    const perCall = Object.fromEntries(Object.entries(calls.byCommand).map(([k, v]) => [k, { perCall: v.count / n, msPerCall: (v.seconds / n) * 1000 }]))
    ctx.log(`clone: zfs invocations per CloneImage ${calls.total / n}: ${JSON.stringify(perCall)}`)
    return {
      rows: [
        { benchmark: `CloneImage p50 (${n} clones)`, agent: fmt.ms(agentS.p50), raw: `${fmt.ms(rawS.p50)} (\`bash -c 'zfs clone'\`)`, ratio: agentS.p50 / rawS.p50, note: `${calls.total / n} zfs calls per CloneImage` },
        { benchmark: `CloneImage p95 (${n} clones)`, agent: fmt.ms(agentS.p95), raw: fmt.ms(rawS.p95), ratio: agentS.p95 / rawS.p95, note: '' },
      ],
      detail: {
        clones: n, snapshot: snap, agentSeconds: agentS, rawSeconds: rawS, zfsCallsPerClone: calls.total / n, zfsPerCommand: perCall,
        agentRuns: a, rawRuns: r,
      },
      text: [
        `CloneImage over HTTP (keep-alive), ${n} clones of ${snap}: p50 ${fmt.ms(agentS.p50)}, p95 ${fmt.ms(agentS.p95)}, min ${fmt.ms(agentS.min)}, max ${fmt.ms(agentS.max)}`,
        `bash -c 'zfs clone …', ${n} clones of the same snapshot: p50 ${fmt.ms(rawS.p50)}, p95 ${fmt.ms(rawS.p95)}, min ${fmt.ms(rawS.min)}, max ${fmt.ms(rawS.max)}`,
        `zfs invocations per CloneImage: ${calls.total / n} (${Object.entries(perCall).map(([k, v]) => `${k} ×${v.perCall} ${v.msPerCall.toFixed(0)} ms`).join(', ')})`,
      ],
    }
  } finally {
    await agent.stop()
    await bash(`zfs destroy -r ${ctx.pool}/guests/bench-clone; zfs destroy -r ${ctx.pool}/guests/bench-clone-raw; zfs destroy -r ${ctx.pool}/images/bench-clone-img`).catch((e) => ctx.log(`clone cleanup: ${e.message}`))
  }
}
