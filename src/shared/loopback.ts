/**
 * Whether a URL host (as `URL.hostname` gives it) is a loopback address or `localhost`. Shared by
 * the provider transport and the config checks, so both draw the same line.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, '')
  if (host === 'localhost') return true
  if (host === '[::1]' || host === '::1') return true
  // WHATWG URL parsing already normalised 127.1, 0x7f.1, 2130706433, ... to dotted quads.
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}
