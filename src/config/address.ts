/** Listener address syntax (`:443`, `127.0.0.1:8443`, `[::1]:443`, `:0`). */

/** A parsed listener address; `host` is undefined for "all interfaces". */
export interface ListenAddress {
  readonly host: string | undefined
  readonly port: number
}

/** Parses `host:port`, `[v6]:port` or `:port`; undefined when malformed. Port 0 is allowed (tests). */
export function parseAddress(text: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text.trim())
  if (!m) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  const host = m[1] ?? m[2]
  return { host: host === '' || host === undefined ? undefined : host, port }
}
