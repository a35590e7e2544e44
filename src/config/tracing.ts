/**
 * The OpenTelemetry tracing settings (Pomerium docs: Tracing): `otel_traces_exporter: otlp` turns tracing
 * on; the `otel_exporter_otlp_*` settings say where spans go. Checked at load time: a value the
 * exporter could not use is a config error at its key path.
 */

export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json'

const PROTOCOLS: readonly string[] = ['grpc', 'http/protobuf', 'http/json']

export interface TracingSettings {
  readonly protocol: OtlpProtocol
  readonly endpoint: string
  readonly headers: Readonly<Record<string, string>>
  readonly timeoutMs: number | undefined
  /** `otel_traces_sampler_arg`, clamped to 0..1 (default 1). */
  readonly samplerRatio: number
  readonly resourceAttributes: Readonly<Record<string, string>>
  readonly scheduleDelayMs: number | undefined
  readonly maxExportBatchSize: number | undefined
  readonly attributeValueLengthLimit: number | undefined
}

/** Reports a problem at a key path. */
export type ReportProblem = (path: string, value: unknown, message: string) => void

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)

/** A number setting written as a number or a numeric string (`any` kind); undefined when unset. */
function num(raw: Readonly<Record<string, unknown>>, key: string, report: ReportProblem): number | undefined {
  const v = raw[key]
  if (v === undefined || v === '') return undefined
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN
  if (!Number.isFinite(n)) {
    report(key, v, 'expected a number')
    return undefined
  }
  return n
}

/** `k=v` pairs (percent-encoded) from a list setting or a comma-separated string. */
function pairs(raw: Readonly<Record<string, unknown>>, key: string, report: ReportProblem): Record<string, string> {
  const v = raw[key]
  const items = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : []
  const out: Record<string, string> = {}
  items.forEach((item: unknown, i) => {
    if (typeof item !== 'string') return
    const eq = item.indexOf('=')
    if (eq <= 0) return
    try {
      out[decodeURIComponent(item.slice(0, eq).trim())] = decodeURIComponent(item.slice(eq + 1).trim())
    } catch {
      report(Array.isArray(v) ? `${key}[${i}]` : key, item, 'expected key=value with valid percent-encoding')
    }
  })
  return out
}

/** The tracing settings of the normalised global keys; undefined when tracing is off. */
export function readTracing(raw: Readonly<Record<string, unknown>>, report: ReportProblem): TracingSettings | undefined {
  const exporter = str(raw['otel_traces_exporter'])?.toLowerCase()
  if (exporter === undefined || exporter === 'none') return undefined
  if (exporter !== 'otlp') {
    report('otel_traces_exporter', raw['otel_traces_exporter'], 'expected otlp or none')
    return undefined
  }
  const protocolKey = str(raw['otel_exporter_otlp_traces_protocol']) !== undefined ? 'otel_exporter_otlp_traces_protocol' : 'otel_exporter_otlp_protocol'
  const protocol = str(raw[protocolKey]) ?? 'http/protobuf'
  if (!PROTOCOLS.includes(protocol)) report(protocolKey, protocol, 'expected grpc, http/protobuf or http/json')
  const base = str(raw['otel_exporter_otlp_endpoint'])
  const specific = str(raw['otel_exporter_otlp_traces_endpoint'])
  const endpoint =
    specific ?? (protocol === 'grpc' ? (base ?? 'http://localhost:4317') : `${(base ?? 'http://localhost:4318').replace(/\/+$/, '')}/v1/traces`)
  const ratio = num(raw, 'otel_traces_sampler_arg', report)
  const tracesTimeout = num(raw, 'otel_exporter_otlp_traces_timeout', report)
  const timeout = num(raw, 'otel_exporter_otlp_timeout', report)
  return {
    protocol: protocol as OtlpProtocol,
    endpoint,
    headers: { ...pairs(raw, 'otel_exporter_otlp_headers', report), ...pairs(raw, 'otel_exporter_otlp_traces_headers', report) },
    timeoutMs: tracesTimeout ?? timeout,
    samplerRatio: ratio === undefined ? 1 : Math.min(1, Math.max(0, ratio)),
    resourceAttributes: pairs(raw, 'otel_resource_attributes', report),
    scheduleDelayMs: num(raw, 'otel_bsp_schedule_delay', report),
    maxExportBatchSize: num(raw, 'otel_bsp_max_export_batch_size', report),
    attributeValueLengthLimit: num(raw, 'otel_attribute_value_length_limit', report),
  }
}
