/**
 * Envoy's external authorization service (docs/delegated-authorization.md): the gRPC method
 * `envoy.service.auth.v3.Authorization/Check`, which Envoy's `ext_authz` filter and Istio's
 * `CUSTOM` authorization action call for every request. The message subset is written here from
 * Envoy's published API (external_auth.proto, attribute_context.proto, base.proto,
 * address.proto, http_status.proto; google/rpc/status.proto), field numbers as published; fields
 * Portcullis does not read are simply not declared (protobuf skips them).
 *
 * A request is decided as forward-auth decides one (`decideForwarded`: the proxy's own routing and
 * path hygiene, then the authorizer), so Envoy in front gets the built-in proxy's answers: an OK
 * with the identity headers to set upstream (and the client's own copies removed), or a denied
 * response with Portcullis' status, redirect and page.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto'
import * as grpc from '@grpc/grpc-js'
import { fromJSON } from '@grpc/proto-loader'
import type { Authorizer, CheckResult, ClientCertificateInfo } from '../authorize/types.js'
import { forwardedCertificate } from './client-cert.js'
import { PortcullisError } from '../shared/errors.js'
import type { Logger } from '../shared/log.js'
import { prefersJson } from '../ui/negotiate.js'
import { renderDenial, statusTitle } from './error-page.js'
import { decideForwarded } from './forward-auth.js'
import type { Original } from './forward-auth.js'
import { normaliseRemote } from './request-checks.js'
import type { ProxyState } from './state.js'

const s = (id: number): { type: string; id: number } => ({ type: 'string', id })
const map = (id: number): { keyType: string; type: string; id: number } => ({ keyType: 'string', type: 'string', id })

/** protobuf.js JSON of the messages Portcullis reads and writes. */
const DESCRIPTOR = {
  nested: {
    envoy: {
      nested: {
        service: {
          nested: {
            auth: {
              nested: {
                v3: {
                  nested: {
                    Authorization: { methods: { Check: { requestType: 'CheckRequest', responseType: 'CheckResponse' } } },
                    CheckRequest: { fields: { attributes: { type: 'AttributeContext', id: 1 } } },
                    AttributeContext: {
                      fields: { source: { type: 'Peer', id: 1 }, destination: { type: 'Peer', id: 2 }, request: { type: 'Request', id: 4 }, contextExtensions: map(10), tlsSession: { type: 'TLSSession', id: 12 } },
                      nested: {
                        Peer: { fields: { address: { type: 'envoy.config.core.v3.Address', id: 1 }, service: s(2), labels: map(3), principal: s(4), certificate: s(5) } },
                        Request: { fields: { http: { type: 'HttpRequest', id: 2 } } },
                        HttpRequest: { fields: { id: s(1), method: s(2), headers: map(3), path: s(4), host: s(5), scheme: s(6), query: s(7), fragment: s(8), size: { type: 'int64', id: 9 }, protocol: s(10) } },
                        TLSSession: { fields: { sni: s(1) } },
                      },
                    },
                    DeniedHttpResponse: { fields: { status: { type: 'envoy.type.v3.HttpStatus', id: 1 }, headers: { rule: 'repeated', type: 'envoy.config.core.v3.HeaderValueOption', id: 2 }, body: s(3) } },
                    OkHttpResponse: {
                      fields: {
                        headers: { rule: 'repeated', type: 'envoy.config.core.v3.HeaderValueOption', id: 2 },
                        headersToRemove: { rule: 'repeated', type: 'string', id: 5 },
                        responseHeadersToAdd: { rule: 'repeated', type: 'envoy.config.core.v3.HeaderValueOption', id: 6 },
                      },
                    },
                    CheckResponse: {
                      oneofs: { httpResponse: { oneof: ['deniedResponse', 'okResponse'] } },
                      fields: { status: { type: 'google.rpc.Status', id: 1 }, deniedResponse: { type: 'DeniedHttpResponse', id: 2 }, okResponse: { type: 'OkHttpResponse', id: 3 } },
                    },
                  },
                },
              },
            },
          },
        },
        config: {
          nested: {
            core: {
              nested: {
                v3: {
                  nested: {
                    Address: { oneofs: { address: { oneof: ['socketAddress'] } }, fields: { socketAddress: { type: 'SocketAddress', id: 1 } } },
                    SocketAddress: { fields: { address: s(2), portValue: { type: 'uint32', id: 3 } } },
                    HeaderValue: { fields: { key: s(1), value: s(2) } },
                    // append_action is an enum on the wire (a varint): OVERWRITE_IF_EXISTS_OR_ADD = 2.
                    HeaderValueOption: { fields: { header: { type: 'HeaderValue', id: 1 }, appendAction: { type: 'int32', id: 3 } } },
                  },
                },
              },
            },
          },
        },
        // HttpStatus.code is the StatusCode enum, numerically the HTTP status.
        type: { nested: { v3: { nested: { HttpStatus: { fields: { code: { type: 'int32', id: 1 } } } } } } },
      },
    },
    google: { nested: { rpc: { nested: { Status: { fields: { code: { type: 'int32', id: 1 }, message: s(2) } } } } } },
  },
}

