/**
 * `ConfigSource`: owns the current config and hot-reloads it (reference §1.5). The config file
 * and every file it references are watched through their directories, because editors and
 * Kubernetes ConfigMaps replace files by rename, which a watch on the file itself would miss.
 * A reload that fails validation keeps the previous config, so a typo never takes the proxy down.
 */
import { createHash } from 'node:crypto'
import { readFileSync, watch } from 'node:fs'
import type { FSWatcher } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { Logger } from '../shared/log.js'
import type { Config, ConfigIssue } from './types.js'
import { formatIssue } from './format.js'
import { loadConfig } from './load.js'

/** Constructor options of {@link ConfigSource}. */
export interface ConfigSourceOptions {
  readonly file: string | undefined
  readonly env: Record<string, string | undefined>
  readonly logger: Logger
  /** Quiet period after the last file event before reloading; default 100 ms. */
  readonly debounceMs?: number
  /** Base for relative paths; default `process.cwd()`. */
  readonly cwd?: string
}

/** Listener called with every new config after a successful reload. */
export type ConfigListener = (config: Config) => void

/** Holds the current config, reloads it on file changes and SIGHUP, and notifies listeners. */
export class ConfigSource {
  readonly #file: string | undefined
  readonly #env: Record<string, string | undefined>
  readonly #logger: Logger
  readonly #debounceMs: number
  readonly #cwd: string
  readonly #listeners = new Set<ConfigListener>()
  readonly #failureListeners = new Set<() => void>()
  #config: Config | undefined
  #watchers: FSWatcher[] = []
  #timer: NodeJS.Timeout | undefined
  /** Fingerprint of the inputs last loaded (successfully or not), to skip no-op file events. */
  #seen: string | undefined
  #started = false
  readonly #onSighup = (): void => {
    this.#logger.info('SIGHUP received: reloading configuration')
    this.reload()
  }

  constructor(options: ConfigSourceOptions) {
    this.#cwd = options.cwd ?? process.cwd()
    this.#file = options.file === undefined ? undefined : resolve(this.#cwd, options.file)
    this.#env = options.env
    this.#logger = options.logger
    this.#debounceMs = options.debounceMs ?? 100
  }

  /** Initial load. Does not log: the caller prints the issues (and exits on errors). */
  load(): { config?: Config; issues: ConfigIssue[] } {
    const result = this.#loadOnce()
    if (!result.config) return { issues: result.issues }
    this.#config = result.config
    return { config: result.config, issues: result.issues }
  }

  /** The config in force. Throws when nothing has loaded successfully yet. */
  current(): Config {
    if (!this.#config) throw new Error('ConfigSource: no configuration loaded yet (call load() first)')
    return this.#config
  }

  /** Registers a listener for new configs; returns a function that removes it. */
  onChange(listener: ConfigListener): () => void {
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }

  /** Registers a listener for reloads that failed (the previous config stays); returns its remover. */
  onReloadFailed(listener: () => void): () => void {
    this.#failureListeners.add(listener)
    return () => {
      this.#failureListeners.delete(listener)
    }
  }

  /** Starts watching the config file, its referenced files, and SIGHUP. Idempotent. */
  start(): void {
    if (this.#started) return
    this.#started = true
    process.on('SIGHUP', this.#onSighup)
    this.#rewatch()
  }

  /**
   * Loads the config again. On success the new config replaces the old one in a single step
   * and listeners are notified; on failure every error is logged and the old config stays.
   */
  reload(): boolean {
    const result = this.#loadOnce()
    for (const issue of result.issues) {
      if (issue.severity === 'warning') this.#logger.warn(formatIssue(issue))
    }
    if (!result.config) {
      for (const issue of result.issues) {
        if (issue.severity === 'error') this.#logger.error(formatIssue(issue))
      }
      this.#logger.error('configuration reload failed; keeping the previous configuration')
      for (const listener of [...this.#failureListeners]) listener()
      return false
    }
    const config = result.config
    this.#config = config
    if (this.#started) this.#rewatch()
    this.#logger.info({ routes: config.routes.length }, 'configuration reloaded')
    for (const listener of [...this.#listeners]) {
      try {
        listener(config)
      } catch (err) {
        this.#logger.error({ err }, 'configuration change listener failed')
      }
    }
    return true
  }

  /** Stops watching and removes the SIGHUP handler. */
  stop(): void {
    this.#started = false
    process.off('SIGHUP', this.#onSighup)
    clearTimeout(this.#timer)
    this.#timer = undefined
    for (const w of this.#watchers) w.close()
    this.#watchers = []
  }

  #loadOnce(): ReturnType<typeof loadConfig> {
    const result = loadConfig({ file: this.#file, env: this.#env, cwd: this.#cwd })
    this.#seen = this.#fingerprint(result.config?.source.referencedFiles ?? this.#config?.source.referencedFiles ?? [])
    return result
  }

  /** Hash of the config file and referenced files' contents (missing files count as a state). */
  #fingerprint(referenced: readonly string[]): string {
    const hash = createHash('sha256')
    for (const f of [this.#file, ...referenced]) {
      if (f === undefined) continue
      hash.update(f).update('\0')
      try {
        hash.update(readFileSync(f))
      } catch {
        hash.update('<missing>')
      }
      hash.update('\0')
    }
    return hash.digest('hex')
  }

  #watchedFiles(): string[] {
    const files = this.#config?.source.referencedFiles ?? []
    return this.#file === undefined ? [...files] : [this.#file, ...files]
  }

  #rewatch(): void {
    for (const w of this.#watchers) w.close()
    this.#watchers = []
    const dirs = new Set(this.#watchedFiles().map((f) => dirname(f)))
    for (const dir of dirs) {
      try {
        // Any event in the directory schedules a check: renames, temp files and the
        // Kubernetes `..data` symlink swap all change our files under other names.
        const w = watch(dir, { persistent: false }, () => this.#schedule())
        w.on('error', (err) => this.#logger.warn({ err, dir }, 'configuration watcher failed'))
        this.#watchers.push(w)
      } catch (err) {
        this.#logger.warn({ err, dir }, 'cannot watch configuration directory')
      }
    }
  }

  #schedule(): void {
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      if (!this.#started) return
      const files = this.#config?.source.referencedFiles ?? []
      if (this.#fingerprint(files) === this.#seen) return
      this.reload()
    }, this.#debounceMs)
    this.#timer.unref()
  }
}
