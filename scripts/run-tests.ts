/**
 * Runs the test suite in phases and prints one combined summary:
 *
 * - `unit`: `src/**\/*.test.ts`, several files at a time (they use loopback ports from the
 *   kernel and their own PostgreSQL schemas, so they do not collide);
 * - `integration`: `test/**\/*.test.ts` but the browser tests, one file at a time (each starts real
 *   Portcullis processes, providers and upstreams, and the memory-bound streaming tests measure a
 *   child's peak memory, which a neighbour's load would distort);
 * - `browser`: `test/*.browser.test.ts`, one file at a time (headless Chromium).
 *
 * Usage: `tsx scripts/run-tests.ts [unit] [integration] [browser]` (all three when none is named).
 * Every phase runs even when an earlier one failed; the exit code is 1 when any test failed or a
 * phase ended abnormally.
 */
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(fileURLToPath(import.meta.url), '../..')

function testFiles(dir: string, keep: (path: string) => boolean): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.test.ts') && keep(path)) out.push(relative(ROOT, path))
    }
  }
  walk(join(ROOT, dir))
  return out.sort()
}

interface Phase {
  readonly name: string
  readonly files: () => string[]
  readonly concurrency: number
}

const isBrowser = (path: string): boolean => path.endsWith('.browser.test.ts')

export const PHASES: readonly Phase[] = [
  { name: 'unit', files: () => testFiles('src', () => true), concurrency: Math.min(4, Math.max(2, availableParallelism())) },
  { name: 'integration', files: () => testFiles('test', (p) => !isBrowser(p)), concurrency: 1 },
  { name: 'browser', files: () => testFiles('test', isBrowser), concurrency: 1 },
]

export interface PhaseResult {
  readonly name: string
  readonly passed: number
  readonly failed: number
  readonly seconds: number
  /** The test runner's exit code (non-zero with no failed test: it crashed or was killed). */
  readonly code: number | null
}

/** The last top-level `# pass N` / `# fail N` of a TAP stream. */
export function tapTotals(tap: string): { passed: number; failed: number } | undefined {
  const pass = [...tap.matchAll(/^# pass (\d+)$/gm)].at(-1)
  const fail = [...tap.matchAll(/^# fail (\d+)$/gm)].at(-1)
  if (!pass || !fail) return undefined
  return { passed: Number(pass[1]), failed: Number(fail[1]) }
}

function runPhase(phase: Phase): Promise<PhaseResult> {
  const files = phase.files()
  const started = Date.now()
  process.stdout.write(`\n=== ${phase.name}: ${files.length} files, ${phase.concurrency} at a time ===\n`)
  const args = ['--import', 'tsx', '--test', `--test-concurrency=${phase.concurrency}`, '--test-timeout=180000', '--test-reporter=tap', ...files]
  return new Promise((done) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
    let tail = ''
    child.stdout.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk)
      // Only the summary at the end matters; keep a bounded tail.
      tail = (tail + chunk.toString('utf8')).slice(-64 * 1024)
    })
    child.on('close', (code) => {
      const totals = tapTotals(tail) ?? { passed: 0, failed: 0 }
      done({ name: phase.name, ...totals, seconds: Math.round((Date.now() - started) / 1000), code })
    })
  })
}

export function summary(results: readonly PhaseResult[]): { line: string; ok: boolean } {
  const passed = results.reduce((n, r) => n + r.passed, 0)
  const failed = results.reduce((n, r) => n + r.failed, 0)
  const seconds = results.reduce((n, r) => n + r.seconds, 0)
  const parts = results.map((r) => `${r.name} ${r.passed}/${r.failed} in ${r.seconds} s${r.code !== 0 && r.failed === 0 ? ` (runner exit ${String(r.code)})` : ''}`)
  const ok = failed === 0 && results.every((r) => r.code === 0)
  return { line: `tests: ${passed} passed, ${failed} failed in ${seconds} s (${parts.join('; ')}; passed/failed)`, ok }
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2)
  const unknown = wanted.filter((w) => !PHASES.some((p) => p.name === w))
  if (unknown.length > 0) {
    process.stderr.write(`run-tests: unknown phase ${unknown.join(', ')} (one of ${PHASES.map((p) => p.name).join(', ')})\n`)
    process.exit(2)
  }
  const phases = wanted.length === 0 ? PHASES : PHASES.filter((p) => wanted.includes(p.name))
  const results: PhaseResult[] = []
  for (const phase of phases) results.push(await runPhase(phase))
  const { line, ok } = summary(results)
  process.stdout.write(`\n${line}\n`)
  process.exit(ok ? 0 : 1)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main()
