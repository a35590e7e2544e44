/**
 * Command-line parsing: `portcullis [serve|validate|demo] [--config FILE]`. Pomerium's Go-style
 * single-dash `-config FILE` and `-config=FILE` are accepted too, so existing unit files work.
 * `portcullis users ...`, `portcullis policy ...` and `portcullis devices ...` hand everything after the command word to
 * their own modules, which have their own options and `--help`; so do the tunnel client's
 * `tcp|udp|logout|routes|k8s` (src/client/cli.ts, dispatched by main.ts before this parser).
 */
import { applyEnv } from '../config/env.js'

export type Command = 'serve' | 'validate' | 'demo' | 'users' | 'policy' | 'devices' | 'help' | 'version'

export interface Args {
  readonly command: Command
  readonly configFile: string | undefined
  readonly errors: readonly string[]
  /** For `users` and `policy`: the arguments after it. Empty for every other command. */
  readonly rest: readonly string[]
  /** `validate --allow-unknown`: unknown keys are warnings, as at start-up. */
  readonly allowUnknown?: boolean
  /** `--help` after a command word (`portcullis validate --help`): print that command's help. */
  readonly help: boolean
}

const COMMANDS = new Set<Command>(['serve', 'validate', 'demo', 'help', 'version'])

export function parseArgs(argv: readonly string[]): Args {
  if (argv[0] === 'users') return { command: 'users', configFile: undefined, errors: [], rest: argv.slice(1), help: false }
  if (argv[0] === 'policy') return { command: 'policy', configFile: undefined, errors: [], rest: argv.slice(1), help: false }
  if (argv[0] === 'devices') return { command: 'devices', configFile: undefined, errors: [], rest: argv.slice(1), help: false }
  let command: Command = 'serve'
  let named = false
  let help = false
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
    else if (arg === '--help' || arg === '-h' || arg === '-help') help = true
    else if (arg === '--version' || arg === '-version') command = 'version'
    else if (i === 0 && COMMANDS.has(arg as Command)) {
      command = arg as Command
      named = true
    } else errors.push(`unknown argument ${JSON.stringify(arg)}`)
  }
  // A bare `--help` is the general usage; after a command word it is that command's help.
  if (help && !named) command = 'help'
  if (allowUnknown && command !== 'validate') errors.push('--allow-unknown applies to validate only')
  return { command, configFile, errors, rest: [], help: help && named, ...(allowUnknown ? { allowUnknown } : {}) }
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
                                     (--device-type/--device-id/--device-approved add a device)
  portcullis devices list|approve|revoke|enroll --config FILE ...
                                     users' WebAuthn devices: approval and enrollment links
                                     (portcullis devices --help)

Tunnel client (pomerium-cli's commands and flags):
  portcullis tcp HOST:PORT [--listen ADDR|-] [--pomerium-url URL]
                                     a local TCP port (or stdin/stdout) tunnelled to the route
                                     tcp+https://HOST:PORT; signs in through a browser when asked
  portcullis udp HOST:PORT [--listen ADDR] [--pomerium-url URL]
                                     the same for a udp+https:// route (CONNECT-UDP)
  portcullis routes list [--pomerium-url URL] [--json]
                                     the routes you may open, with their connect commands
  portcullis k8s exec-credential SERVER-URL
                                     a kubectl credential plugin (ExecCredential with your token)
  portcullis logout [--pomerium-url URL]
                                     forget the cached sign-in tokens
  portcullis --version

Every command has its own help: portcullis COMMAND --help.
Settings may also come from environment variables (Pomerium's names, upper-cased).`

/** Each command's own `--help`. */
export const COMMAND_HELP: Readonly<Record<'serve' | 'validate' | 'demo' | 'help' | 'version', string>> = {
  serve: `Usage: portcullis [serve] --config FILE

Runs Portcullis with a Pomerium-compatible YAML or JSON configuration file (Pomerium's
-config FILE works too). Settings may also come from environment variables, which override
the file (ADDRESS=:8443, SHARED_SECRET_FILE=...); with no file, the environment must set them.
Problems in the configuration are printed as file:line:column lines and nothing starts.
SIGTERM or SIGINT stops it (requests in flight get 10 seconds to finish); SIGHUP reloads.

To try Portcullis without writing a configuration: portcullis demo`,
  validate: `Usage: portcullis validate --config FILE [--allow-unknown]

Checks a configuration file and every file it names (certificates, secrets, users file) the
way serve would, with the same environment: prints every problem and exits 1, or prints a
summary of the routes and exits 0. Warnings are printed in both cases. Unknown keys are
errors here (a mistyped key can change what a route admits), reported first with the key
probably meant; --allow-unknown makes them warnings, as they are when serving.`,
  demo: `Usage: portcullis demo        (npm start runs it)

Runs a self-contained demo on loopback: a public welcome page on http://localhost:8080/, a
team app and an admin console behind Portcullis, and the built-in identity provider on port
8081 with two users whose passwords are printed (press Enter to print them again).
PORT=9090 moves everything: the provider to PORT+1, health checks to PORT+2.`,
  help: USAGE,
  version: 'Usage: portcullis --version\n\nPrints the version.',
}

/**
 * Said when `serve` or `validate` has no config file and the environment sets nothing either:
 * serving zero routes on :443, or calling that "valid", would only puzzle.
 */
export function needsConfig(command: 'serve' | 'validate'): string {
  const run = command === 'serve' ? 'portcullis --config FILE' : 'portcullis validate --config FILE'
  return `portcullis: no configuration given. Pass the configuration file with
  ${run}
(Pomerium's -config FILE works too), or set the settings in environment variables
(ADDRESS, ROUTES, ...). To try Portcullis first: portcullis demo (npm start).
Help: portcullis ${command === 'serve' ? '' : 'validate '}--help`
}

/**
 * Whether an environment variable sets a Portcullis setting: a configuration made of the
 * environment alone is valid, as in Pomerium. A malformed one counts too, so its error shows.
 */
export function environmentConfigures(env: Readonly<Record<string, string | undefined>>): boolean {
  const applied = applyEnv({}, env)
  return applied.origins.size > 0 || applied.issues.length > 0
}
