// Body and trailer filter (AssemblyScript + @solo-io/proxy-runtime).
// pluginConfig: {"reject": "forbidden", "find": "productpage", "replace": "PRODUCTPAGE (via wasm)"}
//
// Request: the headers callback returns StopIteration while a body follows; the body callback
// buffers (StopIterationAndBuffer) until end_of_stream, then answers 403 through
// proxy_send_local_response when the body contains `reject`, else upper-cases a body starting
// with "upper:", adds `x-request-body-size` and continues (headers and body go on together).
// A request trailer `x-checksum` is copied into the request header `x-trailer-checksum`.
// Response: the headers callback stops (the headers wait), the body is buffered to its end and every `find` replaced by `replace`
// (proxy_set_buffer_bytes on HttpResponseBody); response trailers get `x-wasm-trailer: seen`, and
// when trailers follow (no end_of_stream body call) the buffered body is rewritten there.
//
// SDK bug (proxy-runtime 0.1.8): imports.ts declares `proxy_set_buffer_status` bound to the
// host's "proxy_get_buffer_status" and never imports proxy_set_buffer_bytes, so the SDK cannot
// replace a body; the import is declared here instead.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues, FilterTrailersStatusValues,
  stream_context, log, LogLevelValues, send_local_response, GrpcStatusValues, Headers,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, get_buffer_status, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";
import { parseJSON } from "./json";

@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(typ: u32, start: u32, length: u32, data: usize, size: usize): u32;

function setBuffer(typ: BufferTypeValues, start: u32, length: u32, text: string): u32 {
  const b = String.UTF8.encode(text);
  return proxy_set_buffer_bytes(typ as u32, start, length, changetype<usize>(b), b.byteLength);
}

/** Every `find` replaced (String#replaceAll of AssemblyScript 0.14.13 traps with "memory access out of bounds"). */
function replaceEvery(text: string, find: string, by: string): string {
  let out = "";
  let from = 0;
  for (;;) {
    const at = text.indexOf(find, from);
    if (at < 0) break;
    out += text.substring(from, at) + by;
    from = at + find.length;
  }
  return out + text.substring(from);
}

function bodyText(typ: BufferTypeValues, size: u32): string {
  return String.UTF8.decode(get_buffer_bytes(typ, 0, size));
}

class BodyRoot extends RootContext {
  reject: string = "forbidden";
  find: string = "";
  replace: string = "";

  onConfigure(configuration_size: u32): bool {
    super.onConfigure(configuration_size);
    const cfg = parseJSON(this.getConfiguration());
    if (cfg === null) {
      log(LogLevelValues.error, "body: pluginConfig is not JSON");
      return false;
    }
    this.reject = cfg.str("reject", this.reject);
    this.find = cfg.str("find", "");
    this.replace = cfg.str("replace", "");
    return true;
  }

  createContext(context_id: u32): Context {
    return new Body(context_id, this);
  }
}

class Body extends Context {
  conf: BodyRoot;
  constructor(context_id: u32, root_context: BodyRoot) {
    super(context_id, root_context);
    this.conf = root_context;
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // Hold the headers until the body has been seen (it may change them or answer instead).
    return end_of_stream ? FilterHeadersStatusValues.Continue : FilterHeadersStatusValues.StopIteration;
  }

  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const size = body_buffer_length as u32;
    const text = bodyText(BufferTypeValues.HttpRequestBody, size);
    if (text.includes(this.conf.reject)) {
      const headers: Headers = [];
      send_local_response(403, "body_rejected", String.UTF8.encode("body rejected by wasm\n"), headers, GrpcStatusValues.PermissionDenied);
      return FilterDataStatusValues.StopIterationNoBuffer;
    }
    if (text.startsWith("upper:")) setBuffer(BufferTypeValues.HttpRequestBody, 0, size, text.toUpperCase());
    stream_context.headers.request.add("x-request-body-size", size.toString());
    return FilterDataStatusValues.Continue;
  }

  onRequestTrailers(a: u32): FilterTrailersStatusValues {
    const sum = stream_context.trailers.request.get("x-checksum");
    if (sum != "") stream_context.headers.request.add("x-trailer-checksum", sum);
    return FilterTrailersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // Hold the headers until the body is through: it changes the body's length.
    return FilterHeadersStatusValues.StopIteration;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    if (this.conf.find == "") return FilterDataStatusValues.Continue;
    const size = body_buffer_length as u32;
    const text = bodyText(BufferTypeValues.HttpResponseBody, size);
    if (text.includes(this.conf.find)) setBuffer(BufferTypeValues.HttpResponseBody, 0, size, replaceEvery(text, this.conf.find, this.conf.replace));
    return FilterDataStatusValues.Continue;
  }

  onResponseTrailers(a: u32): FilterTrailersStatusValues {
    stream_context.trailers.response.add("x-wasm-trailer", "seen");
    // With trailers the last body call is not end_of_stream: the buffered body is rewritten here.
    const size = get_buffer_status(BufferTypeValues.HttpResponseBody).length as u32;
    if (this.conf.find != "" && size > 0) {
      const text = bodyText(BufferTypeValues.HttpResponseBody, size);
      if (text.includes(this.conf.find)) setBuffer(BufferTypeValues.HttpResponseBody, 0, size, replaceEvery(text, this.conf.find, this.conf.replace));
    }
    return FilterTrailersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new BodyRoot(context_id); }, "body");
