/**
 * Reading files named by the config (`*_file` settings, `certificates`) and decoding inline
 * base64 PEM. Every file read is recorded so the hot-reload watcher can follow it.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'

/** Where relative paths are resolved and which files were read. */
export interface FileContext {
  /** Directory of the config file (or the working directory when there is none). */
  readonly dir: string
  /** Absolute paths of every file the config references, in first-seen order. */
  readonly referencedFiles: Set<string>
}

/** Reads a referenced file relative to the config directory; records it even when missing. */
export function readReferencedFile(
  ctx: FileContext,
  path: string,
): { path: string; text: string } | { path: string; error: string } {
  const abs = resolve(ctx.dir, path)
  // Record before reading: a missing file must still be watched so that creating it reloads.
  ctx.referencedFiles.add(abs)
  try {
    return { path: abs, text: readFileSync(abs, 'utf8') }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    return { path: abs, error: `cannot read file ${abs} (${code})` }
  }
}

/** Accepts PEM text as is, or base64-encoded PEM; undefined when it is neither. */
export function decodePem(text: string): string | undefined {
  if (text.includes('-----BEGIN')) return text
  const compact = text.replace(/\s+/g, '')
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(compact)) return undefined
  const decoded = Buffer.from(compact, 'base64').toString('utf8')
  return decoded.includes('-----BEGIN') ? decoded : undefined
}
