/**
 * The discovery documents of the SCIM endpoint (RFC 7643 §5–7, RFC 7644 §4): what it supports
 * (PATCH, filter, ETags; no bulk, sort or password change) and the attributes it keeps.
 */
export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User'
export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group'
export const ENTERPRISE_USER_SCHEMA = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'
export const LIST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse'
export const PATCH_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp'
const SPC_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig'
const RT_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ResourceType'
const SCHEMA_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Schema'

export const MAX_RESULTS = 1000
export const MAX_PAYLOAD_BYTES = 1_048_576

type Attr = Record<string, unknown>

function attr(name: string, type: string, extra: Partial<Attr> = {}): Attr {
  return {
    name,
    type,
    multiValued: false,
    description: '',
    required: false,
    caseExact: false,
    mutability: 'readWrite',
    returned: 'default',
    uniqueness: 'none',
    ...extra,
  }
}

function multiComplex(name: string, subs: Attr[], extra: Partial<Attr> = {}): Attr {
  return attr(name, 'complex', { multiValued: true, subAttributes: subs, ...extra })
}

const typedValue = (types?: string[]): Attr[] => [
  attr('value', 'string'),
  attr('display', 'string'),
  attr('type', 'string', types ? { canonicalValues: types } : {}),
  attr('primary', 'boolean'),
]

export const USER_ATTRIBUTES: Attr[] = [
  attr('userName', 'string', { required: true, uniqueness: 'server', description: 'Unique identifier for the User, typically the email or UPN.' }),
  attr('name', 'complex', {
    subAttributes: ['formatted', 'familyName', 'givenName', 'middleName', 'honorificPrefix', 'honorificSuffix'].map((n) => attr(n, 'string')),
  }),
  attr('displayName', 'string'),
  attr('nickName', 'string'),
  attr('profileUrl', 'reference', { referenceTypes: ['external'] }),
  attr('title', 'string'),
  attr('userType', 'string'),
  attr('preferredLanguage', 'string'),
  attr('locale', 'string'),
  attr('timezone', 'string'),
  attr('active', 'boolean'),
  multiComplex('emails', typedValue(['work', 'home', 'other'])),
  multiComplex('phoneNumbers', typedValue(['work', 'home', 'mobile', 'fax', 'pager', 'other'])),
  multiComplex('groups', [attr('value', 'string', { mutability: 'readOnly' }), attr('$ref', 'reference', { mutability: 'readOnly', referenceTypes: ['Group'] }), attr('display', 'string', { mutability: 'readOnly' }), attr('type', 'string', { mutability: 'readOnly' })], { mutability: 'readOnly' }),
]

export const ENTERPRISE_ATTRIBUTES: Attr[] = [
  attr('employeeNumber', 'string'),
  attr('costCenter', 'string'),
  attr('organization', 'string'),
  attr('division', 'string'),
  attr('department', 'string'),
  attr('manager', 'complex', { subAttributes: [attr('value', 'string'), attr('$ref', 'reference', { referenceTypes: ['User'] }), attr('displayName', 'string', { mutability: 'readOnly' })] }),
]

export const GROUP_ATTRIBUTES: Attr[] = [
  attr('displayName', 'string', { required: true }),
  multiComplex('members', [attr('value', 'string', { mutability: 'immutable', caseExact: true }), attr('$ref', 'reference', { mutability: 'immutable', referenceTypes: ['User', 'Group'] }), attr('display', 'string', { mutability: 'readOnly' }), attr('type', 'string', { mutability: 'immutable', canonicalValues: ['User', 'Group'] })]),
]

function meta(base: string, resourceType: string, path: string): Record<string, unknown> {
  return { resourceType, location: `${base}${path}` }
}

export function serviceProviderConfig(base: string): Record<string, unknown> {
  return {
    schemas: [SPC_SCHEMA],
    documentationUri: 'https://github.com/portcullis/portcullis/blob/main/docs/directory.md',
    patch: { supported: true },
    bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
    filter: { supported: true, maxResults: MAX_RESULTS },
    changePassword: { supported: false },
    sort: { supported: false },
    etag: { supported: true },
    authenticationSchemes: [
      { type: 'oauthbearertoken', name: 'Bearer token', description: 'A bearer token whose SHA-256 is in scim.bearer_token_sha256.', primary: true },
    ],
    meta: meta(base, 'ServiceProviderConfig', '/ServiceProviderConfig'),
  }
}

export function resourceTypes(base: string): Array<Record<string, unknown>> {
  return [
    { schemas: [RT_SCHEMA], id: 'User', name: 'User', endpoint: '/Users', description: 'User Account', schema: USER_SCHEMA, schemaExtensions: [{ schema: ENTERPRISE_USER_SCHEMA, required: false }], meta: meta(base, 'ResourceType', '/ResourceTypes/User') },
    { schemas: [RT_SCHEMA], id: 'Group', name: 'Group', endpoint: '/Groups', description: 'Group', schema: GROUP_SCHEMA, schemaExtensions: [], meta: meta(base, 'ResourceType', '/ResourceTypes/Group') },
  ]
}

export function schemas(base: string): Array<Record<string, unknown>> {
  return [
    { schemas: [SCHEMA_SCHEMA], id: USER_SCHEMA, name: 'User', description: 'User Account', attributes: USER_ATTRIBUTES, meta: meta(base, 'Schema', `/Schemas/${USER_SCHEMA}`) },
    { schemas: [SCHEMA_SCHEMA], id: GROUP_SCHEMA, name: 'Group', description: 'Group', attributes: GROUP_ATTRIBUTES, meta: meta(base, 'Schema', `/Schemas/${GROUP_SCHEMA}`) },
    { schemas: [SCHEMA_SCHEMA], id: ENTERPRISE_USER_SCHEMA, name: 'EnterpriseUser', description: 'Enterprise User', attributes: ENTERPRISE_ATTRIBUTES, meta: meta(base, 'Schema', `/Schemas/${ENTERPRISE_USER_SCHEMA}`) },
  ]
}
