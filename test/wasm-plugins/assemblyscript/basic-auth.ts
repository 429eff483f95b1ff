// Basic-auth filter (AssemblyScript + @solo-io/proxy-runtime) in the configuration form of
// Istio's basic_auth extension (istio-ecosystem/wasm-extensions, extensions/basic_auth):
//
//   {"basic_auth_rules": [
//      {"prefix": "/productpage", "request_methods": ["GET", "POST"],
//       "credentials": ["ok:test", "YWRtaW4zOmFkbWluMw=="]}]}
//
// A rule matches by exact/prefix/suffix path (query stripped) and method; a matching request
// without one of the rule's credentials gets 401 with `WWW-Authenticate: Basic realm=istio`
// through proxy_send_local_response. Credentials are `user:password` or already base64.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, log, LogLevelValues,
  send_local_response, GrpcStatusValues, HeaderPair, Headers,
} from "@solo-io/proxy-runtime";
import { parseJSON, Kind } from "./json";
import { base64Encode } from "./base64";

const enum Match { Exact, Prefix, Suffix }

class Rule {
  kind: Match = Match.Prefix;
  pattern: string = "/";
  methods: Array<string> = new Array<string>();
  /** Accepted `Basic` tokens (base64 of user:password). */
  tokens: Array<string> = new Array<string>();

  matches(path: string, method: string): bool {
    if (this.kind == Match.Exact) { if (path != this.pattern) return false; }
    else if (this.kind == Match.Prefix) { if (!path.startsWith(this.pattern)) return false; }
    else if (!path.endsWith(this.pattern)) return false;
    if (this.methods.length == 0) return true;
    for (let i = 0; i < this.methods.length; i++) if (this.methods[i] == method) return true;
    return false;
  }
}

/** Compares without an early exit on the first differing character. */
function sameToken(a: string, b: string): bool {
  if (a.length != b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff == 0;
}

class BasicAuthRoot extends RootContext {
  rules: Array<Rule> = new Array<Rule>();

  onConfigure(configuration_size: u32): bool {
    super.onConfigure(configuration_size);
    const cfg = parseJSON(this.getConfiguration());
    if (cfg === null) {
      log(LogLevelValues.error, "basic_auth: pluginConfig is not JSON");
      return false;
    }
    const list = cfg.get("basic_auth_rules");
    if (list === null || list.kind != Kind.Arr) {
      log(LogLevelValues.error, "basic_auth: basic_auth_rules is required");
      return false;
    }
    for (let i = 0; i < list.arr.length; i++) {
      const r = list.arr[i];
      const rule = new Rule();
      if (r.get("exact") !== null) { rule.kind = Match.Exact; rule.pattern = r.str("exact", ""); }
      else if (r.get("suffix") !== null) { rule.kind = Match.Suffix; rule.pattern = r.str("suffix", ""); }
      else { rule.kind = Match.Prefix; rule.pattern = r.str("prefix", "/"); }
      rule.methods = r.strs("request_methods");
      const creds = r.strs("credentials");
      for (let j = 0; j < creds.length; j++) {
        const c = creds[j];
        rule.tokens.push(c.includes(":") ? base64Encode(String.UTF8.encode(c)) : c);
      }
      this.rules.push(rule);
    }
    return true;
  }

  createContext(context_id: u32): Context {
    return new BasicAuth(context_id, this);
  }
}

class BasicAuth extends Context {
  conf: BasicAuthRoot;
  constructor(context_id: u32, root_context: BasicAuthRoot) {
    super(context_id, root_context);
    this.conf = root_context;
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let path = stream_context.headers.request.get(":path");
    const q = path.indexOf("?");
    if (q >= 0) path = path.substring(0, q);
    const method = stream_context.headers.request.get(":method");
    const auth = stream_context.headers.request.get("authorization");
    let token = "";
    if (auth.startsWith("Basic ")) token = auth.substring(6).trim();
    for (let i = 0; i < this.conf.rules.length; i++) {
      const rule = this.conf.rules[i];
      if (!rule.matches(path, method)) continue;
      let ok = false;
      for (let j = 0; j < rule.tokens.length; j++) {
        if (token.length > 0 && sameToken(token, rule.tokens[j])) ok = true;
      }
      if (!ok) {
        const headers: Headers = [];
        headers.push(new HeaderPair(String.UTF8.encode("www-authenticate"), String.UTF8.encode("Basic realm=istio")));
        send_local_response(401, "basic_auth_unauthorized", String.UTF8.encode("Unauthorized\n"), headers, GrpcStatusValues.Unauthenticated);
        return FilterHeadersStatusValues.StopIteration;
      }
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new BasicAuthRoot(context_id); }, "basic_auth");
