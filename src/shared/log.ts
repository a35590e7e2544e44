/**
 * Logging: JSON lines through pino. Every service takes a `Logger` as a dependency; tests pass
 * one that writes to a buffer. Redaction keeps cookies, tokens and authorization values out of
 * logs even when a caller logs a whole header object by mistake.
 */
import { pino } from 'pino'
import type { DestinationStream, Logger as PinoLogger } from 'pino'

export type Logger = PinoLogger

/** Pomerium (zerolog) level names mapped onto pino's. */
const LEVELS: Readonly<Record<string, string>> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  fatal: 'fatal',
  panic: 'fatal',
  disabled: 'silent',
}

export const LOG_LEVEL_NAMES: readonly string[] = Object.keys(LEVELS)

const REDACT_PATHS = [
  '*.authorization',
  '*.cookie',
  '*.Cookie',
  '*.Authorization',
  '*["set-cookie"]',
  '*["x-pomerium-authorization"]',
  '*["x-pomerium-jwt-assertion"]',
  'headers.authorization',
  'headers.cookie',
  'shared_secret',
  'cookie_secret',
  'idp_client_secret',
]

export function toPinoLevel(level: string): string {
  return LEVELS[level.toLowerCase()] ?? 'info'
}

/** Creates the process logger; `destination` defaults to stdout. */
export function createLogger(level = 'info', destination?: DestinationStream): Logger {
  const options = {
    level: toPinoLevel(level),
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    formatters: { level: (label: string) => ({ level: label }) },
  }
  return destination ? pino(options, destination) : pino(options)
}
