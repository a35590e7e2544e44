#!/usr/bin/env node
/**
 * The `portcullis` command: parses arguments and runs one command; nothing else.
 */
import { readFileSync } from 'node:fs'
import { clientCommand, isClientCommand, processIo } from '../client/cli.js'
import { flushLogs } from '../shared/log.js'
import { COMMAND_HELP, environmentConfigures, needsConfig, parseArgs, USAGE } from './args.js'
import { demo } from './demo.js'
import { serve } from './serve.js'
import { policyCommand } from './policy-explain.js'
import { devicesCommand } from './devices.js'
import { users } from './users.js'
import { validate } from './validate.js'

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/** The tunnel client's commands run until SIGINT/SIGTERM (a listener) or their work is done. */
async function client(command: Parameters<typeof clientCommand>[0], argv: readonly string[]): Promise<number> {
  const stop = new AbortController()
  const onSignal = (): void => stop.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    return await clientCommand(command, argv, processIo(stop.signal))
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const word = argv[0]
  if (isClientCommand(word)) return await client(word, argv.slice(1))
  const args = parseArgs(argv)
  if (args.errors.length > 0) {
    for (const e of args.errors) process.stderr.write(`portcullis: ${e}\n`)
    process.stderr.write(`${USAGE}\n`)
    return 2
  }
  if (args.help && args.command !== 'users' && args.command !== 'policy' && args.command !== 'devices') {
    process.stdout.write(`${COMMAND_HELP[args.command]}\n`)
    return 0
  }
  if ((args.command === 'serve' || args.command === 'validate') && args.configFile === undefined && !environmentConfigures(process.env)) {
    process.stderr.write(`${needsConfig(args.command)}\n`)
    return 2
  }
  switch (args.command) {
    case 'help':
      process.stdout.write(`${USAGE}\n`)
      return 0
    case 'version':
      process.stdout.write(`portcullis ${version()}\n`)
      return 0
    case 'validate':
      return validate(args.configFile, undefined, { allowUnknown: args.allowUnknown === true })
    case 'demo':
      return await demo()
    case 'serve':
      return await serve(args.configFile)
    case 'users':
      return await users(args.rest)
    case 'policy':
      return policyCommand(args.rest)
    case 'devices':
      return await devicesCommand(args.rest)
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    flushLogs()
    process.exit(code)
  },
  (err: unknown) => {
    flushLogs()
    process.stderr.write(`portcullis: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
