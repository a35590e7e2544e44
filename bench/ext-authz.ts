/**
 * ext_authz decisions per second over one gRPC connection (docs/delegated-authorization.md):
 * Portcullis (workers: 1) with the ext_authz service and a signed-in session; a gRPC client built
 * from Envoy's proto text keeps `BENCH_INFLIGHT` (default 64) Check calls in flight on one
 * channel for `BENCH_DURATION` seconds (default 5) and counts the answers. Every answer must be
 * OK with an assertion, or the run says how many were not.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { freePort, signIn, startSignInSetup } from '../test/fixtures/sign-in.js'

const PROTO = `syntax = "proto3";
package envoy.service.auth.v3;
service Authorization { rpc Check(CheckRequest) returns (CheckResponse); }
message SocketAddress { string address = 2; uint32 port_value = 3; }
message Address { oneof address { SocketAddress socket_address = 1; } }
message AttributeContext {
  message Peer { Address address = 1; }
  message HttpRequest { string id = 1; string method = 2; map<string, string> headers = 3; string path = 4; string host = 5; string scheme = 6; }
  message Request { HttpRequest http = 2; }
  Peer source = 1; Request request = 4;
}
message CheckRequest { AttributeContext attributes = 1; }
message HeaderValue { string key = 1; string value = 2; }
message HeaderValueOption { HeaderValue header = 1; }
message RpcStatus { int32 code = 1; }
message OkHttpResponse { repeated HeaderValueOption headers = 2; }
message CheckResponse { RpcStatus status = 1; OkHttpResponse ok_response = 3; }
`

interface CheckResponse { status: { code: number }; okResponse?: { headers: { header: { key: string } }[] } }
type Client = grpc.Client & { Check(req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: CheckResponse) => void): void }

const durationMs = Number(process.env['BENCH_DURATION'] ?? '5') * 1000
const inflight = Number(process.env['BENCH_INFLIGHT'] ?? '64')
const token = randomBytes(32).toString('base64url')
const port = await freePort()
const setup = await startSignInSetup({
  settings: { ext_authz: { address: `127.0.0.1:${port}`, caller_token: token }, log_level: 'error' },
  routes: (upstream) => [{ from: 'https://kube.localhost', to: upstream, allowed_users: ['alice@example.com'], pass_identity_headers: true }],
})
try {
  const { jar } = await signIn(setup, `https://kube.localhost:${setup.port}/`, 'alice@example.com', 'alice-password')
  const cookie = jar.header(new URL(`https://kube.localhost:${setup.port}/`)) ?? ''
  const file = join(mkdtempSync(join(tmpdir(), 'bench-ext-authz-')), 'envoy.proto')
  writeFileSync(file, PROTO)
  const pkg = grpc.loadPackageDefinition(loadSync(file, { defaults: true, oneofs: true })) as unknown as { envoy: { service: { auth: { v3: { Authorization: new (a: string, c: grpc.ChannelCredentials) => Client } } } } }
  const client = new pkg.envoy.service.auth.v3.Authorization(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  const md = new grpc.Metadata()
  md.set('authorization', `Bearer ${token}`)
  const body = (i: number): unknown => ({
    attributes: {
      source: { address: { socketAddress: { address: '203.0.113.7', portValue: 50000 } } },
      request: { http: { id: `r${i}`, method: 'GET', scheme: 'https', host: 'kube.localhost', path: `/p/${i % 100}`, headers: { cookie, accept: 'text/html' } } },
    },
  })
  const call = (i: number): Promise<boolean> =>
    new Promise((resolve) => client.Check(body(i), md, (err, res) => resolve(!err && res.status.code === 0 && (res.okResponse?.headers.some((h) => h.header.key === 'x-pomerium-jwt-assertion') ?? false))))
  // Warm-up.
  for (let i = 0; i < 500; i++) await call(i)
  let done = 0
  let bad = 0
  let next = 0
  const end = Date.now() + durationMs
  const started = Date.now()
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (Date.now() < end) {
        const ok = await call(next++)
        done++
        if (!ok) bad++
      }
    }),
  )
  const seconds = (Date.now() - started) / 1000
  console.log(`ext_authz: ${(done / seconds).toFixed(0)} decisions/s over one gRPC connection (${inflight} in flight, ${seconds.toFixed(1)} s, ${done} calls${bad > 0 ? `, ${bad} not OK with an assertion` : ', all OK with an assertion'})`)
  client.close()
} finally {
  await setup.close()
}
