// 1. CloneImage latency over HTTP JSON-RPC against `zfs clone` from a shell,
// same snapshot, same number of clones, interleaved (agent, raw, agent, …)
// so background drift hits both alike. Then CreateGuestDisks with 4 image
// disks against 4 `zfs clone` in sequence (and, for reference, in parallel).
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

    // CreateGuestDisks, 4 disks of the image: the agent makes the guest filesystem, checks space, clones.
    const rounds = num('BENCH_GUEST_ROUNDS', 10)
    const disks = Array.from({ length: 4 }, (_, j) => ({ bus: 'virtio', device: `vd${'abcd'[j]}`, image: 'bench-clone-img' }))
    const clones = (g, sep) => Array.from({ length: 4 }, (_, j) => `zfs clone ${j === 0 && sep === ';' ? '-p ' : ''}${snap} ${rawParent}/${g}/disk-${j}`).join(sep)
    await agent.rpc('CreateGuestDisks', { guest: { id: 'bench-warm', disks } })
    const ga = [], gr = [], gp = []
    for (let i = 0; i < rounds; i++) {
      ga.push((await timed(() => agent.rpc('CreateGuestDisks', { guest: { id: `bench-g${i}`, disks } }))).seconds)
      gr.push((await timed(() => bash(clones(`gs${i}`, ';')))).seconds)
      gp.push((await timed(() => bash(`zfs create ${rawParent}/gp${i} && { ${clones(`gp${i}`, ' & ')} & wait; }`))).seconds)
    }
    const gaS = s(ga), grS = s(gr), gpS = s(gp)
    const perCall = Object.fromEntries(Object.entries(calls.byCommand).map(([k, v]) => [k, { perCall: v.count / n, msPerCall: (v.seconds / n) * 1000 }]))
    ctx.log(`clone: zfs invocations per CloneImage ${calls.total / n}: ${JSON.stringify(perCall)}`)
    return {
      rows: [
        { benchmark: `CloneImage p50 (${n} clones)`, agent: fmt.ms(agentS.p50), raw: `${fmt.ms(rawS.p50)} (\`bash -c 'zfs clone'\`)`, ratio: agentS.p50 / rawS.p50, note: `${calls.total / n} zfs calls per CloneImage` },
        { benchmark: `CloneImage p95 (${n} clones)`, agent: fmt.ms(agentS.p95), raw: fmt.ms(rawS.p95), ratio: agentS.p95 / rawS.p95, target: 1.2, note: '' },
        { benchmark: `CreateGuestDisks, 4 image disks, p50 (${rounds} guests)`, agent: fmt.ms(gaS.p50), raw: `${fmt.ms(grS.p50)} (4 × \`zfs clone\` in sequence)`, ratio: gaS.p50 / grS.p50, target: 1.1, note: `4 in parallel from a shell: ${fmt.ms(gpS.p50)}` },
      ],
      detail: {
        clones: n, snapshot: snap, agentSeconds: agentS, rawSeconds: rawS, zfsCallsPerClone: calls.total / n, zfsPerCommand: perCall,
        agentRuns: a, rawRuns: r,
        guestDisks: { rounds, agentSeconds: gaS, rawSequentialSeconds: grS, rawParallelSeconds: gpS, agentRuns: ga, rawSequentialRuns: gr, rawParallelRuns: gp },
      },
      text: [
        `CloneImage over HTTP (keep-alive), ${n} clones of ${snap}: p50 ${fmt.ms(agentS.p50)}, p95 ${fmt.ms(agentS.p95)}, min ${fmt.ms(agentS.min)}, max ${fmt.ms(agentS.max)}`,
        `bash -c 'zfs clone …', ${n} clones of the same snapshot: p50 ${fmt.ms(rawS.p50)}, p95 ${fmt.ms(rawS.p95)}, min ${fmt.ms(rawS.min)}, max ${fmt.ms(rawS.max)}`,
        `zfs invocations per CloneImage: ${calls.total / n} (${Object.entries(perCall).map(([k, v]) => `${k} ×${v.perCall} ${v.msPerCall.toFixed(0)} ms`).join(', ')})`,
        `CreateGuestDisks with 4 image disks, ${rounds} guests: p50 ${fmt.ms(gaS.p50)}, p95 ${fmt.ms(gaS.p95)}; 4 × zfs clone in sequence: p50 ${fmt.ms(grS.p50)}, p95 ${fmt.ms(grS.p95)}; zfs create + 4 × zfs clone in parallel: p50 ${fmt.ms(gpS.p50)}, p95 ${fmt.ms(gpS.p95)}`,
      ],
    }
  } finally {
    await agent.stop()
    await bash(`zfs destroy -r ${ctx.pool}/guests/bench-clone; zfs destroy -r ${ctx.pool}/guests/bench-clone-raw; for g in $(zfs list -H -o name -d 1 ${ctx.pool}/guests | grep '/bench-'); do zfs destroy -r $g; done; zfs destroy -r ${ctx.pool}/images/bench-clone-img`).catch((e) => ctx.log(`clone cleanup: ${e.message}`))
  }
}
