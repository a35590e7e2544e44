import { rawHttp, startPortcullis } from './fixtures/portcullis.js'
import { startHttpEcho } from './fixtures/upstreams.js'
const up = await startHttpEcho()
const px = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, routes: [{ from: 'https://pub.localhost', prefix: '/public', to: up.url, allow_public_unauthenticated_access: true }] })
for (const p of process.argv.slice(2)) {
  const out = await rawHttp(px.port, Buffer.from(JSON.parse(p) as string, 'latin1'))
  console.log(JSON.stringify(p), '=>', JSON.stringify(out.slice(0, 300)))
}
console.log(up.requests.map(r => [r.url, r.httpVersion]))
await px.stop(); await up.close()
