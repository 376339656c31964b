import t from 'tap'
import { compactJson, JsonNumber, JsonObject, JsonSyntaxError, MAX_DEPTH, MAX_NUMBER_LENGTH, parseJson, parseJsonPrefix, quoteByte, toPlain } from '../../../src/agent/rpc/gorilla/json.js'

const errorOf = (input: string | Uint8Array): string | undefined => {
  try {
    parseJson(input)
    return undefined
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e
    return e.message
  }
}

t.test('valid values, as plain JS', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['null', null], ['true', true], ['false', false], ['0', 0], ['-12', -12], ['1.5e3', 1500], ['"x"', 'x'],
    ['[]', []], ['{}', {}], [' [1, "a", null, true, {"b": [false]}] ', [1, 'a', null, true, { b: [false] }]],
    ['{"a":{"b":{"c":[[],[{}]]}}}', { a: { b: { c: [[], [{}]] } } }],
  ]
  for (const [input, want] of cases) t.same(toPlain(parseJson(input)), want, input)
})

t.test('number literals are kept as written', async (t) => {
  const v = parseJson('[1e10, -0, 1.0, 18446744073709551615, 9007199254740993, 0.5E-3]')
  t.ok(Array.isArray(v))
  t.same((v as JsonNumber[]).map((n) => n.raw), ['1e10', '-0', '1.0', '18446744073709551615', '9007199254740993', '0.5E-3'])
  t.ok((v as unknown[]).every((n) => n instanceof JsonNumber))
  t.equal(JSON.stringify(new JsonNumber('1e3')), '1000', 'toJSON gives the number')
})

t.test('strings: escapes, unicode, surrogates (Go rules)', async (t) => {
  const cases: Array<[string, string]> = [
    ['"a\\"b\\\\c\\/d"', 'a"b\\c/d'],
    ['"\\b\\f\\n\\r\\t"', '\b\f\n\r\t'],
    ['"\\u0041\\u00e9"', 'Aé'],
    ['"é€😀"', 'é€😀'],
    ['"\\ud83d\\ude00"', '😀'],
    ['"\\ud800x"', '\ufffdx'],
    ['"\\ud800\\u0041"', '\ufffdA'],
    ['"\\udc00"', '\ufffd'],
    ['"\\ud800\\ud800\\udc00"', '\ufffd\u{10000}'],
    ['"\ufeffbom inside"', '\ufeffbom inside'],
    ['"\x7f"', '\x7f'],
  ]
  for (const [input, want] of cases) t.equal(parseJson(input), want, JSON.stringify(input))
  t.equal(parseJson(new Uint8Array([0x22, 0xff, 0x22])), '\ufffd', 'invalid UTF-8 becomes U+FFFD')
})

t.test("Go's decoder error texts", async (t) => {
  const cases: Array<[string, string]> = [
    ['', 'EOF'],
    [' \n\t\r ', 'EOF'],
    ['{', 'unexpected EOF'],
    ['{"method":', 'unexpected EOF'],
    ['{"a"', 'unexpected EOF'],
    ['"abc', 'unexpected EOF'],
    ['"ab\\', 'unexpected EOF'],
    ['"\\u12', 'unexpected EOF'],
    ['tru', 'unexpected EOF'],
    ['-', 'unexpected EOF'],
    ['1.', 'unexpected EOF'],
    ['1e', 'unexpected EOF'],
    ['1e-', 'unexpected EOF'],
    ['[1,', 'unexpected EOF'],
    ['[1 ', 'unexpected EOF'],
    ['abc', "invalid character 'a' looking for beginning of value"],
    ['}', "invalid character '}' looking for beginning of value"],
    ['[}', "invalid character '}' looking for beginning of value"],
    ['{a', "invalid character 'a' looking for beginning of object key string"],
    ['{"a" 1', "invalid character '1' after object key"],
    ['{"a":1 2', "invalid character '2' after object key:value pair"],
    ['{"a":01}', "invalid character '1' after object key:value pair"],
    ['[1 2', "invalid character '2' after array element"],
    ['[1,]', "invalid character ']' looking for beginning of value"],
    ['{"a":1,}', "invalid character '}' looking for beginning of object key string"],
    ['trux', "invalid character 'x' in literal true (expecting 'e')"],
    ['fals0', "invalid character '0' in literal false (expecting 'e')"],
    ['nul ', "invalid character ' ' in literal null (expecting 'l')"],
    ['nx', "invalid character 'x' in literal null (expecting 'u')"],
    ['-a', "invalid character 'a' in numeric literal"],
    ['1.x', "invalid character 'x' after decimal point in numeric literal"],
    ['1ex', "invalid character 'x' in exponent of numeric literal"],
    ['1e+x', "invalid character 'x' in exponent of numeric literal"],
    ['"a\nb"', "invalid character '\\n' in string literal"],
    ['"a\tb"', "invalid character '\\t' in string literal"],
    ['"\x01"', "invalid character '\\x01' in string literal"],
    ['"\\x"', "invalid character 'x' in string escape code"],
    ['"\\u12x4"', "invalid character 'x' in \\u hexadecimal character escape"],
    ["'a'", "invalid character '\\'' looking for beginning of value"],
    ['\\', "invalid character '\\\\' looking for beginning of value"],
    ['\x01', "invalid character '\\x01' looking for beginning of value"],
    ['\x7f', "invalid character '\\x7f' looking for beginning of value"],
    ['\ufeff{}', "invalid character 'ï' looking for beginning of value"],
    ['é', "invalid character 'Ã' looking for beginning of value"],
  ]
  for (const [input, want] of cases) t.equal(errorOf(input), want, JSON.stringify(input))
  t.equal(errorOf(new Uint8Array([0x80])), "invalid character '\\u0080' looking for beginning of value")
  t.equal(errorOf(new Uint8Array([0xa0])), "invalid character '\\u00a0' looking for beginning of value")
})

