import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, DEFAULTS, parseConfig, parseConfigFile, readConfigFile } from '../../../src/agent/config.js'

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

t.test('item 9: --token-file reads the token once, refuses empty, whitespace, and both', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mistify-tok-'))
  const file = join(dir, 'token')
  writeFileSync(file, 's3cret\n')
  t.equal(parseConfig(['--token-file', file], {}).token, 's3cret', 'one trailing newline dropped')
  t.equal(parseConfig([], { MISTIFY_TOKEN_FILE: file }).token, 's3cret', 'MISTIFY_TOKEN_FILE')
  const cfg = join(dir, 'c.json')
  writeFileSync(cfg, JSON.stringify({ tokenFile: file }))
  t.equal(parseConfig(['--config', cfg], {}).token, 's3cret', 'tokenFile in the config file')
  writeFileSync(join(dir, 'crlf'), 'abc\r\n')
  t.equal(parseConfig(['--token-file', join(dir, 'crlf')], {}).token, 'abc')
  t.equal(parseConfig([], {}).token, undefined, 'no file, no token')

  writeFileSync(join(dir, 'empty'), '\n')
  t.throws(() => parseConfig(['--token-file', join(dir, 'empty')], {}), { name: 'ConfigError', message: `token file ${join(dir, 'empty')}: empty` })
  writeFileSync(join(dir, 'two'), 'a b\n')
  t.throws(() => parseConfig(['--token-file', join(dir, 'two')], {}), { message: `token file ${join(dir, 'two')}: the token must not contain whitespace` })
  writeFileSync(join(dir, 'lines'), 'a\n\n')
  t.throws(() => parseConfig(['--token-file', join(dir, 'lines')], {}), { message: /token file .*lines: the token must not contain whitespace/ })
  t.throws(() => parseConfig(['--token-file', join(dir, 'missing')], {}), { message: `token file ${join(dir, 'missing')}: ENOENT` })
  t.throws(() => parseConfig(['--token', 'x', '--token-file', file], {}), { name: 'ConfigError', message: 'token and token-file: give one of them' })
  t.throws(() => parseConfig(['--token-file', file], { MISTIFY_TOKEN: 'x' }), { message: 'token and token-file: give one of them' })
})

t.test('item 9: allowed hosts from flag, env and file', async (t) => {
  t.equal(parseConfig([], {}).allowedHosts, undefined, 'none by default')
  t.same(parseConfig(['--allowed-hosts', 'agent.example, hv1.lan'], {}).allowedHosts, ['agent.example', 'hv1.lan'])
  t.same(parseConfig([], { MISTIFY_ALLOWED_HOSTS: '*' }).allowedHosts, ['*'])
  t.same(parseConfigFile('{"allowedHosts":["a.example"]}'), { allowedHosts: ['a.example'] })
  t.throws(() => parseConfigFile('{"allowedHosts":"a.example"}'), { message: /allowedHosts: expected an array of strings/ })
  t.throws(() => parseConfig(['--allowed-hosts', 'a.example,evil/x'], {}), { name: 'ConfigError', message: 'allowed-hosts: not a host name: "evil/x"' })
})

t.test('item 13: download limits: defaults, flags, validation', async (t) => {
  const d = parseConfig([], {})
  t.equal(d.maxDownloads, 16)
  t.equal(d.downloadIdleTimeoutMs, 60_000)
  const c = parseConfig(['--max-downloads', '2', '--download-idle-timeout-ms', '2000'], {})
  t.equal(c.maxDownloads, 2)
  t.equal(c.downloadIdleTimeoutMs, 2000)
  t.equal(parseConfig([], { MISTIFY_MAX_DOWNLOADS: '3' }).maxDownloads, 3)
  t.same(parseConfigFile('{"maxDownloads":5,"downloadIdleTimeoutMs":100}'), { maxDownloads: 5, downloadIdleTimeoutMs: 100 })
  t.throws(() => parseConfig(['--max-downloads', '0'], {}), { message: 'max-downloads: at least 1' })
  t.throws(() => parseConfig(['--download-idle-timeout-ms', '0'], {}), { message: 'download-idle-timeout-ms: at least 1' })
})

