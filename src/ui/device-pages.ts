/**
 * The device pages (docs/devices.md): `/.pomerium/webauthn`, where a person registers a device
 * or uses one they registered; `/.pomerium/device-enrolled`; and the approvers' `/.pomerium/devices`.
 */
import { escapeHtml, layout, list, readableDate } from './pages.js'
import type { RenderedPage } from './pages.js'

/**
 * The ceremony in the browser: WebAuthn's JSON forms of the options go in, the credential's JSON
 * form goes back to the server with the sealed state; the answer says where to go next. Fixed
 * code: every value it uses comes from the page's JSON data block.
 */
const WEBAUTHN_SCRIPT = `(() => {
  'use strict'
  const data = JSON.parse(document.getElementById('page-data').textContent)
  const status = document.getElementById('status')
  const say = (text) => { status.textContent = text }
  const dec = (s) => { const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4)); return Uint8Array.from(b, (c) => c.charCodeAt(0)) }
  const enc = (buf) => { let s = ''; for (const c of new Uint8Array(buf)) s += String.fromCharCode(c); return btoa(s).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '') }
  const creation = (o) => ({ ...o, challenge: dec(o.challenge), user: { ...o.user, id: dec(o.user.id) }, excludeCredentials: (o.excludeCredentials || []).map((c) => ({ ...c, id: dec(c.id) })) })
  const request = (o) => ({ ...o, challenge: dec(o.challenge), allowCredentials: (o.allowCredentials || []).map((c) => ({ ...c, id: dec(c.id) })) })
  const toJSON = (cred) => {
    if (typeof cred.toJSON === 'function') return cred.toJSON()
    const r = cred.response
    const response = { clientDataJSON: enc(r.clientDataJSON) }
    if (r.attestationObject) { response.attestationObject = enc(r.attestationObject); response.transports = r.getTransports ? r.getTransports() : [] }
    if (r.authenticatorData) { response.authenticatorData = enc(r.authenticatorData); response.signature = enc(r.signature); if (r.userHandle) response.userHandle = enc(r.userHandle) }
    return { id: cred.id, rawId: enc(cred.rawId), type: cred.type, authenticatorAttachment: cred.authenticatorAttachment || undefined, clientExtensionResults: cred.getClientExtensionResults(), response }
  }
  const finish = async (action, credential) => {
    const answer = await fetch(data.action, { method: 'POST', headers: { 'content-type': 'application/json' }, credentials: 'same-origin', body: JSON.stringify({ action, state: data.state, credential: toJSON(credential) }) })
    const body = await answer.json().catch(() => ({}))
    if (!answer.ok) { say(body.error || ('The server refused this device (' + answer.status + ').')); return }
    say('Done.')
    window.location.assign(body.redirect)
  }
  const run = (action, ceremony) => async () => {
    if (!window.PublicKeyCredential) { say('This browser does not support security keys or platform authenticators (WebAuthn).'); return }
    say(action === 'register' ? 'Follow your browser to register this device…' : 'Follow your browser to use your device…')
    try { await finish(action, await ceremony()) } catch (err) { say((err && err.name === 'NotAllowedError') ? 'The device was not used (cancelled, timed out, or not one this page accepts).' : 'The device could not be used: ' + (err && err.message ? err.message : String(err))) }
  }
  const register = document.getElementById('register')
  if (register) register.addEventListener('click', run('register', () => navigator.credentials.create({ publicKey: creation(data.registration) })))
  const authenticate = document.getElementById('authenticate')
  if (authenticate) authenticate.addEventListener('click', run('authenticate', () => navigator.credentials.get({ publicKey: request(data.authentication) })))
})()
`

export interface WebAuthnPageData {
  readonly typeName: string
  readonly user: string
  /** Where the credential posts (this page's path). */
  readonly action: string
  /** Sealed ceremony state (challenges, session, where to go next). */
  readonly state: string
  /** PublicKeyCredentialCreationOptionsJSON. */
  readonly registration: unknown
  /** PublicKeyCredentialRequestOptionsJSON, when the user has devices of this type. */
  readonly authentication: unknown
  /** Through an enrollment link: the device will be approved. */
  readonly enrollment: boolean
}

