import assert from 'node:assert/strict'
import { test } from 'node:test'
import { storageChoice } from './storage-choice.js'
import { errors, loadYaml } from './test-helpers.js'

test('the storage type follows the connection string when only that is given', () => {
  assert.deepEqual(storageChoice({}), { type: 'memory', connectionString: undefined })
  assert.equal(storageChoice({ databroker_storage_connection_string: 'postgres://u@db/x' }).type, 'postgres')
  assert.equal(storageChoice({ databroker_storage_connection_string: 'postgresql://u@db/x' }).type, 'postgres')
  assert.equal(storageChoice({ databroker_storage_connection_string: 'file:///var/lib/portcullis/' }).type, 'file')
  assert.equal(storageChoice({ databroker_storage_type: 'file', databroker_storage_connection_string: 'file:///x' }).type, 'file')
})

test('file and postgres need a connection string of their kind; passwords are never echoed', () => {
  const missing = errors(loadYaml('databroker_storage_type: postgres\n').issues)
  assert.equal(missing[0]?.path, 'databroker_storage_connection_string')
  assert.match(missing[0]?.message ?? '', /required with databroker_storage_type: postgres/)
  const wrong = errors(loadYaml('databroker_storage_type: postgres\ndatabroker_storage_connection_string: mysql://u:hunter2@db/x\n').issues)
  assert.match(wrong[0]?.message ?? '', /postgres:\/\//)
  assert.ok(!JSON.stringify(wrong).includes('hunter2'))
  assert.deepEqual(errors(loadYaml('databroker_storage_connection_string: postgres://u@db/x\n').issues), [])
})
