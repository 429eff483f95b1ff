// Header-adding filter on the raw proxy-wasm ABI with Go's standard toolchain.
// pluginConfig: {"header": "x-wasm-order", "value": "go"} — added to the upstream request and
// to the downstream response; optionally "remove": ["x-a", ...] (request headers removed) and
// "replace": {"x-b": "v"} (request headers set to one value).
package main

import (
	"encoding/json"
	"unsafe"

	"portico.local/wasmplugins/abi"
)

func main() {}

var header = "x-wasm-header"
var value = ""
var remove []string
var replace map[string]string

//go:wasmexport proxy_abi_version_0_2_1
func proxyAbiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) unsafe.Pointer { return abi.Allocate(size) }

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID uint32, vmConfigSize uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID uint32, size uint32) uint32 {
	raw, _ := abi.Buffer(abi.BufferPluginConfig, size)
	var cfg struct {
		Header  string            `json:"header"`
		Value   string            `json:"value"`
		Remove  []string          `json:"remove"`
		Replace map[string]string `json:"replace"`
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			abi.Log(abi.LogError, "header: pluginConfig: "+err.Error())
			return 0
		}
	}
	if cfg.Header != "" {
		header = cfg.Header
	}
	value = cfg.Value
	remove = cfg.Remove
	replace = cfg.Replace
	return 1
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(id uint32, parent uint32) {}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(id uint32, n uint32, eos uint32) uint32 {
	for _, h := range remove {
		abi.RemoveHeader(abi.RequestHeaders, h)
	}
	for h, v := range replace {
		abi.ReplaceHeader(abi.RequestHeaders, h, v)
	}
	abi.AddHeader(abi.RequestHeaders, header, value)
	return 0
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(id uint32, n uint32, eos uint32) uint32 {
	abi.AddHeader(abi.ResponseHeaders, header, value)
	return 0
}

//go:wasmexport proxy_on_done
func proxyOnDone(id uint32) uint32 { return 1 }

//go:wasmexport proxy_on_log
func proxyOnLog(id uint32) {}

//go:wasmexport proxy_on_delete
func proxyOnDelete(id uint32) {}