t.test('flags through node:util parseArgs: short aliases, inline values, the messages kept', async (t) => {
  t.match(parseConfig(['-z', 'tank', '-p', '81', '-l', '0.0.0.0', '-i', 'img:1'], {}), { zpool: 'tank', port: 81, listen: '0.0.0.0', imageServer: 'http://img:1' })
  t.match(parseConfig(['--port=82', '-ztank2'], {}), { port: 82, zpool: 'tank2' })
  t.equal(parseConfig(['--port', '1', '--port', '2'], {}).port, 2, 'the last one wins')
  t.throws(() => parseConfig(['stray'], {}), { name: 'ConfigError', message: /^unknown option stray \(options: --config / })
  t.throws(() => parseConfig(['--', '--port', '1'], {}), { message: /^unknown option -- / })
  t.throws(() => parseConfig(['--bogus=1'], {}), { message: /^unknown option --bogus=1 / })
  t.throws(() => parseConfig(['-p'], {}), { message: '-p needs a value' })
  t.throws(() => parseConfig(['--port', '--zpool'], {}), { message: 'port: expected a whole number, got "--zpool"' }, 'a value may start with a dash')
})

t.test('--help / -h: every flag with its environment variable and default', async (t) => {
  const { usage, wantsHelp } = await import('../../../src/agent/config.js')
  t.ok(wantsHelp(['--zpool', 'tank', '--help']))
  t.ok(wantsHelp(['-h']))
  t.notOk(wantsHelp(['--zpool', 'tank']))
  const text = usage()
  t.match(text, /^usage: mistify-agent-image \[options\]/)
  t.match(text, /-z, --zpool\s+MISTIFY_ZPOOL\s+default mistify\n/)
  t.match(text, /--max-downloads\s+MISTIFY_MAX_DOWNLOADS\s+default 16\n/)
  t.match(text, /--config FILE\s+MISTIFY_CONFIG\n/)
  t.match(text, /--increment-depth\s+MISTIFY_INCREMENT_DEPTH\s+default 8\n/)
  t.equal(text.split('\n').filter((l) => l.startsWith('  -')).length, 23, 'each of the 22 options plus --config')
})

t.test('--image-service: one replica as before, or several comma-separated (flag, environment, file string or array)', async (t) => {
  const { imageServers } = await import('../../../src/agent/config.js')
  for (const [v, want] of [['img', 'http://img:20000'], ['img:1', 'http://img:1'], ['https://img.example', 'https://img.example'], ['http://img:20000/', 'http://img:20000']]) {
    t.equal(parseConfig(['--image-service', v!], {}).imageServer, want, `one: ${v} as the Go agent took it`)
  }
  const two = parseConfig(['--image-service', 'a, b:7,https://c.example/'], {})
  t.equal(two.imageServer, 'http://a:20000,http://b:7,https://c.example', 'each normalised, in order')
  t.same(imageServers(two.imageServer), ['http://a:20000', 'http://b:7', 'https://c.example'])
  t.equal(parseConfig([], { MISTIFY_IMAGE_SERVICE: 'a,b' }).imageServer, 'http://a:20000,http://b:20000', 'the environment')
  const file = (text: string) => parseConfig([], { MISTIFY_CONFIG: 'f.json' }, () => parseConfigFile(text))
  t.equal(file('{"imageServer":["a","b:1"]}').imageServer, 'http://a:20000,http://b:1', 'a file array')
  t.equal(file('{"imageServer":"a,b:1"}').imageServer, 'http://a:20000,http://b:1', 'a file string')
  t.equal(file('{"imageServer":"a"}').imageServer, 'http://a:20000')
  t.throws(() => parseConfigFile('{"imageServer":[1]}'), { name: 'ConfigError', message: /imageServer: expected a string or an array of strings/ })
  t.throws(() => parseConfig(['--image-service', 'a,http://a:20000'], {}), { name: 'ConfigError', message: 'image service: http://a:20000 is listed twice' })
  t.throws(() => parseConfig(['--image-service', ' , '], {}), { name: 'ConfigError', message: 'image service: no host or URL given' })
  t.throws(() => file('{"imageServer":[]}'), { name: 'ConfigError', message: 'image service: no host or URL given' })
  t.throws(() => parseConfig(['--image-service', 'a,ftp://b'], {}), { name: 'ConfigError', message: 'image service: only http(s), got ftp:' })
})

t.test('--increment-depth: 0 to 64 (0: full streams only)', async (t) => {
  t.equal(parseConfig([], {}).incrementDepth, 8, 'default 8')
  t.equal(parseConfig(['--increment-depth', '0'], {}).incrementDepth, 0)
  t.equal(parseConfig([], { MISTIFY_INCREMENT_DEPTH: '64' }).incrementDepth, 64)
  t.throws(() => parseConfig(['--increment-depth', '65'], {}), /increment-depth: at most 64/)
  t.throws(() => parseConfig(['--increment-depth', '-1'], {}))
})