/** google.rpc.Code values Envoy reads. */
const OK = 0
const PERMISSION_DENIED = 7
const UNAUTHENTICATED = 16
const OVERWRITE_IF_EXISTS_OR_ADD = 2

/** Statuses Envoy's HttpStatus enum knows (it refuses others); Portcullis' own 450 and 495 are sent as 403. */
function envoyStatus(status: number): number {
  return status === 450 || status === 495 ? 403 : status
}

interface HttpRequestAttributes {
  readonly id?: string
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly path?: string
  readonly host?: string
  readonly scheme?: string
}

interface CheckRequestMessage {
  readonly attributes?: {
    readonly source?: { readonly address?: { readonly socketAddress?: { readonly address?: string } }; readonly certificate?: string }
    readonly request?: { readonly http?: HttpRequestAttributes }
  }
}

interface HeaderOption {
  header: { key: string; value: string }
  appendAction: number
}

export interface CheckResponseMessage {
  status: { code: number; message: string }
  okResponse?: { headers: HeaderOption[]; headersToRemove: string[] }
  deniedResponse?: { status: { code: number }; headers: HeaderOption[]; body: string }
}

export interface ExtAuthzDeps {
  readonly state: () => ProxyState
  readonly authorizer: Authorizer
  readonly logger: Logger
}

/** Identity headers a client must never smuggle to the upstream, removed when Portcullis sets none. */
const IDENTITY_HEADERS = ['x-pomerium-jwt-assertion']

const option = (key: string, value: string): HeaderOption => ({ header: { key, value }, appendAction: OVERWRITE_IF_EXISTS_OR_ADD })

/** The CheckResponse for a decision. */
export function checkResponse(result: CheckResult, requestId: string, json: boolean): CheckResponseMessage {
  if (result.allow) {
    const set = Object.entries(result.setHeaders ?? {})
    const headers = set.map(([k, v]) => option(k, v))
    for (const [k, values] of Object.entries(result.setMultiHeaders ?? {})) headers.push(...values.map((v) => ({ header: { key: k, value: v }, appendAction: 0 })))
    const setNames = new Set(set.map(([k]) => k.toLowerCase()))
    const remove = [...(result.removeHeaders ?? []), ...IDENTITY_HEADERS.filter((h) => !setNames.has(h))]
    return { status: { code: OK, message: '' }, okResponse: { headers, headersToRemove: [...new Set(remove)] } }
  }
  const denial = result.status >= 200 && result.status < 300 ? { ...result, status: 403 } : result
  const page = renderDenial(denial, requestId, json)
  const headers = [option('content-type', page.contentType), option('cache-control', 'no-store'), option('x-request-id', requestId)]
  for (const [k, v] of Object.entries({ ...page.headers, ...denial.headers })) headers.push(option(k, v))
  if (denial.location !== undefined) headers.push(option('location', denial.location))
  const signIn = denial.code === 'sign-in' || denial.status === 401
  return {
    status: { code: signIn ? UNAUTHENTICATED : PERMISSION_DENIED, message: `${denial.status} ${statusTitle(denial.status)}` },
    deniedResponse: { status: { code: envoyStatus(denial.status) }, headers, body: page.body },
  }
}

/** The original request an Envoy CheckRequest describes; a string when it cannot be read. */
export function originalFromAttributes(message: CheckRequestMessage): { original: Original; rawHeaders: string[]; requestId: string } | string {
  const http = message.attributes?.request?.http
  if (!http) return 'the CheckRequest carries no HTTP request'
  const method = (http.method ?? '').toUpperCase()
  if (!/^[A-Z]{1,20}$/.test(method)) return 'the request method is missing'
  const authority = http.host ?? ''
  if (authority === '') return 'the request host is missing'
  const uri = http.path ?? ''
  if (!uri.startsWith('/')) return 'the request path is missing'
  const scheme = (http.scheme ?? 'https').toLowerCase()
  if (scheme !== 'http' && scheme !== 'https') return 'the request scheme must be http or https'
  const rawHeaders: string[] = []
  for (const [name, value] of Object.entries(http.headers ?? {})) rawHeaders.push(name, value)
  // Envoy's source address is the client as Envoy determined it (its own XFF rules).
  const clientIp = normaliseRemote(message.attributes?.source?.address?.socketAddress?.address ?? '')
  return { original: { method, scheme, authority, uri, clientIp }, rawHeaders, requestId: http.id !== undefined && /^[\w.-]{1,128}$/.test(http.id) ? http.id : randomUUID() }
}

