/**
 * proxy-wasm ABI constants (https://github.com/proxy-wasm/spec, abi-versions/v0.2.1; the same
 * numbers are in proxy-wasm-cpp-host include/proxy-wasm/wasm_api_impl.h and every SDK).
 */

/** WasmResult: what every host call returns. */
export const Result = {
  Ok: 0,
  NotFound: 1,
  BadArgument: 2,
  SerializationFailure: 3,
  ParseFailure: 4,
  BadExpression: 5,
  InvalidMemoryAccess: 6,
  Empty: 7,
  CasMismatch: 8,
  ResultMismatch: 9,
  InternalFailure: 10,
  BrokenConnection: 11,
  Unimplemented: 12,
} as const;

export const HeaderMapType = {
  RequestHeaders: 0,
  RequestTrailers: 1,
  ResponseHeaders: 2,
  ResponseTrailers: 3,
  GrpcReceiveInitialMetadata: 4,
  GrpcReceiveTrailingMetadata: 5,
  HttpCallResponseHeaders: 6,
  HttpCallResponseTrailers: 7,
} as const;

export const BufferType = {
  HttpRequestBody: 0,
  HttpResponseBody: 1,
  DownstreamData: 2,
  UpstreamData: 3,
  HttpCallResponseBody: 4,
  GrpcReceiveBuffer: 5,
  VmConfiguration: 6,
  PluginConfiguration: 7,
  CallData: 8,
} as const;

export const LogLevel = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 } as const;
export type LogLevelName = keyof typeof LogLevel;
export const LOG_LEVEL_NAMES: readonly LogLevelName[] = ['trace', 'debug', 'info', 'warn', 'error', 'critical'];

export const MetricType = { Counter: 0, Gauge: 1, Histogram: 2 } as const;

/** FilterHeadersStatus / FilterDataStatus / FilterTrailersStatus values the host acts on. */
export const Action = { Continue: 0, StopIteration: 1 } as const;

export const StreamType = { Request: 0, Response: 1, Downstream: 2, Upstream: 3 } as const;

/** The ABI versions a module may declare (by exporting a function with this name). */
export const ABI_VERSIONS = ['proxy_abi_version_0_2_1', 'proxy_abi_version_0_2_0', 'proxy_abi_version_0_1_0'] as const;
export type AbiVersion = '0.2.1' | '0.2.0' | '0.1.0';

/**
 * Every host function of ABI 0.1.0–0.2.1 Portico knows by name. Those not implemented answer
 * `Unimplemented` (see wasm/engine.ts `UNIMPLEMENTED`); any other `env` import a module names is
 * also bound to an Unimplemented stub so instantiation never fails on an unknown name.
 */
export const HOST_FUNCTIONS = [
  'proxy_log',
  'proxy_get_log_level',
  'proxy_get_current_time_nanoseconds',
  'proxy_set_tick_period_milliseconds',
  'proxy_get_status',
  'proxy_get_configuration',
  'proxy_get_property',
  'proxy_set_property',
  'proxy_continue_stream',
  'proxy_close_stream',
  'proxy_continue_request',
  'proxy_continue_response',
  'proxy_send_local_response',
  'proxy_clear_route_cache',
  'proxy_get_shared_data',
  'proxy_set_shared_data',
  'proxy_register_shared_queue',
  'proxy_resolve_shared_queue',
  'proxy_dequeue_shared_queue',
  'proxy_enqueue_shared_queue',
  'proxy_get_header_map_value',
  'proxy_add_header_map_value',
  'proxy_replace_header_map_value',
  'proxy_remove_header_map_value',
  'proxy_get_header_map_pairs',
  'proxy_set_header_map_pairs',
  'proxy_get_header_map_size',
  'proxy_get_buffer_bytes',
  'proxy_get_buffer_status',
  'proxy_set_buffer_bytes',
  'proxy_http_call',
  'proxy_grpc_call',
  'proxy_grpc_stream',
  'proxy_grpc_send',
  'proxy_grpc_cancel',
  'proxy_grpc_close',
  'proxy_define_metric',
  'proxy_increment_metric',
  'proxy_record_metric',
  'proxy_get_metric',
  'proxy_set_effective_context',
  'proxy_done',
  'proxy_call_foreign_function',
] as const;
