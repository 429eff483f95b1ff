// Header-adding filter (AssemblyScript + @solo-io/proxy-runtime).
// pluginConfig: {"header": "x-wasm-order", "value": "first"}
// Adds `header: value` to the request going upstream and to the response going downstream,
// so two instances in a chain show the request order and the (reverse) response order.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, log, LogLevelValues,
} from "@solo-io/proxy-runtime";
import { parseJSON } from "./json";

class AddHeaderRoot extends RootContext {
  header: string = "x-wasm-header";
  value: string = "";

  onConfigure(configuration_size: u32): bool {
    super.onConfigure(configuration_size);
    const cfg = parseJSON(this.getConfiguration());
    if (cfg === null) {
      log(LogLevelValues.error, "add_header: pluginConfig is not JSON");
      return false;
    }
    this.header = cfg.str("header", this.header);
    this.value = cfg.str("value", "");
    return true;
  }

  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }
}

class AddHeader extends Context {
  conf: AddHeaderRoot;
  constructor(context_id: u32, root_context: AddHeaderRoot) {
    super(context_id, root_context);
    this.conf = root_context;
  }
  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add(this.conf.header, this.conf.value);
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add(this.conf.header, this.conf.value);
    return FilterHeadersStatusValues.Continue;
  }
}

// The SDK finds the root context by the plugin_root_id property (WasmPlugin pluginName).
registerRootContext((context_id: u32) => { return new AddHeaderRoot(context_id); }, "add_header");
