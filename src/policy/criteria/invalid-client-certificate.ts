/**
 * `invalid_client_certificate`: true when no client certificate was presented
 * (`client-certificate-required`) or the one presented is not valid
 * (`invalid-client-certificate`); false with `valid-client-certificate`. Meant for deny rules;
 * `downstream_mtls` adds it to every route unless enforcement is `policy`.
 */
import { R } from '../reasons.js'
import { checkIgnoredData } from './types.js'
import type { RequestCriterion } from './types.js'

const REQUIRED = 0
const INVALID = 1
const VALID = 2

export const invalidClientCertificate: RequestCriterion = {
  name: 'invalid_client_certificate',
  subPath: 'none',
  session: false,
  outcomes: [
    { value: true, reasons: [R.clientCertificateRequired] },
    { value: true, reasons: [R.invalidClientCertificate] },
    { value: false, reasons: [R.validClientCertificate] },
  ],
  compile(data, ctx) {
    checkIgnoredData(data, ctx, 'invalid_client_certificate')
    return (input) => {
      const cert = input.clientCertificate
      if (cert === undefined || !cert.presented) return REQUIRED
      return cert.valid ? VALID : INVALID
    }
  },
}