t.test('quoteByte mirrors Go quoteChar', async (t) => {
  t.equal(quoteByte(0x22), `'"'`)
  t.equal(quoteByte(0x27), `'\\''`)
  t.equal(quoteByte(0x0b), `'\\v'`)
  t.equal(quoteByte(0x00), `'\\x00'`)
  t.equal(quoteByte(0xad), `'\\u00ad'`)
  t.equal(quoteByte(0xff), `'ÿ'`)
})

t.test('only the first value is read; the rest is ignored', async (t) => {
  const cases: Array<[string, unknown, number]> = [
    ['{"a":1} garbage', { a: 1 }, 7],
    ['123abc', 123, 3],
    ['01', 0, 1],
    ['[1]]', [1], 3],
    ['true false', true, 4],
    ['"x"{', 'x', 3],
    ['  null\n', null, 6],
  ]
  for (const [input, want, end] of cases) {
    const p = parseJsonPrefix(input)
    t.same(toPlain(p.value), want, input)
    t.equal(p.end, end, `${input}: end`)
  }
})

t.test('objects keep members in order, duplicates, and byte spans', async (t) => {
  const text = '{"é": "ü", "id": 18446744073709551615 , "x":[1, 2], "a":1, "a":2}'
  const p = parseJsonPrefix(text)
  const o = p.value
  t.ok(o instanceof JsonObject)
  const obj = o as JsonObject
  t.same(obj.members.map((m) => m.key), ['é', 'id', 'x', 'a', 'a'])
  const id = obj.member('id')!
  t.equal(p.text(id.start, id.end), '18446744073709551615')
  const x = obj.member('x')!
  t.equal(p.text(x.start, x.end), '[1, 2]')
  t.equal(p.text(obj.member('é')!.start, obj.member('é')!.end), '"ü"', 'spans are byte offsets, read back as UTF-8')
  t.equal((obj.get('a') as JsonNumber).raw, '2', 'get: last wins')
  const nested = parseJsonPrefix('{"x" : {"y":[1,{"z": [2, 3] }]} , "w":""}')
  const nx = (nested.value as JsonObject).member('x')!
  const ny = (nx.value as JsonObject).member('y')!
  const nz = ((ny.value as JsonObject[])[1]!).member('z')!
  t.same([nested.text(nx.start, nx.end), nested.text(ny.start, ny.end), nested.text(nz.start, nz.end)],
    ['{"y":[1,{"z": [2, 3] }]}', '[1,{"z": [2, 3] }]', '[2, 3]'], 'spans of nested containers')
  t.ok(obj.has('x'))
  t.notOk(obj.has('X'), 'keys are exact here')
  t.equal(obj.get('nope'), undefined)
  const proto = toPlain(parseJson('{"__proto__": {"polluted": true}}')) as Record<string, unknown>
  t.equal(Object.getPrototypeOf(proto), Object.prototype, '__proto__ is a plain key')
  t.same(Object.keys(proto), ['__proto__'])
})

t.test('nesting is bounded, without blowing the stack', async (t) => {
  t.equal(errorOf('['.repeat(MAX_DEPTH + 1)), "invalid character '[' exceeded max depth")
  const deep = parseJson('['.repeat(MAX_DEPTH) + ']'.repeat(MAX_DEPTH))
  t.ok(Array.isArray(deep))
  t.equal(errorOf('['.repeat(MAX_DEPTH)), 'unexpected EOF')
})

t.test('item 12: number literals are bounded in length, refused in linear time', async (t) => {
  const longest = '-' + '1'.repeat(MAX_NUMBER_LENGTH - 1)
  t.equal((parseJson(`[${longest}]`) as JsonNumber[])[0]!.raw, longest, 'a literal of exactly the limit is kept')
  t.equal((parseJson('18446744073709551615') as JsonNumber).raw, '18446744073709551615', 'uint64 max (20 digits) is far inside it')
  const over = `{"id":${'1'.repeat(MAX_NUMBER_LENGTH + 1)}}`
  t.equal(errorOf(over), `number literal longer than ${MAX_NUMBER_LENGTH} characters`)
  try { parseJson(over); t.fail('parsed') } catch (e) { t.equal((e as JsonSyntaxError).offset, 6, 'the error points at the literal') }
  t.equal(errorOf(`0.${'5'.repeat(MAX_NUMBER_LENGTH)}`), `number literal longer than ${MAX_NUMBER_LENGTH} characters`, 'fractions count too')
  // A megabyte of digits is refused by the scanner (a linear pass, no BigInt, no 1 MB error text).
  t.equal(errorOf(`{"id":${'9'.repeat(1 << 20)}}`), `number literal longer than ${MAX_NUMBER_LENGTH} characters`)
})

t.test('compactJson: as Go re-encodes a RawMessage', async (t) => {
  t.equal(compactJson(' [1, 2, {"a" : "x y"}] '), '[1,2,{"a":"x y"}]')
  t.equal(compactJson('"<a&b>"'), '"\\u003ca\\u0026b\\u003e"')
  t.equal(compactJson('"a\\" b"'), '"a\\" b"', 'escaped quotes do not end the string')
  t.equal(compactJson('"\\\\" , 1'), '"\\\\",1')
  t.equal(compactJson('"\u2028\u2029"'), '"\\u2028\\u2029"')
  t.equal(compactJson('18446744073709551615'), '18446744073709551615')
})
