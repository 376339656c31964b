// 7. Start-up with BENCH_STARTUP_RECORDS (1000) complete image records, each
// with its zvol and snapshot under images/, against one `zfs list -r -t all`
// of images/ (what start-up must at least learn), less the agent's own
// start-up with an empty store and an empty images/ (the process and the pool checks).
import { openDb } from '../../dist/src/common/db.js'
import { imageRecords } from '../../dist/src/agent/catalog.js'
import { bash, median, num, timed, zfsCommands, fmt } from './lib.mjs'

export const name = 'startup'

export async function run(ctx) {
  const n = num('BENCH_STARTUP_RECORDS', 1000)
  const rounds = num('BENCH_ROUNDS', 3)
  const images = `${ctx.pool}/images`
  const text = []
  // The baseline first, while images/ is empty: the process, the pool checks and one scan of nothing.
  const emptyStarts = []
  for (let r = 0; r < rounds; r++) {
    const empty = await ctx.startAgent({ name: `startup-empty-${r}` })
    emptyStarts.push(empty.startSeconds)
    await empty.stop()
  }
  // Where real images live (images/<id>@<snap>). volmode=none, inherited from images/ (renamed
  // away at the end): no /dev nodes, so udev does not churn through 1,000 zvols (start-up never
  // opens them), and each create is one transaction group, not a create and then a set.
  // Progress is logged every 100.
  await bash(`zfs set volmode=none ${images}`)
  const made = await timed(async () => {
    for (let i = 0; i < n; i += 100) {
      await bash(`set -e; for i in $(seq ${i} ${Math.min(n, i + 100) - 1}); do zfs create -s -V 1M ${images}/bench-startup-$i; done`)
      ctx.log(`startup: ${Math.min(n, i + 100)} of ${n} zvols made`)
    }
    await bash(`zfs snapshot $(seq 0 ${n - 1} | sed 's|.*|${images}/bench-startup-&@base|')`)
  })
  text.push(`made ${n} zvols with a snapshot each in ${fmt.s(made.seconds)} s`)
  const records = Array.from({ length: n }, (_, i) => ({
    id: `bench-startup-${i}`, type: '', volume: `${images}/bench-startup-${i}`, snapshot: `${images}/bench-startup-${i}@base`,
    size: 1, status: 'complete', source: `http://images.example:20000/images/bench-startup-${i}/download`,
  }))
  const fullStarts = [], lists = []
  let zfsAtStart
  let remembered
  for (let r = 0; r < rounds; r++) {
    const metadataDir = `${ctx.dir}/startup-full-${r}-db`
    const db = await openDb(metadataDir)
    try { await imageRecords(db).batch(records.map((v) => ({ type: 'put', key: v.id, value: v }))) } finally { await db.close() }
    const full = await ctx.startAgent({ name: `startup-full-${r}` })
    fullStarts.push(full.startSeconds)
    const zc = zfsCommands(await full.metrics())
    zfsAtStart = Object.fromEntries(Object.entries(zc).map(([k, v]) => [k, v.count]))
    remembered = await full.rpc('ListImages', {})
    await full.stop()

    lists.push((await timed(() => bash(`zfs list -H -p -r -t all ${images} > /dev/null`))).seconds)
  }
  // Out of the way in one command, so later benchmarks' agents do not scan 1,000 zvols at start-up
  // (destroying them would take minutes); the pool's destruction takes them.
  await bash(`zfs rename ${images} ${ctx.pool}/startup-leftover && zfs create ${images}`)
  const kept = Array.isArray(remembered?.images) ? remembered.images.filter((i) => i.status === 'complete').length : undefined
  const full = median(fullStarts), empty = median(emptyStarts), list = median(lists)
  const added = full - empty
  text.push(`agent start-up to healthy (polled every 200 ms), median of ${rounds}: ${fmt.s(full)} s with ${n} complete records, ${fmt.s(empty)} s with an empty store and images/; the records' share ${fmt.s(added)} s`)
  text.push(`zfs invocations during start-up with the records: ${Object.entries(zfsAtStart ?? {}).map(([k, v]) => `${k} ×${v}`).join(', ')}; complete images after start-up: ${kept}`)
  text.push(`zfs list -H -p -r -t all ${images} (${2 * n} datasets and snapshots and whatever else is there), median of ${rounds}: ${fmt.s(list)} s`)
  return {
    rows: [
      { benchmark: `start-up with ${n} image records`, agent: `${fmt.s(full)} s (empty store ${fmt.s(empty)} s)`, raw: `${fmt.s(list)} s (\`zfs list -r -t all\` of images/)`, ratio: added / list, target: 2, note: 'ratio: the records\' share of start-up ÷ one zfs list' },
    ],
    detail: { records: n, rounds, fullStarts, emptyStarts, lists, zfsAtStart, completeAfterStart: kept },
    text,
  }
}