export function webauthnPage(d: WebAuthnPageData): RenderedPage {
  const use =
    d.authentication !== undefined
      ? `<div class="card"><h2>Use a registered device</h2><p>You registered a device of this type before: use it to continue.</p><p><button type="button" id="authenticate">Use my device</button></p></div>`
      : ''
  const intro = d.enrollment
    ? '<p>This enrollment link registers a device for you, approved by your administrator. It works once.</p>'
    : '<p>This app needs a registered device. Register this computer, phone or security key, or use one you registered before.</p>'
  return layout(
    'Device',
    `<h1>Device: ${escapeHtml(d.typeName)}</h1>${intro}${use}<div class="card"><h2>Register a new device</h2><p class="muted">Signed in as ${escapeHtml(d.user)}.</p><p><button type="button" id="register">Register this device</button></p></div>
<p id="status" role="status" aria-live="polite"></p>`,
    [],
    [],
    {
      code: WEBAUTHN_SCRIPT,
      data: { action: d.action, state: d.state, registration: d.registration, ...(d.authentication !== undefined ? { authentication: d.authentication } : {}) },
    },
  )
}

export function deviceEnrolledPage(d: { typeName: string; approved: boolean; userPageUrl: string }): RenderedPage {
  return layout(
    'Device registered',
    `<h1>Device registered</h1><div class="card"><p>This device is registered as <strong>${escapeHtml(d.typeName)}</strong>${d.approved ? ' and approved' : ''}.</p><p><a href="${escapeHtml(d.userPageUrl)}">Your session and devices</a></p></div>`,
  )
}

export interface AdminDevice {
  readonly id: string
  readonly user: string
  readonly typeName: string
  readonly createdAt: Date
  readonly approved: boolean
  readonly approvalRequired: boolean
  readonly approvedBy: string | undefined
}

/** `/.pomerium/devices`: every device, with approve and revoke for people `device_approvers` allows. */
export function devicesAdminPage(d: { devices: readonly AdminDevice[]; types: readonly { id: string; name: string }[]; action: string; csrfToken: string; user: string }): RenderedPage {
  const form = (id: string, op: 'approve' | 'revoke', label: string): string =>
    `<form method="post" action="${escapeHtml(d.action)}"><input type="hidden" name="csrf" value="${escapeHtml(d.csrfToken)}"><input type="hidden" name="id" value="${escapeHtml(id)}"><input type="hidden" name="op" value="${op}"><button type="submit">${label}</button></form>`
  const rows = d.devices.map(
    (dev) => `<li class="card">${list([
      ['User', dev.user],
      ['Type', dev.typeName],
      ['Registered', readableDate(dev.createdAt)],
      ['Approved', dev.approved ? `yes${dev.approvedBy !== undefined ? ` (${dev.approvedBy})` : ''}` : dev.approvalRequired ? 'no (waiting for approval)' : 'no'],
      ['Credential ID', dev.id],
    ])}${dev.approved ? form(dev.id, 'revoke', 'Revoke approval') : form(dev.id, 'approve', 'Approve')}</li>`,
  )
  const options = d.types.map((t) => `<option value="${escapeHtml(t.id)}">${escapeHtml(t.name)}</option>`).join('')
  const linkForm = `<h2>Enrollment link</h2><div class="card"><p>A link that registers one device for one person, approved from the start. It works once.</p>
<form method="post" action="${escapeHtml(d.action)}" id="enroll"><input type="hidden" name="csrf" value="${escapeHtml(d.csrfToken)}"><input type="hidden" name="op" value="enroll">
<p><label>User (email or user id) <input name="user" required maxlength="320"></label></p>
<p><label>Device type <select name="type">${options}</select></label></p>
<p><label>Valid for (hours) <input name="hours" type="number" min="1" max="2160" value="168"></label></p>
<p><button type="submit">Create link</button></p></form></div>`
  return layout(
    'Devices',
    `<h1>Devices</h1><p class="muted">Signed in as ${escapeHtml(d.user)} (a device approver).</p>${rows.length > 0 ? `<ul class="apps">${rows.join('')}</ul>` : '<div class="card"><p>No devices are registered.</p></div>'}${linkForm}`,
  )
}

export function enrollmentLinkPage(d: { link: string; user: string; typeName: string; expiresAt: Date; backUrl: string }): RenderedPage {
  return layout(
    'Enrollment link',
    `<h1>Enrollment link</h1><div class="card">${list([
      ['For', d.user],
      ['Device type', d.typeName],
      ['Valid until', readableDate(d.expiresAt)],
    ])}<p>Give this link to the person; it works once, only for them:</p><p><code id="link">${escapeHtml(d.link)}</code></p></div><p><a href="${escapeHtml(d.backUrl)}">Back to devices</a></p>`,
  )
}
