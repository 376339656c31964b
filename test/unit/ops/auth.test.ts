import t from 'tap'
import { checkBearer } from '../../../src/agent/http/bearer-auth.js'

t.test('checkBearer', async (t) => {
  t.ok(checkBearer('Bearer abc', 'abc'))
  t.ok(checkBearer('bearer abc', 'abc'), 'scheme case-insensitive')
  t.ok(checkBearer('Bearer   abc ', 'abc'))
  t.notOk(checkBearer('Bearer abd', 'abc'))
  t.notOk(checkBearer('Bearer abcd', 'abc'), 'longer')
  t.notOk(checkBearer('Bearer ab', 'abc'), 'prefix')
  t.notOk(checkBearer('abc', 'abc'), 'no scheme')
  t.notOk(checkBearer('Basic abc', 'abc'))
  t.notOk(checkBearer('Bearer ', 'abc'))
  t.notOk(checkBearer(undefined, 'abc'))
  t.notOk(checkBearer('', 'abc'))
  t.notOk(checkBearer('Bearer abc def', 'abc'))
})
