import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { preferredType, prefersJson } from './negotiate.js'

const PAGE_OR_JSON = ['text/html', 'application/json'] as const

describe('preferredType', () => {
  it('gives the first offered type when the client says nothing', () => {
    assert.equal(preferredType(undefined, PAGE_OR_JSON), 'text/html')
    assert.equal(preferredType('', PAGE_OR_JSON), 'text/html')
    assert.equal(preferredType('  ', PAGE_OR_JSON), 'text/html')
  })

  it('reads */* and type/* as covering the offered types, the server order deciding ties', () => {
    assert.equal(preferredType('*/*', PAGE_OR_JSON), 'text/html')
    assert.equal(preferredType('*/*', ['application/json', 'text/html']), 'application/json')
    assert.equal(preferredType('application/*', PAGE_OR_JSON), 'application/json')
    assert.equal(preferredType('text/*', ['text/plain', 'text/html']), 'text/plain')
  })

  it('on equal quality takes the type the client listed first', () => {
    assert.equal(preferredType('application/json, text/html', PAGE_OR_JSON), 'application/json')
    assert.equal(preferredType('text/html, application/json', PAGE_OR_JSON), 'text/html')
  })

  it('prefers a type the client named over one reached by a wildcard, whatever the order', () => {
    assert.equal(preferredType('*/*, application/json', PAGE_OR_JSON), 'application/json')
    assert.equal(preferredType('application/json, */*', PAGE_OR_JSON), 'application/json')
  })

  it('weighs q-values, a higher quality beating an earlier position', () => {
    assert.equal(preferredType('text/html;q=0.5, application/json', PAGE_OR_JSON), 'application/json')
    assert.equal(preferredType('application/json;q=0.9, text/html', PAGE_OR_JSON), 'text/html')
    assert.equal(preferredType('application/json; charset=utf-8; q=0.4, */*;q=0.5', PAGE_OR_JSON), 'text/html')
    assert.equal(preferredType('TEXT/HTML;Q=0.1, Application/JSON;q=0.2', PAGE_OR_JSON), 'application/json')
  })

  it('lets the most specific range decide a type, so q=0 refuses it even beside */*', () => {
    assert.equal(preferredType('text/html;q=0, */*', PAGE_OR_JSON), 'application/json')
    assert.equal(preferredType('application/json;q=0', PAGE_OR_JSON), undefined)
    assert.equal(preferredType('image/png', PAGE_OR_JSON), undefined)
  })

  it('counts a malformed quality as 0 and skips malformed ranges', () => {
    assert.equal(preferredType('application/json;q=abc, text/html;q=0.1', PAGE_OR_JSON), 'text/html')
    assert.equal(preferredType('application/json;q=1.5', PAGE_OR_JSON), undefined)
    assert.equal(preferredType('json, /html, text/, application/json;q=0.3', PAGE_OR_JSON), 'application/json')
  })

  it('reads a header sent more than once as one list', () => {
    assert.equal(preferredType(['text/plain;q=0.1', 'application/json'], PAGE_OR_JSON), 'application/json')
  })
})

describe('prefersJson', () => {
  it('answers JSON only when JSON beats both the page and plain text', () => {
    assert.equal(prefersJson(undefined), false)
    assert.equal(prefersJson('*/*'), false)
    assert.equal(prefersJson('text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'), false)
    assert.equal(prefersJson('application/json'), true)
    assert.equal(prefersJson('application/json, text/plain, */*'), true)
    assert.equal(prefersJson('text/plain, application/json'), false)
    assert.equal(prefersJson('application/json;q=0.5, text/html'), false)
  })
})
