// A plugin that misbehaves on purpose, to test the host's isolation. pluginConfig:
//   {"at": "request_headers" | "response_headers" | "configure",
//    "do": "trap" | "loop" | "grow" | "reject" | "sleep" | "nap", "path": "/only/this/path"}
// trap: a Go panic (the runtime exits through WASI proc_exit) or, with "do": "unreachable", a nil
// function call that the wasm engine traps on; loop: spins forever; grow: allocates until memory
// runs out; reject: proxy_on_configure returns false; sleep: time.Sleep(1 minute) (WASI
// poll_oneoff); nap: time.Sleep(1 ms), then the request goes on. With "path", only requests for that path
// misbehave (so one VM can serve good and bad requests).
package main

import (
	"encoding/json"
	"time"
	"unsafe"

	"portico.local/wasmplugins/abi"
)

func main() {}

var cfg struct {
	At   string `json:"at"`
	Do   string `json:"do"`
	Path string `json:"path"`
}

var hoard [][]byte
var sink func()

func misbehave() {
	switch cfg.Do {
	case "trap":
		panic("misbehave: trap on purpose")
	case "unreachable":
		sink()
	case "loop":
		n := 0
		for {
			n++
		}
	case "sleep":
		time.Sleep(time.Minute)
	case "nap":
		time.Sleep(time.Millisecond)
	case "grow":
		for {
			hoard = append(hoard, make([]byte, 1<<20))
			hoard[len(hoard)-1][0] = 1
		}
	}
}

func shouldMisbehave(at string) bool {
	if cfg.At != at {
		return false
	}
	if cfg.Path != "" {
		p, _ := abi.Header(abi.RequestHeaders, ":path")
		return p == cfg.Path
	}
	return true
}

//go:wasmexport proxy_abi_version_0_2_1
func proxyAbiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) unsafe.Pointer { return abi.Allocate(size) }

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID uint32, vmConfigSize uint32) uint32 {
	return 1
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID uint32, size uint32) uint32 {
	raw, _ := abi.Buffer(abi.BufferPluginConfig, size)
	if err := json.Unmarshal(raw, &cfg); err != nil {
		abi.Log(abi.LogError, "misbehave: pluginConfig: "+err.Error())
		return 0
	}
	if cfg.At == "configure" {
		if cfg.Do == "reject" {
			return 0
		}
		misbehave()
	}
	return 1
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(id uint32, parent uint32) {}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(id uint32, n uint32, eos uint32) uint32 {
	if shouldMisbehave("request_headers") {
		misbehave()
	}
	abi.AddHeader(abi.RequestHeaders, "x-misbehave", "passed")
	return 0
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(id uint32, n uint32, eos uint32) uint32 {
	if cfg.At == "response_headers" {
		misbehave()
	}
	return 0
}

//go:wasmexport proxy_on_done
func proxyOnDone(id uint32) uint32 { return 1 }

//go:wasmexport proxy_on_log
func proxyOnLog(id uint32) {}

//go:wasmexport proxy_on_delete
func proxyOnDelete(id uint32) {}
