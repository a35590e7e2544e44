/**
 * The one loopback check: where plain HTTP is acceptable because nothing leaves the machine
 * (provider endpoints, the built-in provider's issuer, programmatic-login and demo redirects).
 *
 * A host is loopback when it is, case-insensitively:
 * - `localhost` exactly. Not `localhost.`: a fully qualified name resolvers need not treat
 *   specially (measured: Node's `dns.lookup('localhost.')` on Linux/glibc skips /etc/hosts and
 *   asks DNS, which may answer with any address), so it fails closed like any other name;
 * - an IPv4 address in 127.0.0.0/8, as a dotted quad (WHATWG URL parsing already turns `127.1`,
 *   `0x7f.1`, `2130706433` and `127.0.0.1.` into that form);
 * - `::1`, bracketed as `URL.hostname` gives it or bare (URL parsing turns `[0:0:0:0:0:0:0:1]`
 *   into `[::1]`). IPv4-mapped forms (`[::ffff:7f00:1]`) are not accepted: no caller needs them.
 */
export function isLoopbackHost(host: string): boolean {
  const lower = host.toLowerCase()
  if (lower === 'localhost' || lower === '[::1]' || lower === '::1') return true
  const octets = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(lower)
  return octets !== null && octets.slice(1).every((o) => Number(o) <= 255)
}

/**
 * {@link isLoopbackHost}, or a name under `localhost` (`app.localhost`): for URLs a browser
 * follows (redirects, the authenticate URL), since browsers resolve `*.localhost` to loopback
 * themselves (RFC 6761 section 6.3; the demo serves its routes so). Not for requests Portcullis
 * makes: Node's resolver does not do this (measured: `dns.lookup('app.localhost')` asks DNS).
 */
export function isBrowserLoopbackHost(host: string): boolean {
  return isLoopbackHost(host) || /^[^.]+(?:\.[^.]+)*\.localhost$/i.test(host)
}
