import t from 'tap'
import { expectedDigest } from '../../../src/agent/import/digest.js'

const S = 'a'.repeat(64), S2 = 'b'.repeat(64), B = 'c'.repeat(128)
const none = { sha256: undefined, blake2b512: undefined }
const pick = (o: Partial<Parameters<typeof expectedDigest>[1]>) =>
  expectedDigest('x', { pinned: undefined, published: none, fromImageService: true, acceptUndigested: false, ...o })

t.test('the choice', async (t) => {
  t.same(pick({ published: { sha256: S, blake2b512: B } }), { algorithm: 'blake2b512', hex: B, sha256: S }, 'the service: BLAKE2b')
  t.same(pick({ published: { sha256: undefined, blake2b512: B }, recorded: S }), { algorithm: 'blake2b512', hex: B, sha256: S }, 'an increment: the record\'s sha256 is shown')
  t.same(pick({ published: { sha256: S, blake2b512: undefined } }), { algorithm: 'sha256', hex: S, sha256: S })
  t.same(pick({ recorded: S }), { algorithm: 'sha256', hex: S, sha256: S }, 'the lineage\'s sha256 alone')
  t.same(pick({ pinned: S, published: { sha256: S, blake2b512: B } }), { algorithm: 'sha256', hex: S, sha256: S }, 'a caller\'s pin: sha256 only')
  t.same(pick({ pinned: S, fromImageService: false, published: { sha256: undefined, blake2b512: B } }), { algorithm: 'sha256', hex: S, sha256: S })
  t.equal(pick({ acceptUndigested: true }), undefined, 'undigested, as the operator allows')
})

t.test('refusals', async (t) => {
  t.throws(() => pick({}), /the image service published no sha256 \(X-Image-Sha256\), and unverified images are refused/)
  t.throws(() => pick({ fromImageService: false, acceptUndigested: true }), /no sha256 to verify it against/)
  t.throws(() => pick({ fromImageService: false, published: { sha256: undefined, blake2b512: B } }), /no sha256 to verify it against/, 'a source of the caller\'s: its BLAKE2b is not trusted')
  t.throws(() => pick({ pinned: S, published: { sha256: S2, blake2b512: undefined } }), /publishes sha256 b+, the request says a+/)
  t.throws(() => pick({ recorded: S, published: { sha256: S2, blake2b512: B } }), /publishes sha256 b+, the image service's record says a+/)
  t.throws(() => pick({ published: { sha256: 'zz', blake2b512: B } }), /X-Image-Sha256 is not a sha256 digest: "zz"/)
  t.throws(() => pick({ published: { sha256: S, blake2b512: S } }), /X-Image-Blake2b512 is not a blake2b512 digest/)
  t.doesNotThrow(() => pick({ pinned: S, published: { sha256: S, blake2b512: 'junk' } }), 'an unused digest is not read')
})
