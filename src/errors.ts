// The catalogue of errors the gateway originates, and the OpenAI error envelope they travel in.

/** Stable codes: clients and tests match on these, never on message text. Documented in README "Errors". */
const catalogue = {
  invalid_api_key: { status: 401, type: 'invalid_request_error' },
  invalid_json: { status: 400, type: 'invalid_request_error' },
  invalid_request: { status: 400, type: 'invalid_request_error' },
  model_not_found: { status: 404, type: 'invalid_request_error' },
  not_found: { status: 404, type: 'invalid_request_error' },
  response_not_found: { status: 404, type: 'invalid_request_error' },
  method_not_allowed: { status: 405, type: 'invalid_request_error' },
  request_timeout: { status: 408, type: 'invalid_request_error' },
  body_too_large: { status: 413, type: 'invalid_request_error' },
  unsupported_encoding: { status: 415, type: 'invalid_request_error' },
  expectation_failed: { status: 417, type: 'invalid_request_error' },
  headers_too_large: { status: 431, type: 'invalid_request_error' },
  request_rejected: { status: 400, type: 'invalid_request_error' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error' },
  upstream_failed: { status: 502, type: 'upstream_error' },
  no_step_available: { status: 503, type: 'upstream_error' },
  gateway_timeout: { status: 504, type: 'upstream_error' },
  stream_interrupted: { status: 502, type: 'upstream_error' },
  internal_error: { status: 500, type: 'server_error' },
} as const satisfies Record<string, { status: number; type: string }>

export type ErrorCode = keyof typeof catalogue

export interface ErrorEnvelope {
  error: { message: string; type: string; code: ErrorCode; param: string | null }
}

export class GatewayError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly type: string
  readonly param: string | null
  /** Extra response headers the error implies (e.g. Retry-After, Allow). */
  readonly headers: Readonly<Record<string, string>>

  constructor(
    code: ErrorCode,
    message: string,
    options: { param?: string; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'GatewayError'
    this.code = code
    this.status = catalogue[code].status
    this.type = catalogue[code].type
    this.param = options.param ?? null
    this.headers = options.headers ?? {}
  }

  toEnvelope(): ErrorEnvelope {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } }
  }
}

/** Any thrown value as a GatewayError; unknown failures become a generic 500 that reveals nothing. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err
  return new GatewayError('internal_error', 'The gateway failed to handle this request.', { cause: err })
}
