/**
 * The json-rpc-2.0 server over the real method table and services, on a recording zfs: every
 * method hands its call's signal to each zfs command it runs; the registry, aliases and observer.
 */
import t from 'tap'
import { createRpcServer, rpcServer, type RpcEvent } from '../../../src/agent/rpc/server.js'
import { defineMethod, type CallContext } from '../../../src/agent/rpc/method.js'
import { IMAGE_REQUEST } from '../../../src/agent/rpc/requests.js'
import { createServices } from '../../../src/agent/services/index.js'
import { createScope } from '../../../src/agent/services/scope.js'
import { DEFAULTS } from '../../../src/agent/config.js'
import type { Deps } from '../../../src/agent/services/deps.js'
import { cachedTable, type ImageRecord } from '../../../src/agent/catalog.js'
import type { Dataset, Zfs } from '../../../src/zfs/index.js'
import { NotFoundError } from '../../../src/agent/errors.js'

const POOL = 'tank'
const dataset = (name: string): Dataset => ({
  name, type: name.includes('@') ? 'snapshot' : 'volume', origin: undefined, used: 0, available: 2 ** 40, referenced: 0,
  volsize: 1 << 20, written: 0, quota: undefined, creation: 0, createtxg: 1, guid: '1', clones: [], receiveResumeToken: undefined,
})

/** Every zfs command with its arguments; answers as if each named dataset existed and lists were empty. */
function recordingZfs(calls: Array<{ op: string; args: unknown[] }>): Zfs {
  const answers: Record<string, (...a: unknown[]) => unknown> = {
    getDataset: (name) => dataset(name as string),
    findDataset: (name) => /disk-\d+$/.test(name as string) ? undefined : dataset(name as string),
    listDatasets: () => [],
    holds: () => [],
  }
  return new Proxy({}, {
    get: (_, op: string) => async (...args: unknown[]) => {
      calls.push({ op, args })
      return answers[op]?.(...args)
    },
  }) as Zfs
}

const record: ImageRecord = { id: 'img', type: '', volume: `${POOL}/images/img`, snapshot: `${POOL}/images/img@image`, size: 1, status: 'complete' }
// Any id is this one record.
const records: Deps['records'] = {
  ...cachedTable<ImageRecord>({ get: async () => record, put: async () => {}, del: async () => {}, values: async () => [record], entries: async () => [[record.id, record]], batch: async () => {} }),
  get: async () => record,
}
const fetches = { run: () => Promise.reject(new Error('no fetches here')), has: () => false } as unknown as Deps['fetches']

const GUEST = { guest: { id: 'g', disks: [{ size: 1 }, { image: 'img' }] } }
/** Each method with params that get it as far as its zfs work. */
const CASES: Array<[string, unknown]> = [
  ['CloneImage', { id: 'img', dest: 'guests/c' }],
  ['DeleteImage', { id: 'img' }],
  ['ListSnapshots', { id: 'guests/v' }],
  ['GetSnapshot', { id: 'guests/v@s' }],
  ['CreateSnapshot', { id: 'guests/v', dest: 's' }],
  ['DeleteSnapshot', { id: 'guests/v@s' }],
  ['RollbackSnapshot', { id: 'guests/v@s' }],
  ['CreateVolume', { id: 'guests/v', size: 1 }],
  ['GetVolume', { id: 'guests/v' }],
  ['ListVolumes', {}],
  ['DeleteDataset', { id: 'guests/v' }],
  ['VerifyDisks', GUEST],
  ['CreateGuestDisks', GUEST],
  ['DeleteGuestsDisks', GUEST],
]

t.test('every zfs command of a call gets the call\'s signal', async (t) => {
  const calls: Array<{ op: string; args: unknown[] }> = []
  const services = createServices({ zfs: recordingZfs(calls), scope: createScope(POOL), records, fetches, config: DEFAULTS })
  const rpc = createRpcServer(services)
  for (const [method, params] of CASES) {
    calls.length = 0
    const ctx: CallContext = { signal: new AbortController().signal, dialect: '2.0' }
    const res = await rpc.call(method, params, ctx)
    t.equal(res.error, undefined, `${method} ran`)
    t.ok(calls.length > 0, `${method} ran zfs`)
    // A family's rollbacks, once begun, are not stopped half way (services/snapshots.ts).
    const without = calls.filter((c) => c.op !== 'rollback' && !c.args.some((a) => (a as { signal?: unknown } | null)?.signal === ctx.signal))
    t.same(without.map((c) => c.op), [], `${method}: ${calls.map((c) => c.op).join(', ')}`)
  }
})

t.test('the registry: 17 methods and the README aliases in one json-rpc-2.0 server', async (t) => {
  const services = createServices({ zfs: recordingZfs([]), scope: createScope(POOL), records, fetches, config: DEFAULTS })
  const rpc = createRpcServer(services)
  t.equal(rpc.methods.size, 17)
  for (const name of [...rpc.methods.keys(), 'DeleteGuestDisks', 'ListSnapshot']) t.ok(rpc.jsonrpc.hasMethod(name), name)
  const events: RpcEvent[] = []
  const observed = createRpcServer(services, { observe: (e) => events.push(e) })
  const ctx: CallContext = { signal: new AbortController().signal, dialect: '1.0', requestId: 'r' }
  await observed.jsonrpc.receive({ jsonrpc: '2.0', method: 'ListSnapshot', params: {}, id: 1 }, ctx)
  t.same(events.map((e) => [e.method, e.outcome, e.requestId]), [['ListSnapshots', 'ok', 'r']], 'an alias is reported by its real name')
})

t.test('errors go through the one table, in the call\'s dialect; a throwing observer fails nothing', async (t) => {
  const logs: object[] = []
  const rpc = rpcServer(new Map([
    ['GetImage', defineMethod(IMAGE_REQUEST, async () => { throw new NotFoundError() })],
    ['DeleteImage', defineMethod(IMAGE_REQUEST, async () => { throw new Error('secret') })],
    ['ListImages', defineMethod(IMAGE_REQUEST, async (p, ctx) => ({ id: p.id, dialect: ctx.dialect }))],
  ]), { observe: () => { throw new Error('observer broke') }, log: (o) => logs.push(o) })
  const signal = new AbortController().signal
  t.same(await rpc.call('GetImage', {}, { signal, dialect: '2.0' }),
    { jsonrpc: '2.0', id: 0, error: { code: -32004, message: 'not found', data: { code: 'not_found' } } })
  const v2 = await rpc.call('DeleteImage', {}, { signal, dialect: '2.0' })
  t.match(v2.error, { code: -32603, message: 'Internal error', data: { code: 'internal', ref: /^[0-9a-f-]{36}$/ } })
  t.equal((await rpc.call('DeleteImage', {}, { signal, dialect: '1.0' })).error?.message, 'internal error')
  t.equal(logs.length, 2, 'the hidden ones are logged')
  t.same((await rpc.call('ListImages', { id: 'x' }, { signal, dialect: '1.0' })).result, { id: 'x', dialect: '1.0' })
})
