/**
 * Placeholder: the datagram relay over a CONNECT-UDP capsule stream is written on another branch
 * (issue 13); this file only fixes its signature so the client compiles. The merge replaces it.
 */
import type { Socket } from 'node:dgram'
import type { Duplex } from 'node:stream'

export function relayDatagrams(stream: Duplex, local: Socket): { close(): void; closed: Promise<string> } {
  void stream
  void local
  throw new Error('udp relay not built yet')
}
