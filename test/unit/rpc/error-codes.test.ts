import t from 'tap'
import * as agentErrors from '../../../src/agent/errors.js'
import * as zfsErrors from '../../../src/zfs/errors.js'
import {
  AGENT_ERROR_ROWS, classifyError, INTERNAL_MESSAGE, LEGACY_INTERNAL_MESSAGE, PARSE_ERROR_ROW, RPC, wireError, ZFS_ERROR_ROWS,
} from '../../../src/agent/rpc/error-codes.js'
import { JsonSyntaxError } from '../../../src/agent/rpc/gorilla/json.js'
import { ParamsTypeError } from '../../../src/agent/rpc/gorilla/decode.js'

type AnyErrorClass = new (message: string) => Error

/** Every exported class of a module that is an Error subclass. */
const errorClasses = (mod: Record<string, unknown>): Array<[string, AnyErrorClass]> =>
  Object.entries(mod).filter((e): e is [string, AnyErrorClass] =>
    typeof e[1] === 'function' && (e[1] === Error || (e[1] as { prototype?: unknown }).prototype instanceof Error))

const codeRange = (c: number) => (c >= -32099 && c <= -32000) || Object.values(RPC).includes(c as never)

t.test('every exported error class has a row', async (t) => {
  const agent = errorClasses(agentErrors)
  const zfs = errorClasses(zfsErrors)
  t.ok(agent.length >= 8, `found ${agent.length} agent error classes`)
  t.ok(zfs.length >= 13, `found ${zfs.length} zfs error classes`)
  for (const [name, Cls] of agent) {
    const e = new Cls('boom') as agentErrors.AgentError
    const c = classifyError(e)
    t.equal(c.source, 'agent', name)
    t.ok(Object.hasOwn(AGENT_ERROR_ROWS, e.code), `${name}: row for code ${e.code}`)
    t.same(c.row, AGENT_ERROR_ROWS[e.code], name)
    t.ok(codeRange(c.row.rpcCode), `${name}: ${c.row.rpcCode} is a JSON-RPC server code`)
  }
  for (const [name, Cls] of zfs) {
    const e = new Cls('boom') as zfsErrors.ZfsError
    const c = classifyError(e)
    t.equal(c.source, 'zfs', name)
    t.ok(Object.hasOwn(ZFS_ERROR_ROWS, e.kind), `${name}: row for kind ${e.kind}`)
    t.same(c.row, ZFS_ERROR_ROWS[e.kind], name)
    t.ok(codeRange(c.row.rpcCode), `${name}: ${c.row.rpcCode} is a JSON-RPC server code`)
  }
})

t.test('rows of the architecture table', async (t) => {
  const rowOf = (e: unknown) => { const { rpcCode, httpStatus, expose } = wireError(e); return [rpcCode, httpStatus, expose] }
  t.same(rowOf(new agentErrors.InvalidParamsError('need an id')), [-32602, 400, true])
  t.same(rowOf(new zfsErrors.InvalidDatasetNameError('bad')), [-32602, 400, true])
  t.same(rowOf(new agentErrors.NotFoundError()), [-32004, 404, true])
  t.same(rowOf(new zfsErrors.DatasetNotFoundError('x')), [-32004, 404, true])
  t.same(rowOf(new agentErrors.AlreadyExistsError('x')), [-32009, 409, true])
  t.same(rowOf(new zfsErrors.DatasetExistsError('x')), [-32009, 409, true])
  t.same(rowOf(new agentErrors.BusyError('x')), [-32011, 503, true])
  t.same(rowOf(new zfsErrors.DatasetBusyError('x')), [-32011, 503, true])
  t.same(rowOf(new agentErrors.UpstreamError('x')), [-32012, 502, true])
  t.same(rowOf(new agentErrors.ConflictError('x')), [-32010, 409, true])
  t.same(rowOf(new zfsErrors.HasDependentClonesError('x')), [-32010, 409, true])
  t.same(rowOf(new agentErrors.NoSpaceError()), [-32013, 507, true])
  t.same(rowOf(new zfsErrors.OutOfSpaceError('x')), [-32013, 507, true])
  t.same(rowOf(new zfsErrors.ZfsCommandError('x')), [-32603, 500, false])
  t.same(rowOf(new zfsErrors.ZfsParseError('x')), [-32603, 500, false])
  t.same(rowOf(new agentErrors.AgentError('x')), [-32603, 500, false])
  t.same(rowOf(new Error('x')), [-32603, 500, false])
  t.same(rowOf(new JsonSyntaxError('EOF', 0)), [PARSE_ERROR_ROW.rpcCode, 400, true])
  t.same(rowOf(new ParamsTypeError('json: cannot unmarshal')), [-32602, 400, true])
})

t.test('wireError in the 2.0 dialect', async (t) => {
  t.same(wireError(new agentErrors.NotFoundError()), { rpcCode: -32004, httpStatus: 404, message: 'not found', data: { code: 'not_found' }, expose: true })
  const hidden = wireError(new Error('password=hunter2'))
  t.equal(hidden.message, INTERNAL_MESSAGE)
  t.equal(hidden.data?.code, 'internal')
  t.match(hidden.data?.ref, /^[0-9a-f-]{36}$/)
  t.not(wireError(new Error('x')).data?.ref, hidden.data?.ref, 'a fresh ref each time')
  const zfs = wireError(new zfsErrors.ZfsCommandError('exit status 1: "/sbin/zfs zfs list" => oops\n'))
  t.equal(zfs.message, INTERNAL_MESSAGE)
  t.equal(zfs.data?.code, 'other')
  t.equal(wireError('a string was thrown').message, INTERNAL_MESSAGE)
  t.equal(wireError(undefined).rpcCode, -32603)
})

t.test('wireError in the 1.0 dialect: the Go error text', async (t) => {
  t.equal(wireError(new agentErrors.NotFoundError(), '1.0').message, 'not found')
  t.equal(wireError(new agentErrors.InvalidParamsError('need an id'), '1.0').message, 'need an id')
  const text = 'exit status 1: "/sbin/zfs zfs destroy pool/x" => cannot open \'pool/x\': dataset does not exist\n'
  const w = wireError(new zfsErrors.ZfsCommandError(text), '1.0')
  t.equal(w.message, text, 'our own errors keep their text, as the original sent it')
  t.equal(w.expose, false, 'still flagged internal, for the log')
  t.equal(wireError(new TypeError('x is undefined'), '1.0').message, LEGACY_INTERNAL_MESSAGE, 'a stray exception is not a contract')
  t.equal(wireError(42, '1.0').message, LEGACY_INTERNAL_MESSAGE)
})
