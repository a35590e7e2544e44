/**
 * Command-line parsing: `portcullis [serve|validate|demo] [--config FILE]`. Pomerium's Go-style
 * single-dash `-config FILE` and `-config=FILE` are accepted too, so existing unit files work.
 * `portcullis users ...` hands everything after `users` to `users.ts`, which has its own options.
 */

export type Command = 'serve' | 'validate' | 'demo' | 'users' | 'policy' | 'help' | 'version'

export interface Args {
  readonly command: Command
  readonly configFile: string | undefined
  readonly errors: readonly string[]
  /** For `users`: the arguments after it. Empty for every other command. */
  readonly rest: readonly string[]
  /** `validate --allow-unknown`: unknown keys are warnings, as at start-up. */
  readonly allowUnknown?: boolean
}

const COMMANDS = new Set<Command>(['serve', 'validate', 'demo', 'help', 'version'])

export function parseArgs(argv: readonly string[]): Args {
  if (argv[0] === 'users') return { command: 'users', configFile: undefined, errors: [], rest: argv.slice(1) }
  if (argv[0] === 'policy') return { command: 'policy', configFile: undefined, errors: [], rest: argv.slice(1) }
  let command: Command = 'serve'
  let configFile: string | undefined
  let allowUnknown = false
  const errors: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    const m = /^--?(config|c)(?:=(.*))?$/.exec(arg)
    if (m) {
      const value = m[2] ?? argv[++i]
      if (value === undefined || value === '') errors.push(`${arg} needs a file name`)
      else configFile = value
    } else if (arg === '--allow-unknown') allowUnknown = true
    else if (arg === '--help' || arg === '-h' || arg === '-help') command = 'help'
    else if (arg === '--version' || arg === '-version') command = 'version'
    else if (i === 0 && COMMANDS.has(arg as Command)) command = arg as Command
    else errors.push(`unknown argument ${JSON.stringify(arg)}`)
  }
  if (allowUnknown && command !== 'validate') errors.push('--allow-unknown applies to validate only')
  return { command, configFile, errors, rest: [], ...(allowUnknown ? { allowUnknown } : {}) }
}

export const USAGE = `Usage:
  portcullis [serve] --config FILE   run Portcullis (Pomerium-compatible YAML or JSON config)
  portcullis validate --config FILE [--allow-unknown]
                                     check a config: print every problem and exit 1 (unknown keys
                                     too, unless --allow-unknown), or a route summary
  portcullis demo                    run the built-in demo on http://localhost:8080
  portcullis users hash-password     hash a password for the built-in identity provider's users file
  portcullis users add --file FILE --email EMAIL ...  add a user to that file (portcullis users --help)
  portcullis policy explain --config FILE --url URL --email E [--groups a,b] [--claim k=v]
                                     what a route's policy decides for someone, rule by rule
  portcullis --version

Settings may also come from environment variables (Pomerium's names, upper-cased).`
