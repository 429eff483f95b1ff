// A stateful plugin exercising the rest of the ABI. pluginConfig:
//   {"tick_ms": 20, "cluster": "outbound|8080||auth.default.svc.cluster.local", "call_path": "/check"}
// - shared data: the root context counts ticks in key "stateful.ticks" (compare-and-swap), and
//   every request increments "stateful.requests";
// - tick timer: proxy_set_tick_period_milliseconds(tick_ms);
// - metric: counter "stateful_requests" incremented per request, gauge "stateful_ticks";
// - shared queue "stateful.q": each request enqueues its path; proxy_on_queue_ready drains it
//   into "stateful.dequeued";
// - proxy_http_call: a request for call_path pauses (StopIteration), calls GET /echo on cluster,
//   and resumes with x-call-status (the answer's :status) and x-call-body on the upstream request.
// Every response gets x-stateful-ticks, x-stateful-requests, x-stateful-dequeued,
// x-stateful-metric (the counter's value) and x-stateful-props (selected properties).
package main

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"unsafe"

	"portico.local/wasmplugins/abi"
)

func main() {}

var cfg struct {
	TickMs   uint32 `json:"tick_ms"`
	Cluster  string `json:"cluster"`
	CallPath string `json:"call_path"`
}

var requestsMetric, ticksMetric, queueToken uint32
var pending = map[uint32]uint32{} // http call token -> context id

//go:wasmexport proxy_abi_version_0_2_1
func proxyAbiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) unsafe.Pointer { return abi.Allocate(size) }

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID uint32, vmConfigSize uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID uint32, size uint32) uint32 {
	raw, _ := abi.Buffer(abi.BufferPluginConfig, size)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			abi.Log(abi.LogError, "stateful: pluginConfig: "+err.Error())
			return 0
		}
	}
	requestsMetric, _ = abi.DefineMetric(0, "stateful_requests")
	ticksMetric, _ = abi.DefineMetric(1, "stateful_ticks")
	queueToken, _ = abi.RegisterQueue("stateful.q")
	if cfg.TickMs > 0 {
		abi.SetTickPeriod(cfg.TickMs)
	}
	abi.Log(abi.LogInfo, "stateful: configured")
	return 1
}

func bump(key string) uint64 {
	for {
		raw, cas, _ := abi.SharedData(key)
		n, _ := strconv.ParseUint(string(raw), 10, 64)
		n++
		if abi.SetSharedData(key, []byte(strconv.FormatUint(n, 10)), cas) != abi.CasMismatch {
			return n
		}
	}
}

func shared(key string) string {
	raw, _, st := abi.SharedData(key)
	if st != abi.OK {
		return "0"
	}
	return string(raw)
}

//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) {
	n := bump("stateful.ticks")
	abi.IncrementMetric(ticksMetric, 1)
	_ = n
}

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootID uint32, token uint32) {
	for {
		_, st := abi.Dequeue(token)
		if st != abi.OK {
			return
		}
		bump("stateful.dequeued")
	}
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(id uint32, parent uint32) {}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(id uint32, n uint32, eos uint32) uint32 {
	bump("stateful.requests")
	abi.IncrementMetric(requestsMetric, 1)
	path, _ := abi.Header(abi.RequestHeaders, ":path")
	abi.Enqueue(queueToken, []byte(path))
	if cfg.CallPath != "" && path == cfg.CallPath {
		token, st := abi.HttpCall(cfg.Cluster, [][2]string{{":method", "GET"}, {":path", "/echo"}, {":authority", "stateful"}}, "", 5000)
		if st != abi.OK {
			abi.AddHeader(abi.RequestHeaders, "x-call-status", "failed-"+strconv.Itoa(int(st)))
			return 0
		}
		pending[token] = id
		return 1 // StopIteration until the call answers
	}
	return 0
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHttpCallResponse(rootID uint32, token uint32, headers uint32, bodySize uint32, trailers uint32) {
	id, ok := pending[token]
	if !ok {
		return
	}
	delete(pending, token)
	status, _ := abi.Header(abi.HttpCallResponseHdr, ":status")
	body, _ := abi.Buffer(abi.BufferHttpCallBody, bodySize)
	abi.SetEffectiveContext(id)
	abi.AddHeader(abi.RequestHeaders, "x-call-status", status)
	abi.AddHeader(abi.RequestHeaders, "x-call-body", string(body))
	abi.ContinueRequest()
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(id uint32, n uint32, eos uint32) uint32 {
	abi.AddHeader(abi.ResponseHeaders, "x-stateful-ticks", shared("stateful.ticks"))
	abi.AddHeader(abi.ResponseHeaders, "x-stateful-requests", shared("stateful.requests"))
	abi.AddHeader(abi.ResponseHeaders, "x-stateful-dequeued", shared("stateful.dequeued"))
	v, _ := abi.Metric(requestsMetric)
	abi.AddHeader(abi.ResponseHeaders, "x-stateful-metric", strconv.FormatUint(v, 10))
	props := ""
	// Integers arrive as 8-byte little-endian int64 (Envoy's encoding); printed in decimal here.
	for _, p := range [][]string{{"plugin_name"}, {"plugin_root_id"}, {"request", "path"}, {"request", "method"}, {"source", "address"}, {"response", "code"}, {"source", "port"}, {"node", "metadata", "NAME"}, {"request", "nope"}} {
		raw, st := abi.Property(p...)
		if st == abi.OK && (p[len(p)-1] == "code" || p[len(p)-1] == "port") && len(raw) == 8 {
			props += strconv.FormatUint(binary.LittleEndian.Uint64(raw), 10)
		} else if st == abi.OK {
			props += string(raw)
		} else {
			props += "!" + strconv.Itoa(int(st))
		}
		props += ";"
	}
	abi.AddHeader(abi.ResponseHeaders, "x-stateful-props", props)
	return 0
}

//go:wasmexport proxy_on_done
func proxyOnDone(id uint32) uint32 { return 1 }

//go:wasmexport proxy_on_log
func proxyOnLog(id uint32) {}

//go:wasmexport proxy_on_delete
func proxyOnDelete(id uint32) {}
