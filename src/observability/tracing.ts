/**
 * OpenTelemetry tracing (Pomerium docs: Tracing), off unless `otel_traces_exporter: otlp` (or the
 * standard `OTEL_TRACES_EXPORTER=otlp`, which the config loader maps to the same setting).
 *
 * Spans: the proxied request (server), its authorize decision, the upstream request (client; the
 * W3C `traceparent` sent upstream names it), databroker calls and identity-provider calls (client),
 * each a child of the request it serves. An incoming `traceparent` (or `pomerium_traceparent` in
 * the query, which the sign-in redirects carry) makes the request span its child.
 *
 * When tracing is off nothing here is created: the proxy sees no `Tracing` and its request path
 * does not change (one `undefined` check).
 */
import { context, propagation, trace, SpanKind, SpanStatusCode } from '@opentelemetry/api'
import type { Context, Span, Tracer } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter as OtlpGrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc'
import { OTLPTraceExporter as OtlpHttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { OTLPTraceExporter as OtlpHttpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base'
import type { SpanExporter } from '@opentelemetry/sdk-trace-base'
import type { Config } from '../config/types.js'
import type { TracingSettings } from '../config/tracing.js'
import type { Logger } from '../shared/log.js'

export { SpanKind }

/** What the rest of Portcullis uses; absent when tracing is off. */
export interface Tracing {
  readonly tracer: Tracer
  /** Starts the server span of one request; the parent comes from `traceparent` / `pomerium_traceparent`. */
  startRequest(method: string, host: string, path: string, headers: Readonly<Record<string, string | string[] | undefined>>, query: string): RequestTrace
  /** A fetch for identity-provider calls that records a client span per call and sends `traceparent`. */
  tracedFetch(inner: typeof fetch): typeof fetch
  /** Runs `fn` as a client span named `name` under the active context (databroker calls). */
  clientSpan<T>(name: string, attributes: Readonly<Record<string, string>>, fn: () => Promise<T>): Promise<T>
  /** Sends what is buffered and stops. */
  shutdown(): Promise<void>
}

export interface RequestTrace {
  readonly span: Span
  /** Runs `fn` with the request span active: spans started inside become its children. */
  run<T>(fn: () => T): T
  /** A child span (authorize decision, upstream request). */
  child(name: string, kind: SpanKind, attributes?: Readonly<Record<string, string | number | boolean>>): ChildSpan
  end(status: number, attributes?: Readonly<Record<string, string | number | boolean>>): void
}

export interface ChildSpan {
  /** The `traceparent` value that names this span (sent upstream). */
  traceparent(): string
  /** Runs `fn` with this span active (databroker calls made inside become its children). */
  run<T>(fn: () => T): T
  end(attributes?: Readonly<Record<string, string | number | boolean>>, error?: boolean): void
}

function exporterFor(s: TracingSettings): SpanExporter {
  const common = { url: s.endpoint, headers: s.headers, ...(s.timeoutMs !== undefined ? { timeoutMillis: s.timeoutMs } : {}) }
  switch (s.protocol) {
    case 'grpc': {
      // grpc-js takes metadata, not headers.
      const { headers, ...rest } = common
      return new OtlpGrpcExporter({ ...rest, ...(Object.keys(headers).length > 0 ? { headers } : {}) })
    }
    case 'http/json':
      return new OtlpHttpJsonExporter(common)
    case 'http/protobuf':
      return new OtlpHttpProtoExporter(common)
  }
}

const headerValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)

/** Starts tracing for a config; undefined when it is off. Registers the global context manager and propagator. */
export function createTracing(config: Config, logger: Logger, service: string): Tracing | undefined {
  const settings = config.tracing
  if (!settings) return undefined
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'portcullis', 'portcullis.service': service, ...settings.resourceAttributes }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(settings.samplerRatio) }),
    ...(settings.attributeValueLengthLimit !== undefined ? { spanLimits: { attributeValueLengthLimit: settings.attributeValueLengthLimit } } : {}),
    spanProcessors: [
      new BatchSpanProcessor(exporterFor(settings), {
        ...(settings.scheduleDelayMs !== undefined ? { scheduledDelayMillis: settings.scheduleDelayMs } : {}),
        ...(settings.maxExportBatchSize !== undefined ? { maxExportBatchSize: settings.maxExportBatchSize } : {}),
      }),
    ],
  })
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  trace.setGlobalTracerProvider(provider)
  const tracer = provider.getTracer('portcullis')
  logger.info({ protocol: settings.protocol, endpoint: settings.endpoint }, 'tracing: OpenTelemetry spans are exported over OTLP')

  const traceparentOf = (ctx: Context): string => {
    const carrier: Record<string, string> = {}
    propagation.inject(ctx, carrier)
    return carrier['traceparent'] ?? ''
  }

  return {
    tracer,
    startRequest(method, host, path, headers, query) {
      let parentHeader = headerValue(headers['traceparent'])
      if (parentHeader === undefined && query.includes('pomerium_traceparent=')) {
        parentHeader = new URLSearchParams(query).get('pomerium_traceparent') ?? undefined
      }
      const parent = parentHeader
        ? propagation.extract(context.active(), { traceparent: parentHeader, ...(headerValue(headers['tracestate']) ? { tracestate: headerValue(headers['tracestate']) } : {}) })
        : context.active()
      const span = tracer.startSpan(`${method} ${host}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'server.address': host, 'url.path': path } }, parent)
      const ctx = trace.setSpan(parent, span)
      return {
        span,
        run: (fn) => context.with(ctx, fn),
        child(name, kind, attributes) {
          const child = tracer.startSpan(name, { kind, ...(attributes ? { attributes } : {}) }, ctx)
          const childCtx = trace.setSpan(ctx, child)
          return {
            traceparent: () => traceparentOf(childCtx),
            run: (fn) => context.with(childCtx, fn),
            end(more, error) {
              if (more) child.setAttributes(more)
              if (error) child.setStatus({ code: SpanStatusCode.ERROR })
              child.end()
            },
          }
        },
        end(status, attributes) {
          span.setAttribute('http.response.status_code', status)
          if (attributes) span.setAttributes(attributes)
          if (status >= 500 || status === 0) span.setStatus({ code: SpanStatusCode.ERROR })
          span.end()
        },
      }
    },
    tracedFetch(inner) {
      return (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
        const url = new URL(input instanceof Request ? input.url : String(input))
        const method = init?.method ?? (input instanceof Request ? input.method : 'GET')
        return await tracer.startActiveSpan(`idp ${method} ${url.host}${url.pathname}`, { kind: SpanKind.CLIENT, attributes: { 'http.request.method': method, 'server.address': url.host, 'url.path': url.pathname } }, async (span) => {
          const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined))
          const carrier: Record<string, string> = {}
          propagation.inject(context.active(), carrier)
          for (const [k, v] of Object.entries(carrier)) headers.set(k, v)
          try {
            const res = await inner(input, { ...init, headers })
            span.setAttribute('http.response.status_code', res.status)
            if (res.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
            return res
          } catch (err) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) })
            throw err
          } finally {
            span.end()
          }
        })
      })
    },
    async clientSpan(name, attributes, fn) {
      // Background work (sync probes, the identity manager's scans) is not traced: only calls made
      // on behalf of a traced request are.
      if (!trace.getSpan(context.active())) return await fn()
      return await tracer.startActiveSpan(name, { kind: SpanKind.CLIENT, attributes }, async (span) => {
        try {
          return await fn()
        } catch (err) {
          span.setStatus({ code: SpanStatusCode.ERROR })
          throw err
        } finally {
          span.end()
        }
      })
    },
    async shutdown() {
      await provider.shutdown().catch((err: unknown) => logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'tracing: spans could not all be exported at shutdown'))
    },
  }
}