/** A caller without the token: answered with the gRPC status UNAUTHENTICATED, no decision. */
class CallerRefused extends PortcullisError {
  constructor(message: string) {
    super('ERR_EXT_AUTHZ_CALLER', message)
  }
}

function tokenMatches(metadata: grpc.Metadata, expected: Buffer): boolean {
  const values = metadata.get('authorization')
  if (values.length !== 1) return false
  const given = Buffer.from(String(values[0]))
  const wanted = Buffer.concat([Buffer.from('Bearer '), expected])
  return given.length === wanted.length && timingSafeEqual(given, wanted)
}

export interface ExtAuthzServer {
  readonly port: number
  close(): Promise<void>
}

/**
 * Starts the gRPC service on `host:port`: plaintext HTTP/2, or TLS that requires a client
 * certificate from `tls.clientCa` (the handshake refuses anyone else).
 */
export async function startExtAuthz(deps: ExtAuthzDeps, host: string | undefined, port: number, tls?: { cert: string; key: string; clientCa: string }): Promise<ExtAuthzServer> {
  const definition = fromJSON(DESCRIPTOR as unknown as Parameters<typeof fromJSON>[0], { longs: String, enums: Number, defaults: false, oneofs: true })
  const service = (grpc.loadPackageDefinition(definition) as unknown as { envoy: { service: { auth: { v3: { Authorization: { service: grpc.ServiceDefinition } } } } } }).envoy.service.auth.v3.Authorization.service
  const server = new grpc.Server()
  server.addService(service, {
    Check: (call: grpc.ServerUnaryCall<CheckRequestMessage, CheckResponseMessage>, callback: grpc.sendUnaryData<CheckResponseMessage>) => {
      void check(deps, call).then(
        (response) => callback(null, response),
        (err: unknown) => {
          if (err instanceof CallerRefused) {
            callback({ code: grpc.status.UNAUTHENTICATED, details: err.message })
            return
          }
          deps.logger.error({ err }, 'ext_authz: check failed')
          callback({ code: grpc.status.INTERNAL, details: 'internal error' })
        },
      )
    },
  })
  const bound = await new Promise<number>((resolve, reject) => {
    const credentials = tls
      ? grpc.ServerCredentials.createSsl(Buffer.from(tls.clientCa), [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }], true)
      : grpc.ServerCredentials.createInsecure()
    server.bindAsync(`${host ?? '0.0.0.0'}:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p)))
  })
  return {
    port: bound,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  }
}

async function check(deps: ExtAuthzDeps, call: grpc.ServerUnaryCall<CheckRequestMessage, CheckResponseMessage>): Promise<CheckResponseMessage> {
  const state = deps.state()
  const settings = state.config.extAuthz
  // With mTLS the handshake already checked the caller; a token, when configured, is checked too.
  if (!settings || (settings.callerToken !== undefined && !tokenMatches(call.metadata, Buffer.from(settings.callerToken))) || (settings.callerToken === undefined && !settings.tls)) {
    deps.logger.warn({ peer: call.getPeer() }, 'ext_authz call refused: no valid caller token (authorization: Bearer metadata)')
    // A gRPC error, not a CheckResponse: Envoy applies its failure mode (deny unless told otherwise).
    throw new CallerRefused('caller token missing or wrong')
  }
  const read = originalFromAttributes(call.request)
  const requestId = typeof read === 'string' ? randomUUID() : read.requestId
  if (typeof read === 'string') {
    deps.logger.info({ requestId, problem: read }, 'ext_authz: the CheckRequest cannot be read')
    return checkResponse({ allow: false, status: 400, code: 'denied', reason: `Bad request: ${read}.` }, requestId, true)
  }
  const headers = call.request.attributes?.request?.http?.headers ?? {}
  // downstream_mtls: the client certificate Envoy terminated (URL-encoded PEM, with
  // include_peer_certificate), checked against Portcullis' own CAs, CRLs and SAN rules.
  const policy = state.clientCertificates
  let certificate: ClientCertificateInfo | undefined
  if (policy) {
    let pem = ''
    try {
      pem = decodeURIComponent(call.request.attributes?.source?.certificate ?? '')
    } catch {
      pem = '-----BEGIN CERTIFICATE-----\nmalformed\n-----END CERTIFICATE-----'
    }
    certificate = forwardedCertificate(pem, policy)
  }
  const result = await decideForwarded(deps, state, read.original, read.rawHeaders, requestId, certificate)
  return checkResponse(result, requestId, prefersJson(headers['accept']))
}
