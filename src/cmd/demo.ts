/**
 * `portcullis demo` (what `npm start` runs): a sample upstream and Portcullis in front of it on
 * http://localhost:8080 (PORT overrides). One public route, and one protected route that shows
 * the deny page until sign-in arrives.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serve } from './serve.js'

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

export async function demo(): Promise<number> {
  const upstream = createServer((req, res) => {
    const rows = Object.entries(req.headers)
      .map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(String(v))}</td></tr>`)
      .join('')
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(`<!doctype html><html><head><meta charset="utf-8"><title>Portcullis demo app</title>
<style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:3rem auto;padding:0 1rem}td{padding:.2rem .6rem;border-bottom:1px solid #e5e7eb;font-family:monospace}</style>
</head><body><h1>Hello from the demo app</h1>
<p>This page is served by a sample upstream, through Portcullis. Path: <code>${escapeHtml(req.url ?? '')}</code></p>
<p><a href="/private/">/private/</a> is a protected route: Portcullis refuses it until sign-in is configured.</p>
<h2>Headers the app received</h2><table>${rows}</table></body></html>`)
  })
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  const upstreamPort = (upstream.address() as AddressInfo).port
  const port = Number(process.env['PORT'] ?? 8080)
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-demo-'))
  const file = join(dir, 'config.yaml')
  writeFileSync(
    file,
    `# Portcullis demo configuration (Pomerium format)
address: 127.0.0.1:${port}
insecure_server: true
routes:
  - from: https://localhost
    prefix: /private/
    to: http://127.0.0.1:${upstreamPort}
    allowed_domains: [example.com]
  - from: https://localhost
    to: http://127.0.0.1:${upstreamPort}
    allow_public_unauthenticated_access: true
`,
  )
  process.stdout.write(`Portcullis demo: open http://localhost:${port}/ (config: ${file})\n`)
  const code = await serve(file)
  upstream.close()
  return code
}
