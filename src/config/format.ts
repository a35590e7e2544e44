/** Human-readable rendering of config issues, compiler style: `file:line:col: error: path (`value`): message`. */
import { relative } from 'node:path'
import type { ConfigIssue } from './types.js'

const MAX_VALUE = 80

function showValue(value: unknown): string {
  let text: string
  if (typeof value === 'string') text = value
  else {
    try {
      text = JSON.stringify(value) ?? String(value)
    } catch {
      text = String(value)
    }
  }
  text = text.replace(/\s+/g, ' ')
  return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE - 1)}…` : text
}

/** Options for {@link formatIssue}. */
export interface FormatOptions {
  /** Print file names relative to this directory (default: as stored, absolute). */
  readonly cwd?: string
}

/** Formats one issue on one line. */
export function formatIssue(issue: ConfigIssue, options: FormatOptions = {}): string {
  let location = ''
  if (issue.file !== undefined) {
    const file = options.cwd === undefined ? issue.file : relative(options.cwd, issue.file) || issue.file
    location = file
    if (issue.line !== undefined) location += `:${issue.line}`
    if (issue.line !== undefined && issue.column !== undefined) location += `:${issue.column}`
    location += ': '
  } else if (issue.path !== '' && /^[A-Z0-9_]+/.test(issue.path)) {
    location = 'environment: '
  }
  let subject = issue.path
  if (issue.value !== undefined) subject += `${subject === '' ? '' : ' '}(\`${showValue(issue.value)}\`)`
  return `${location}${issue.severity}: ${subject === '' ? '' : `${subject}: `}${issue.message}`
}

/** Formats issues one per line, errors and warnings in their given order. */
export function formatIssues(issues: readonly ConfigIssue[], options: FormatOptions = {}): string {
  return issues.map((i) => formatIssue(i, options)).join('\n')
}
