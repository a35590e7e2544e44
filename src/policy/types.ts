/**
 * The public types of the policy module: what a decision needs to know about a request and its
 * session, what a compiled policy answers, and how errors point back into the configuration.
 *
 * The module is pure (no I/O, no clock, no config loading): the caller gathers the inputs, so a
 * decision depends only on what is passed in and tests can pin every value, `now` included.
 */

/**
 * The client certificate of the request's connection, as the TLS layer saw it.
 *
 * This is the subset of `ClientCertificateInfo` (src/authorize/types.ts) that the criteria read.
 * It is restated here rather than imported because the policy module may not depend on the
 * authorize service (eslint `no-restricted-imports`); `ClientCertificateInfo` is assignable to
 * it, and `contract.test.ts` checks that it stays so.
 */
export interface PolicyClientCertificate {
  /** The client sent a certificate. */
  readonly presented: boolean
  /** It chains to a `downstream_mtls` CA, is not revoked, and matches `match_subject_alt_names`. */
  readonly valid: boolean
  /** SHA-256 of the leaf's DER, lower-case hex without colons. */
  readonly fingerprintSha256: string
  /** SHA-256 of the leaf's SubjectPublicKeyInfo, standard base64. */
  readonly spkiSha256: string
  readonly sanDns: readonly string[]
  readonly sanEmail: readonly string[]
  readonly sanUri: readonly string[]
}

/** A WebAuthn device credential that authenticated the session (docs/devices.md). */
export interface PolicyDevice {
  /** The credential's id (what `device: {is: ...}` names). */
  readonly id: string
  /** Its device type: `any`, `enclave_only` or a configured type. */
  readonly typeId: string
  /** Whether the device is approved (enrolled through a link, or approved since). */
  readonly approved: boolean
  /**
   * Its type requires approval and it has none yet: it satisfies no rule but one that asks for
   * `approved: false`, and the person is told it awaits approval (450).
   */
  readonly pendingApproval?: boolean
}

/** The signed-in user, as far as policy is concerned. */
export interface PolicySession {
  readonly sessionId: string
  /** The IdP subject (`sub`, or Azure `oid`); the `user` criterion matches it. */
  readonly userId: string
  /** '' when unknown. */
  readonly email: string
  /** The `email_verified` claim; `false` makes the `email` and `domain` criteria fail. */
  readonly emailVerified: boolean | undefined
  /** Session claims merged with user claims (user wins on a clash). */
  readonly claims: Readonly<Record<string, unknown>>
  /** Group ids from a directory source; undefined = none, and then `groups` reads the `groups` claim. */
  readonly directoryGroups?: readonly string[] | undefined
  /** The device credentials that authenticated this session; undefined or empty = none. */
  readonly devices?: readonly PolicyDevice[] | undefined
}

/** Everything a decision may look at. */
export interface PolicyInput {
  /** undefined = not signed in. */
  readonly session: PolicySession | undefined
  readonly method: string
  /** The normalised path, without the query. */
  readonly path: string
  /** Request headers, lower-case names. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** The trusted client IP. May be malformed: then IP criteria are false, never an exception. */
  readonly clientIp: string
  /** Absent when the listener does not ask for client certificates. */
  readonly clientCertificate?: PolicyClientCertificate | undefined
  readonly now: Date
}

/** A configuration problem, located by key path (`routes[2].policy.allow.and[1].email`). */
export interface PolicyError {
  readonly path: string
  readonly message: string
}

/** `downstream_mtls.enforcement`. */
export type MtlsEnforcement = 'policy_with_default_deny' | 'policy' | 'reject_connection'

/** The access-control fields of a route (RouteConfig), so this module does not depend on config loading. */
export interface RouteAccess {
  readonly allowPublicUnauthenticatedAccess: boolean
  readonly allowAnyAuthenticatedUser: boolean
  readonly corsAllowPreflight: boolean
  readonly allowedUsers: readonly string[]
  readonly allowedDomains: readonly string[]
  readonly allowedIdpClaims: Readonly<Record<string, readonly unknown[]>>
  /** The embedded PPL as written (object or list), or undefined/null. */
  readonly policy: unknown
}

/** One criterion's result in a trace. `result` is the criterion's own value, before `not`/`nor` invert it. */
export interface CriterionTrace {
  /** The key as written: `email`, `claim/groups`. */
  name: string
  data: unknown
  result: boolean
  reasons: string[]
}

/** One operator of one rule (`allow: {and: [...]}`) in a trace. */
export interface RuleTrace {
  action: 'allow' | 'deny'
  operator: 'and' | 'or' | 'not' | 'nor'
  result: boolean
  criteria: CriterionTrace[]
}

/** The result of evaluating a policy for one request. Reasons follow Pomerium docs: Result & reason propagation. */
export interface Evaluation {
  readonly allow: boolean
  readonly deny: boolean
  /** Sorted, deduplicated: the true operators' reasons when allow is true, else the false ones'. */
  readonly allowReasons: readonly string[]
  readonly denyReasons: readonly string[]
  /** Per rule and criterion results; only present for `evaluate(input, { trace: true })`. */
  readonly trace?: readonly RuleTrace[]
}

export interface EvaluateOptions {
  /** Also report every operator's and criterion's result (slower; for `policy explain` and error details). */
  readonly trace?: boolean
}

/** A policy compiled once into closures; `evaluate` never parses or allocates per criterion. */
export interface CompiledPolicy {
  evaluate(input: PolicyInput, options?: EvaluateOptions): Evaluation
  /** The PPL it was compiled from (after legacy translation), deep-frozen, for explanations. */
  readonly source: unknown
  /** The device types its `device` criteria require, in the order written (no repeats). */
  readonly deviceTypes: readonly string[]
}

/** What the authorize service should do with a request (Pomerium docs: Result & reason propagation decision order). */
export type Decision =
  | { readonly kind: 'allow'; readonly reasons: readonly string[] }
  | { readonly kind: 'client-certificate'; readonly status: 495; readonly reasons: readonly string[] }
  | { readonly kind: 'sign-in'; readonly reasons: readonly string[] }
  | { readonly kind: 'deny'; readonly status: 403; readonly reasons: readonly string[] }
  /** No device credential of `deviceType` on the session: enroll or authenticate a device of that type. */
  | { readonly kind: 'device-enroll'; readonly deviceType: string; readonly reasons: readonly string[] }
  /** A device credential that does not satisfy the rule. */
  | { readonly kind: 'device-denied'; readonly status: 450; readonly reasons: readonly string[] }

/** The result of compiling: a policy when there are no errors. */
export interface CompileResult {
  readonly policy?: CompiledPolicy
  readonly errors: PolicyError[]
}
