import t from 'tap'
import { createScope } from '../../../src/agent/services/scope.js'
import { InvalidParamsError } from '../../../src/agent/errors.js'

t.test('issue 12 item 3: image ids the imports\' temporaries reserve, and ids too long for them', async (t) => {
  const scope = createScope('tank')
  t.equal(scope.imageDataset('debian-12'), 'tank/images/debian-12')
  for (const id of ['_incoming-x', '_spool-x', '_']) {
    t.throws(() => scope.imageDataset(id), { message: /ids starting with "_" are reserved/ }, id)
  }
  const room = 255 - 'tank/images/_incoming-'.length - '@image'.length
  t.equal(scope.imageDataset('x'.repeat(room)), `tank/images/${'x'.repeat(room)}`, 'the longest id that fits')
  t.throws(() => scope.imageDataset('x'.repeat(room + 1)), { message: /too long for tank\/images/ })
  t.throws(() => scope.imageDataset('a/b'), InvalidParamsError)
  t.equal(scope.resolve('guests/_x'), 'tank/guests/_x', 'the prefix is reserved in images/ only')
})
