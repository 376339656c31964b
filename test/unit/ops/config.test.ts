import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, DEFAULTS, parseConfig, parseConfigFile, readConfigFile } from '../../../src/config.js'

t.test('config file: known keys, right types', async (t) => {
  t.same(parseConfigFile('{"zpool":"tank","port":1234,"token":"x","socket":"/run/a.sock"}'), { zpool: 'tank', port: 1234, token: 'x', socket: '/run/a.sock' })
  t.same(parseConfigFile('{}'), {})
})

t.test('config file: unknown keys, wrong types, not an object, bad JSON', async (t) => {
  t.throws(() => parseConfigFile('{"zpol":"tank"}', 'f.json'), { name: 'ConfigError', message: /f\.json: unknown key "zpol" \(known: zpool, / })
  t.throws(() => parseConfigFile('{"port":"80"}'), { message: /port: expected a whole number, got "80"/ })
  t.throws(() => parseConfigFile('{"port":1.5}'), { message: /port: expected a whole number, got 1\.5/ })
  t.throws(() => parseConfigFile('{"port":-1}'), { message: /port: expected a whole number/ })
  t.throws(() => parseConfigFile('{"zpool":7}'), { message: /zpool: expected a string, got 7/ })
  t.throws(() => parseConfigFile('{"token":null}'), { message: /token: expected a string, got null/ })
  t.throws(() => parseConfigFile('[1]'), { message: /expected a JSON object/ })
  t.throws(() => parseConfigFile('{"port":'), { message: /not valid JSON/ })
  t.throws(() => parseConfigFile('{"__proto__":1}'), { message: /unknown key "__proto__"/ })
  t.throws(() => readConfigFile('/nonexistent/mistify.json'), ConfigError)
})

t.test('precedence: flags > env > file > defaults', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mistify-cfg-'))
  const file = join(dir, 'c.json')
  writeFileSync(file, JSON.stringify({ zpool: 'filepool', port: 1000, fetchers: 4, listen: '0.0.0.0', token: 'ft' }))
  const c = parseConfig(['--config', file, '--port', '3000'], { MISTIFY_PORT: '2000', MISTIFY_FETCHERS: '6' })
  t.equal(c.port, 3000, 'flag wins')
  t.equal(c.fetchers, 6, 'env beats the file')
  t.equal(c.zpool, 'filepool', 'file beats defaults')
  t.equal(c.listen, '0.0.0.0')
  t.equal(c.token, 'ft')
  t.equal(c.maxPending, DEFAULTS.maxPending, 'defaults fill the rest')
  const viaEnv = parseConfig([], { MISTIFY_CONFIG: file })
  t.equal(viaEnv.port, 1000, 'MISTIFY_CONFIG names the file')
  const inline = parseConfig([`--config=${file}`], { MISTIFY_CONFIG: '/nope' })
  t.equal(inline.zpool, 'filepool', '--config beats MISTIFY_CONFIG')
})

t.test('file values are validated like the others', async (t) => {
  t.throws(() => parseConfig([], { MISTIFY_CONFIG: 'x' }, () => ({ port: 70000 })), { message: /port: 70000 is not a TCP port/ })
  t.throws(() => parseConfig([], { MISTIFY_CONFIG: 'x' }, () => ({ zpool: 'bad pool' })), { message: /^zpool:/ })
  t.throws(() => parseConfig(['--config'], {}), { message: /--config needs a value/ })
})

t.test('token and socket: flags and env; empty means unset', async (t) => {
  const c = parseConfig(['--token', 'abc', '--socket', '/run/m.sock'], {})
  t.equal(c.token, 'abc')
  t.equal(c.socket, '/run/m.sock')
  const e = parseConfig([], { MISTIFY_TOKEN: 'envtok', MISTIFY_SOCKET: '/s' })
  t.equal(e.token, 'envtok')
  t.equal(e.socket, '/s')
  const none = parseConfig([], { MISTIFY_TOKEN: '' }, () => ({ socket: '' }))
  t.notOk('token' in none)
  t.equal(parseConfig([], { MISTIFY_CONFIG: 'f' }, () => ({ socket: '' })).socket, undefined)
  t.throws(() => parseConfig(['--token', 'a b'], {}), { message: /token: must not contain whitespace/ })
  t.throws(() => parseConfig(['--bogus', '1'], {}), { message: /unknown option --bogus \(options: --config --zpool/ })
})

t.test('file-sources: off by default, an absolute directory when set', async (t) => {
  t.equal(parseConfig([], {}).fileSources, undefined, 'file:// sources off unless asked for')
  t.equal(parseConfig(['--file-sources', '/srv/images'], {}).fileSources, '/srv/images')
  t.equal(parseConfig([], { MISTIFY_FILE_SOURCES: '/srv/x' }).fileSources, '/srv/x')
  t.equal(parseConfig([], { MISTIFY_FILE_SOURCES: '' }).fileSources, undefined, 'empty means unset')
  t.throws(() => parseConfig(['--file-sources', 'images'], {}), { message: 'file-sources: an absolute directory' })
})
