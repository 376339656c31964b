/** Item 7's configuration: --allow-source-hosts and --url-sources (flag, environment, config file). */
import t from 'tap'
import { DEFAULTS, parseConfig, parseConfigFile } from '../../../src/agent/config.js'

t.test('item 7: defaults deny every non-public source host and leave URL sources on', async (t) => {
  t.same(DEFAULTS.allowSourceHosts, [])
  t.equal(DEFAULTS.urlSources, 'on')
  t.match(parseConfig([], {}), { allowSourceHosts: [], urlSources: 'on' })
})

t.test('item 7: --allow-source-hosts: a comma/space separated list, from flag, environment or file', async (t) => {
  t.same(parseConfig(['--allow-source-hosts', '127.0.0.1, images.lan 10.0.0.0/8'], {}).allowSourceHosts, ['127.0.0.1', 'images.lan', '10.0.0.0/8'])
  t.same(parseConfig([], { MISTIFY_ALLOW_SOURCE_HOSTS: 'fd00::/8' }).allowSourceHosts, ['fd00::/8'])
  t.same(parseConfig(['--allow-source-hosts=a.lan'], { MISTIFY_ALLOW_SOURCE_HOSTS: 'b.lan' }).allowSourceHosts, ['a.lan'], 'the flag wins')
  t.same(parseConfigFile('{"allowSourceHosts":["127.0.0.1","images.lan"]}'), { allowSourceHosts: ['127.0.0.1', 'images.lan'] }, 'an array in the file')
  t.same(parseConfigFile('{"allowSourceHosts":"127.0.0.1,images.lan"}'), { allowSourceHosts: ['127.0.0.1', 'images.lan'] }, 'or one string')
  t.throws(() => parseConfigFile('{"allowSourceHosts":[1]}'), { name: 'ConfigError', message: /allowSourceHosts: expected an array of strings/ })
  t.throws(() => parseConfig(['--allow-source-hosts', '10.0.0.0/99'], {}), { name: 'ConfigError', message: /allow-source-hosts: bad prefix length/ })
  t.throws(() => parseConfig(['--allow-source-hosts', 'http://x/'], {}), { name: 'ConfigError', message: /allow-source-hosts: not a host name/ })
})

t.test('item 7: --url-sources on|off', async (t) => {
  t.equal(parseConfig(['--url-sources', 'off'], {}).urlSources, 'off')
  t.equal(parseConfig([], { MISTIFY_URL_SOURCES: 'off' }).urlSources, 'off')
  t.same(parseConfigFile('{"urlSources":"off"}'), { urlSources: 'off' })
  t.throws(() => parseConfig(['--url-sources', 'no'], {}), { name: 'ConfigError', message: /url-sources: on or off, got "no"/ })
})
