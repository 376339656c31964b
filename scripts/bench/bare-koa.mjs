// The baseline for requests/second: a bare Koa app that reads the POSTed
// body and answers a fixed JSON body (BARE_BODY_FILE) on /_mistify_RPC_.
// Prints its port on the first line of stdout.
import http from 'node:http'
import { readFileSync } from 'node:fs'
import Koa from 'koa'

const body = readFileSync(process.env.BARE_BODY_FILE)
const app = new Koa()
app.use(async (ctx) => {
  if (ctx.method !== 'POST' || ctx.path !== '/_mistify_RPC_') { ctx.status = 404; return }
  for await (const _ of ctx.req) { /* drain the request, as the agent does */ }
  ctx.type = 'application/json'
  ctx.body = body
})
const server = http.createServer(app.callback())
server.listen(0, '127.0.0.1', () => console.log(server.address().port))
process.on('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)) })
