import t from 'tap'
import { goJson, goQuote, legacyError, legacyResult, v2Body, v2Error, v2ErrorObject, v2Result } from '../../../src/agent/rpc/gorilla/codec.js'
import { wireError } from '../../../src/agent/rpc/error-codes.js'
import { NotFoundError } from '../../../src/agent/errors.js'

t.test('1.0 envelope bytes', async (t) => {
  t.equal(legacyResult({ images: [{ id: 'a', type: '', size: 1 }] }, '1'),
    '{"result":{"images":[{"id":"a","type":"","size":1}]},"error":null,"id":1}\n')
  t.equal(legacyResult({ images: null }, '18446744073709551615'), '{"result":{"images":null},"error":null,"id":18446744073709551615}\n')
  t.equal(legacyResult(undefined, '"x"'), '{"result":null,"error":null,"id":"x"}\n')
  t.equal(legacyError('not found', '9007199254740993'), '{"result":null,"error":"not found","id":9007199254740993}\n')
  t.equal(legacyError('cannot open \'p/x\': dataset does not exist\n', '0'),
    '{"result":null,"error":"cannot open \'p/x\': dataset does not exist\\n","id":0}\n')
})

t.test("strings as Go's encoder writes them", async (t) => {
  t.equal(goJson('<a href="x">&</a>'), '"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e"')
  t.equal(goJson('\b\f\n\r\t\x01\x1f'), '"\\u0008\\u000c\\n\\r\\t\\u0001\\u001f"')
  t.equal(goJson('\\b'), '"\\\\b"', 'an escaped backslash followed by b is left alone')
  t.equal(goJson('\\<'), '"\\\\\\u003c"')
  t.equal(goJson('\u2028\u2029'), '"\\u2028\\u2029"')
  t.equal(goJson('\ud800'), '"\\ufffd"', 'a lone surrogate is U+FFFD')
  t.equal(goJson('é😀'), '"é😀"')
  t.equal(goJson({ a: [1, null, true], 'b<': 'c' }), '{"a":[1,null,true],"b\\u003c":"c"}')
  t.equal(goJson(undefined), 'null')
  t.throws(() => goJson({ n: 1n }))
})

t.test('goQuote is Go %q', async (t) => {
  t.equal(goQuote('ImageStore.X'), '"ImageStore.X"')
  t.equal(goQuote(''), '""')
  t.equal(goQuote('a"b\\c'), '"a\\"b\\\\c"')
  t.equal(goQuote('\x07\b\f\n\r\t\v'), '"\\a\\b\\f\\n\\r\\t\\v"')
  t.equal(goQuote('\x00\x1b\x7f'), '"\\x00\\x1b\\x7f"')
  t.equal(goQuote('\u0080\u00a0\u00ad\u200b'), '"\\u0080\\u00a0\\u00ad\\u200b"')
  t.equal(goQuote('é日本😀'), '"é日本😀"')
  t.equal(goQuote('\u{e0001}'), '"\\U000e0001"')
  t.equal(goQuote('\ud800'), '"\ufffd"')
})

t.test('2.0 envelope bytes', async (t) => {
  t.equal(v2Result({ ok: true }, '1'), '{"jsonrpc":"2.0","result":{"ok":true},"id":1}')
  t.equal(v2Result(null, null), '{"jsonrpc":"2.0","result":null,"id":null}')
  t.equal(v2Error({ code: -32601, message: 'Method not found: "X"' }, '"a"'),
    '{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found: \\"X\\""},"id":"a"}')
  t.equal(v2Error(v2ErrorObject(wireError(new NotFoundError())), '7'),
    '{"jsonrpc":"2.0","error":{"code":-32004,"message":"not found","data":{"code":"not_found"}},"id":7}')
  t.equal(v2Body([], true), null)
  t.equal(v2Body([], false), null)
  t.equal(v2Body(['{"a":1}'], false), '{"a":1}\n')
  t.equal(v2Body(['{"a":1}'], true), '[{"a":1}]\n')
  t.equal(v2Body(['{"a":1}', '{"b":2}'], true), '[{"a":1},{"b":2}]\n')
})

t.test('reuseEncoding: a marked result goes out as the bytes made when it was marked; unmarked ones are encoded each time', async (t) => {
  const { reuseEncoding } = await import('../../../src/agent/rpc/gorilla/codec.js')
  const marked = reuseEncoding({ images: [{ id: 'a<b' }] })
  const first = '{"images":[{"id":"a\\u003cb"}]}' // Go escapes as for any value
  marked.images.push({ id: 'never seen' }) // a contract breach, only to observe the cache
  const bytes = (b: unknown) => Buffer.concat(b as Buffer[]).toString()
  const v2 = v2Result(marked, '7')
  t.ok(Array.isArray(v2) && v2.every((c) => Buffer.isBuffer(c)), 'chunks of bytes, not text to encode again')
  t.equal(bytes(v2), `{"jsonrpc":"2.0","result":${first},"id":7}`, 'the bytes made when it was marked')
  t.equal((v2 as Buffer[])[1], v2Result(marked, '8')[1], 'the very same buffer each time: no copy')
  t.equal(bytes(legacyResult(marked, '"x"')), `{"result":${first},"error":null,"id":"x"}\n`)
  t.same(reuseEncoding(marked), marked, 'marking again changes nothing')
  t.equal(bytes(v2Result(marked, null)), `{"jsonrpc":"2.0","result":${first},"id":null}`)
  const plain = { images: [{ id: 'x' }] }
  t.equal(v2Result(plain, '1'), '{"jsonrpc":"2.0","result":{"images":[{"id":"x"}]},"id":1}')
  plain.images.push({ id: 'y' })
  t.equal(v2Result(plain, '1'), '{"jsonrpc":"2.0","result":{"images":[{"id":"x"},{"id":"y"}]},"id":1}', 'an unmarked value is encoded afresh')
  // A batch mixing text and bytes: one body of bytes, in order.
  const batch = v2Body([v2Result(plain, '1'), v2, v2Error({ code: -32601, message: 'x' }, '3')], true)
  t.ok(Array.isArray(batch))
  t.equal(bytes(batch), `[{"jsonrpc":"2.0","result":{"images":[{"id":"x"},{"id":"y"}]},"id":1},{"jsonrpc":"2.0","result":${first},"id":7},{"jsonrpc":"2.0","error":{"code":-32601,"message":"x"},"id":3}]\n`)
  t.equal(bytes(v2Body([v2], false)), `{"jsonrpc":"2.0","result":${first},"id":7}\n`)
})
