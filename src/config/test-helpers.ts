/** Test helpers for the config tests: temporary directories and the checked-in test certificates. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from './load.js'
import type { Config, ConfigIssue } from './types.js'

const TESTDATA = new URL('./testdata/', import.meta.url)

/** PEM text of a checked-in test file (`a.cert.pem`, `a.key.pem`, `b.cert.pem`, `b.key.pem`). */
export function testPem(name: string): string {
  return readFileSync(new URL(name, TESTDATA), 'utf8')
}

/** A temporary directory with `write` and `cleanup`. */
export interface TempDir {
  readonly dir: string
  write(name: string, text: string): string
  cleanup(): void
}

/** Creates a temporary directory for one test. */
export function tempDir(): TempDir {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-config-'))
  return {
    dir,
    write(name, text) {
      const path = join(dir, name)
      writeFileSync(path, text)
      return path
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Loads YAML text from a temp file with an empty environment (unless given). */
export function loadYaml(
  yaml: string,
  env: Record<string, string | undefined> = {},
  extraFiles: Record<string, string> = {},
): { config: Config | undefined; issues: ConfigIssue[]; file: string } {
  const tmp = tempDir()
  try {
    for (const [name, text] of Object.entries(extraFiles)) tmp.write(name, text)
    const file = tmp.write('config.yaml', yaml)
    return { ...loadConfig({ file, env }), file }
  } finally {
    tmp.cleanup()
  }
}

/** Errors only. */
export function errors(issues: readonly ConfigIssue[]): ConfigIssue[] {
  return issues.filter((i) => i.severity === 'error')
}

/** Warnings only. */
export function warnings(issues: readonly ConfigIssue[]): ConfigIssue[] {
  return issues.filter((i) => i.severity === 'warning')
}
