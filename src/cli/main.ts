#!/usr/bin/env node
/**
 * mistify-image: a command line for the agent. Exit codes: 0 ok; 1 the agent answered
 * with an error; 2 usage; 3 the agent could not be reached or the transfer broke.
 */
import { HELP, parseOptions, UsageError, type Options } from './args.js'
import { AgentRefused } from './client.js'
import { run } from './commands.js'

async function main(): Promise<number> {
  let o: Options
  try {
    o = parseOptions(process.argv.slice(2), process.env)
  } catch (e) {
    process.stderr.write(`mistify-image: ${(e as Error).message}\n`)
    return 2
  }
  if (o.help) { process.stdout.write(HELP); return 0 }
  try {
    await run(o)
    return 0
  } catch (e) {
    const code = e instanceof UsageError ? 2 : e instanceof AgentRefused ? 1 : 3
    const msg = (e as Error).message
    if (o.json && !(e instanceof UsageError)) process.stderr.write(`${JSON.stringify({ error: msg, exitCode: code })}\n`)
    else process.stderr.write(`mistify-image: ${msg}\n`)
    return code
  }
}

// Finish writing stdout before exiting (a pipe may still hold our output).
main().then((code) => { process.exitCode = code })
