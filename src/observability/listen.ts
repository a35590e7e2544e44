/** Small listeners of their own (metrics, health): bind, report the URL, close. */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseAddress } from '../config/address.js'

/** Listens on `address` (`host:port`, `:port`); resolves with the URL to reach it (loopback for a wildcard). */
export async function listenOn(server: Server, address: string, scheme: 'http' | 'https'): Promise<string> {
  const parsed = parseAddress(address)
  if (!parsed) throw new Error(`invalid listener address ${JSON.stringify(address)}: want host:port`)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: parsed.host, port: parsed.port }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  const wildcard = addr.address === '::' || addr.address === '0.0.0.0'
  const host = wildcard ? '127.0.0.1' : addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return `${scheme}://${host}:${addr.port}`
}

export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}
