/**
 * The budget instrumentation (wasm/meter.ts) on modules assembled from WebAssembly text with wabt:
 * a metered module computes what the original computes (every renumbered index, every decoded
 * instruction family), and a call that runs past its deadline traps, through loops and through
 * recursion that has no loop at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import wabtInit from 'wabt';
import { meter, MeterError, FUEL_EXPORT } from '../../wasm/meter.ts';
import { CallBudget } from '../../wasm/budget.ts';
import { startVm } from '../../wasm/vm.ts';
import { SharedStore } from '../../wasm/shared.ts';

const wabt = await wabtInit();

function wat(src: string, features: Record<string, boolean> = {}): Uint8Array {
  const m = wabt.parseWat('test.wat', src, features);
  try {
    m.resolveNames();
    m.validate();
    return m.toBinary({ write_debug_names: true }).buffer;
  } finally {
    m.destroy();
  }
}

type Exports = Record<string, (...a: number[]) => number>;

function instantiate(bytes: Uint8Array, budget?: CallBudget, env: Record<string, unknown> = {}): Exports {
  const imports: WebAssembly.Imports = { env: { add1: (x: number) => x + 1, ...env } as WebAssembly.ModuleImports };
  if (budget) imports.portico = { refuel: budget.refuel };
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports);
  if (budget) budget.fuel = inst.exports[FUEL_EXPORT] as WebAssembly.Global;
  return inst.exports as unknown as Exports;
}

// One module exercising what the rewrite renumbers or must decode: an imported function before
// the defined ones, a start function, a table filled by an active element segment and by
// expression elements, a funcref global initialised with ref.func, call / call_indirect /
// return_call, a loop with a parameter (multi-value block type), br_table, typed select, SIMD,
// bulk memory, sign extension, saturating truncation and exception handling (legacy try/catch).
const KITCHEN = `
(module
  (import "env" "add1" (func $add1 (param i32) (result i32)))
  (type $bin (func (param i32 i32) (result i32)))
  (type $loopty (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 4 funcref)
  (elem (table $t) (i32.const 0) func $add $sub)
  (elem (table $t) (i32.const 2) funcref (ref.func $mul) (ref.func $add))
  (global $g (mut i32) (i32.const 0))
  (global $fr funcref (ref.func $sub))
  (tag $e (param i32))
  (start $init)
  (func $init (global.set $g (i32.const 7)))
  (func $add (type $bin) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $bin) (i32.sub (local.get 0) (local.get 1)))
  (func $mul (type $bin) (i32.mul (local.get 0) (local.get 1)))
  (func (export "started") (result i32) (global.get $g))
  (func (export "indirect") (param i32 i32 i32) (result i32)
    (call_indirect $t (type $bin) (local.get 1) (local.get 2) (local.get 0)))
  (func (export "viaimport") (param i32) (result i32) (call $add1 (call $add1 (local.get 0))))
  (func $tail (export "tail") (param i32) (result i32) (return_call $add1 (local.get 0)))
  (func (export "sumto") (param $n i32) (result i32)
    (local $acc i32)
    (local.get $n)
    (loop $l (type $loopty)
      (local.set $acc (i32.add (local.get $acc)))
      (local.get $acc)
      (drop)
      (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
      (local.get $n)
      (br_if $l)
    )
    (drop)
    (local.get $acc))
  (func $fact (export "fact") (param i32) (result i32)
    (if (result i32) (i32.le_s (local.get 0) (i32.const 1))
      (then (i32.const 1))
      (else (i32.mul (local.get 0) (call $fact (i32.sub (local.get 0) (i32.const 1)))))))
  (func (export "table") (param i32) (result i32)
    (block $c (block $b (block $a (br_table $a $b $c (local.get 0))) (return (i32.const 10))) (return (i32.const 20)))
    (i32.const 30))
  (func (export "sel") (param i32) (result i32) (select (result i32) (i32.const 5) (i32.const 6) (local.get 0)))
  (func (export "simd") (param i32) (result i32)
    (i32x4.extract_lane 2 (i32x4.add (i32x4.splat (local.get 0)) (v128.const i32x4 1 2 3 4))))
  (func (export "bulk") (param i32) (result i32)
    (memory.fill (i32.const 100) (local.get 0) (i32.const 8))
    (memory.copy (i32.const 200) (i32.const 100) (i32.const 8))
    (i32.load8_u offset=3 (i32.const 200)))
  (func (export "signext") (param i32) (result i32) (i32.extend8_s (local.get 0)))
  (func (export "sat") (result i32) (i32.trunc_sat_f32_s (f32.const 3e10)))
  (func (export "frglobal") (param i32 i32) (result i32)
    (table.set $t (i32.const 3) (global.get $fr))
    (call_indirect $t (type $bin) (local.get 0) (local.get 1) (i32.const 3)))
  (func (export "catch") (param i32) (result i32)
    (try (result i32)
      (do (throw $e (local.get 0)))
      (catch $e (i32.add (i32.const 1)))))
  (func $boom (export "boom") (unreachable))
)`;

const FEATURES = { exceptions: true, tail_call: true, multi_value: true, simd: true, bulk_memory: true, reference_types: true, sat_float_to_int: true, sign_extension: true };

test('a metered module computes what the original does (renumbered indices, every instruction family decoded)', () => {
  const original = wat(KITCHEN, FEATURES);
  const metered = meter(original);
  assert.ok(WebAssembly.validate(metered));
  const a = instantiate(original);
  const budget = new CallBudget(1000);
  const b = instantiate(metered, budget);
  const cases: [string, number[]][] = [
    ['started', []], ['indirect', [0, 7, 3]], ['indirect', [1, 7, 3]], ['indirect', [2, 7, 3]], ['indirect', [3, 7, 3]],
    ['viaimport', [40]], ['tail', [9]], ['sumto', [100]], ['fact', [10]], ['table', [0]], ['table', [1]], ['table', [2]], ['table', [9]],
    ['sel', [0]], ['sel', [1]], ['simd', [10]], ['bulk', [0xab]], ['signext', [0xff]], ['sat', []], ['frglobal', [9, 4]], ['catch', [41]],
  ];
  budget.begin();
  for (const [name, args] of cases) assert.equal(b[name]!(...args), a[name]!(...args), `${name}(${args.join(', ')})`);
  budget.end();
  assert.equal(b.started!(), 7);
  assert.equal(b.frglobal!(9, 4), 5);
  // The name section follows the renumbering: a trap's stack still names the function.
  assert.throws(() => b.boom!(), (e: Error) => e instanceof WebAssembly.RuntimeError && /boom/.test(e.stack ?? ''));
});

test('a metered call that loops past its deadline traps, and the next call runs normally', () => {
  const bytes = meter(wat(`(module
    (func (export "spin") (loop $l (br $l)))
    (func (export "one") (result i32) (i32.const 1)))`));
  const budget = new CallBudget(20);
  const e = instantiate(bytes, budget);
  budget.begin();
  assert.throws(() => e.spin!(), WebAssembly.RuntimeError);
  assert.equal(budget.exceeded, true);
  budget.end();
  budget.begin();
  assert.equal(e.one!(), 1);
  assert.equal(budget.exceeded, false);
  budget.end();
});

test('recursion with no loop in it is metered at function entry (exponential fib traps at the deadline)', () => {
  const src = `(module
    (func $fib (export "fib") (param i32) (result i32)
      (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
        (then (local.get 0))
        (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1))) (call $fib (i32.sub (local.get 0) (i32.const 2))))))))`;
  const budget = new CallBudget(20);
  const e = instantiate(meter(wat(src)), budget);
  budget.begin();
  assert.equal(e.fib!(20), 6765);
  // fib(60) would take hours
  assert.throws(() => e.fib!(60), WebAssembly.RuntimeError);
  assert.equal(budget.exceeded, true);
  budget.end();
});

test('mutual recursion with no loop is metered (a check breaks every cycle of calls)', () => {
  // $a(n) calls $b(n-1) twice and $b(n) calls $c(n-1) twice, $c calls $a: 2^n calls, shallow stack.
  const step = (f: string, g: string): string => `(func $${f} (param i32) (result i32)
      (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 1))
        (else (i32.add (call $${g} (i32.sub (local.get 0) (i32.const 1))) (call $${g} (i32.sub (local.get 0) (i32.const 1)))))))`;
  const budget = new CallBudget(20);
  const e = instantiate(meter(wat(`(module ${step('a', 'b')} ${step('b', 'c')} ${step('c', 'a')} (export "a" (func $a)))`)), budget);
  budget.begin();
  assert.equal(e.a!(10), 1024);
  assert.throws(() => e.a!(60), WebAssembly.RuntimeError);
  assert.equal(budget.exceeded, true);
  budget.end();
});

test('a loop-free, recursion-free chain of calls that fans out is metered too (f0 calls f1 twice, f1 calls f2 twice, ...)', () => {
  // 2^44 calls with no loop and no cycle: only the fan-out rule of entryChecks puts a check in it.
  const depth = 44;
  const funcs = Array.from({ length: depth }, (_, i) =>
    i === depth - 1 ? `(func $f${i} (result i32) (i32.const 1))` : `(func $f${i} (result i32) (i32.add (call $f${i + 1}) (call $f${i + 1})))`);
  const budget = new CallBudget(20);
  const e = instantiate(meter(wat(`(module ${funcs.join(' ')} (export "f0" (func $f0)) (export "f30" (func $f30)))`)), budget);
  budget.begin();
  assert.equal(e.f30!(), 2 ** (depth - 1 - 30));
  assert.throws(() => e.f0!(), WebAssembly.RuntimeError);
  assert.equal(budget.exceeded, true);
  budget.end();
});

test('the fuel check cannot be caught by the module (a trap, not an exception)', () => {
  const src = `(module
    (import "env" "add1" (func $add1 (param i32) (result i32)))
    (func $spin (loop $l (br $l)))
    (func (export "guarded") (result i32)
      (try (result i32) (do (call $spin) (i32.const 0)) (catch_all (i32.const 1)))))`;
  const budget = new CallBudget(20);
  const e = instantiate(meter(wat(src, { exceptions: true })), budget);
  budget.begin();
  assert.throws(() => e.guarded!(), WebAssembly.RuntimeError);
  budget.end();
});

test('instructions Node cannot run yet are still decoded (try_table, relaxed SIMD, atomics)', () => {
  const src = `(module
    (memory 1 1)
    (func (export "f") (param v128) (result i32)
      (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 1)))
      (atomic.fence)
      (drop (i32x4.relaxed_trunc_f32x4_s (local.get 0)))
      (block $h (try_table (catch_all $h) (nop)))
      (i32.const 1)))`;
  const bytes = wat(src, { exceptions: true, threads: true, relaxed_simd: true, simd: true });
  const metered = meter(bytes);
  assert.equal(WebAssembly.validate(metered), WebAssembly.validate(bytes));
  assert.ok(metered.length > bytes.length);
});

test('a module the meter cannot decode is refused with MeterError (the VM then runs in a worker)', () => {
  const gc = wat(`(module (type $p (struct (field i32))) (func (export "f") (result i32) (i32.const 1)))`, { gc: true, reference_types: true, function_references: true });
  assert.throws(() => meter(gc), MeterError);
  assert.throws(() => meter(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)), MeterError);
});

test('startVm runs a module the meter refuses in a worker thread, with a warning', async (t) => {
  // A proxy-wasm-shaped module that already exports the meter's global name.
  const bytes = wat(`(module
    (memory (export "memory") 1)
    (global (export "portico.fuel") i32 (i32.const 0))
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "malloc") (param i32) (result i32) (i32.const 16))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))`);
  const logs: string[] = [];
  const vm = await startVm(bytes, {
    rootId: 'x', vmId: 'x', pluginName: 'default.x', pluginConfig: new Uint8Array(0), vmConfig: new Uint8Array(0), env: {}, logLevel: 2,
    node: { id: 'router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local', cluster: 'gw', metadata: {} }, memoryLimitBytes: 16 << 20,
  }, {
    services: new SharedStore().services(() => false),
    httpCall: () => Promise.reject(new Error('no calls')),
    log: (level, _p, msg) => logs.push(`${level} ${msg}`),
    metrics: () => undefined,
  });
  t.after(() => vm.kill());
  assert.ok(logs.some((l) => /^warn wasm module cannot be metered \(module already exports portico\.fuel\); running its VM in a worker thread/.test(l)), logs.join('\n'));
  const info = { path: '/', method: 'GET', authority: 'a', scheme: 'http', protocol: 'HTTP/1.1', timeMs: 0, sourceAddress: '127.0.0.1', sourcePort: 1, destinationPort: 2, mtls: false };
  assert.equal(vm.requestHeaders(info, [[':path', '/']], true).status, 'continue');
});
