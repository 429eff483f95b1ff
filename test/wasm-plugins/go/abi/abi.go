// Package abi is a minimal proxy-wasm ABI 0.2.1 binding for Go's standard toolchain
// (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared): host functions imported with
// //go:wasmimport, and helpers for the memory the host hands back. The plugins' main packages
// export the proxy_on_* callbacks with //go:wasmexport.
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
package abi

import (
	"encoding/binary"
	"unsafe"
)

// Status values of the ABI (WasmResult).
const (
	OK            = 0
	NotFound      = 1
	BadArgument   = 2
	Unimplemented = 12
	CasMismatch   = 8
	Empty         = 7
)

// Map and buffer types.
const (
	RequestHeaders      = 0
	ResponseHeaders     = 2
	HttpCallResponseHdr = 6
	BufferHttpCallBody  = 4
	BufferVMConfig      = 6
	BufferPluginConfig  = 7
)

// Log levels.
const (
	LogTrace = 0
	LogDebug = 1
	LogInfo  = 2
	LogWarn  = 3
	LogError = 4
)

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(typ uint32, start uint32, length uint32, ptr unsafe.Pointer, size unsafe.Pointer) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, ptr unsafe.Pointer, size unsafe.Pointer) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(typ uint32, ptr unsafe.Pointer, size unsafe.Pointer) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32, headers unsafe.Pointer, headersSize uint32, grpc int32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriod(ms uint32) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(key unsafe.Pointer, keySize uint32, ptr unsafe.Pointer, size unsafe.Pointer, cas unsafe.Pointer) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32, cas uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxyRegisterSharedQueue(name unsafe.Pointer, nameSize uint32, token unsafe.Pointer) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxyEnqueueSharedQueue(token uint32, val unsafe.Pointer, valSize uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxyDequeueSharedQueue(token uint32, ptr unsafe.Pointer, size unsafe.Pointer) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(typ uint32, name unsafe.Pointer, nameSize uint32, id unsafe.Pointer) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(id uint32, offset int64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(id uint32, value unsafe.Pointer) uint32

//go:wasmimport env proxy_http_call
func proxyHttpCall(upstream unsafe.Pointer, upstreamSize uint32, headers unsafe.Pointer, headersSize uint32, body unsafe.Pointer, bodySize uint32, trailers unsafe.Pointer, trailersSize uint32, timeout uint32, token unsafe.Pointer) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(path unsafe.Pointer, pathSize uint32, ptr unsafe.Pointer, size unsafe.Pointer) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTime(ns unsafe.Pointer) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(stream uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(id uint32) uint32

// Memory the host asked for through proxy_on_memory_allocate, kept reachable until read.
var allocs = map[uintptr][]byte{}

// Allocate backs proxy_on_memory_allocate.
func Allocate(size uint32) unsafe.Pointer {
	if size == 0 {
		size = 1
	}
	b := make([]byte, size)
	p := unsafe.Pointer(&b[0])
	allocs[uintptr(p)] = b
	return p
}

// take copies and releases a host-filled (pointer, size) pair.
func take(ptr uintptr, size uint32) []byte {
	if ptr == 0 {
		return nil
	}
	b, ok := allocs[ptr]
	delete(allocs, ptr)
	if !ok {
		return nil
	}
	out := make([]byte, size)
	copy(out, b[:size])
	return out
}

func strPtr(s string) (unsafe.Pointer, uint32) {
	if len(s) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func bytesPtr(b []byte) (unsafe.Pointer, uint32) {
	if len(b) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(&b[0]), uint32(len(b))
}

// Log writes a message at level.
func Log(level uint32, msg string) {
	p, n := strPtr(msg)
	proxyLog(level, p, n)
}

// Buffer returns bytes [0, size) of a buffer.
func Buffer(typ uint32, size uint32) ([]byte, uint32) {
	var ptr uintptr
	var n uint32
	st := proxyGetBufferBytes(typ, 0, size, unsafe.Pointer(&ptr), unsafe.Pointer(&n))
	return take(ptr, n), st
}

// Header returns a header's value and the call's status.
func Header(typ uint32, key string) (string, uint32) {
	var ptr uintptr
	var n uint32
	k, kn := strPtr(key)
	st := proxyGetHeaderMapValue(typ, k, kn, unsafe.Pointer(&ptr), unsafe.Pointer(&n))
	return string(take(ptr, n)), st
}

// AddHeader appends a header value.
func AddHeader(typ uint32, key, value string) uint32 {
	k, kn := strPtr(key)
	v, vn := strPtr(value)
	return proxyAddHeaderMapValue(typ, k, kn, v, vn)
}

// ReplaceHeader sets a header to one value.
func ReplaceHeader(typ uint32, key, value string) uint32 {
	k, kn := strPtr(key)
	v, vn := strPtr(value)
	return proxyReplaceHeaderMapValue(typ, k, kn, v, vn)
}

// RemoveHeader removes every value of a header.
func RemoveHeader(typ uint32, key string) uint32 {
	k, kn := strPtr(key)
	return proxyRemoveHeaderMapValue(typ, k, kn)
}

// Pairs encodes headers in the ABI's map format: count, (key len, value len)*, NUL-terminated data.
func Pairs(kv [][2]string) []byte {
	size := 4 + 8*len(kv)
	for _, p := range kv {
		size += len(p[0]) + len(p[1]) + 2
	}
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, uint32(len(kv)))
	off := 4
	for _, p := range kv {
		binary.LittleEndian.PutUint32(b[off:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(b[off+4:], uint32(len(p[1])))
		off += 8
	}
	for _, p := range kv {
		off += copy(b[off:], p[0]) + 1
		off += copy(b[off:], p[1]) + 1
	}
	return b
}

// ParsePairs decodes the ABI's map format.
func ParsePairs(b []byte) [][2]string {
	if len(b) < 4 {
		return nil
	}
	n := int(binary.LittleEndian.Uint32(b))
	off := 4 + 8*n
	out := make([][2]string, 0, n)
	for i := 0; i < n; i++ {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		k := string(b[off : off+kl])
		off += kl + 1
		v := string(b[off : off+vl])
		off += vl + 1
		out = append(out, [2]string{k, v})
	}
	return out
}

// HeaderPairs returns all headers of a map.
func HeaderPairs(typ uint32) [][2]string {
	var ptr uintptr
	var n uint32
	if proxyGetHeaderMapPairs(typ, unsafe.Pointer(&ptr), unsafe.Pointer(&n)) != OK {
		return nil
	}
	return ParsePairs(take(ptr, n))
}

// SendLocalResponse answers the request from the plugin.
func SendLocalResponse(status uint32, details string, body string, headers [][2]string) uint32 {
	d, dn := strPtr(details)
	bd, bn := strPtr(body)
	h, hn := bytesPtr(Pairs(headers))
	return proxySendLocalResponse(status, d, dn, bd, bn, h, hn, -1)
}

// SetTickPeriod starts (or with 0 stops) the root context's timer.
func SetTickPeriod(ms uint32) uint32 { return proxySetTickPeriod(ms) }

// SharedData reads a key of the VM-wide shared data.
func SharedData(key string) ([]byte, uint32, uint32) {
	var ptr uintptr
	var n, cas uint32
	k, kn := strPtr(key)
	st := proxyGetSharedData(k, kn, unsafe.Pointer(&ptr), unsafe.Pointer(&n), unsafe.Pointer(&cas))
	return take(ptr, n), cas, st
}

// SetSharedData writes a key; cas 0 writes unconditionally.
func SetSharedData(key string, value []byte, cas uint32) uint32 {
	k, kn := strPtr(key)
	v, vn := bytesPtr(value)
	return proxySetSharedData(k, kn, v, vn, cas)
}

// RegisterQueue registers a shared queue owned by this VM.
func RegisterQueue(name string) (uint32, uint32) {
	var token uint32
	p, n := strPtr(name)
	st := proxyRegisterSharedQueue(p, n, unsafe.Pointer(&token))
	return token, st
}

// Enqueue adds an item to a shared queue.
func Enqueue(token uint32, value []byte) uint32 {
	v, vn := bytesPtr(value)
	return proxyEnqueueSharedQueue(token, v, vn)
}

// Dequeue takes the oldest item of a shared queue.
func Dequeue(token uint32) ([]byte, uint32) {
	var ptr uintptr
	var n uint32
	st := proxyDequeueSharedQueue(token, unsafe.Pointer(&ptr), unsafe.Pointer(&n))
	return take(ptr, n), st
}

// DefineMetric defines a counter (0), gauge (1) or histogram (2).
func DefineMetric(typ uint32, name string) (uint32, uint32) {
	var id uint32
	p, n := strPtr(name)
	st := proxyDefineMetric(typ, p, n, unsafe.Pointer(&id))
	return id, st
}

// IncrementMetric adds offset to a metric.
func IncrementMetric(id uint32, offset int64) uint32 { return proxyIncrementMetric(id, offset) }

// Metric reads a metric's value.
func Metric(id uint32) (uint64, uint32) {
	var v uint64
	st := proxyGetMetric(id, unsafe.Pointer(&v))
	return v, st
}

// HttpCall starts a call to a cluster; the answer arrives in proxy_on_http_call_response.
func HttpCall(cluster string, headers [][2]string, body string, timeoutMs uint32) (uint32, uint32) {
	var token uint32
	c, cn := strPtr(cluster)
	h, hn := bytesPtr(Pairs(headers))
	bd, bn := strPtr(body)
	st := proxyHttpCall(c, cn, h, hn, bd, bn, nil, 0, timeoutMs, unsafe.Pointer(&token))
	return token, st
}

// Property reads a property by its path segments (joined with NUL, as the ABI wants).
func Property(path ...string) ([]byte, uint32) {
	joined := ""
	for i, p := range path {
		if i > 0 {
			joined += "\x00"
		}
		joined += p
	}
	var ptr uintptr
	var n uint32
	p, pn := strPtr(joined)
	st := proxyGetProperty(p, pn, unsafe.Pointer(&ptr), unsafe.Pointer(&n))
	return take(ptr, n), st
}

// Now returns the host's clock in nanoseconds.
func Now() uint64 {
	var ns uint64
	proxyGetCurrentTime(unsafe.Pointer(&ns))
	return ns
}

// ContinueRequest resumes a request paused with StopIteration.
func ContinueRequest() uint32 { return proxyContinueStream(0) }

// SetEffectiveContext makes later header calls act on context id.
func SetEffectiveContext(id uint32) uint32 { return proxySetEffectiveContext(id) }
