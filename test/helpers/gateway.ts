/**
 * Starts a real GatewayRuntime from inline Istio YAML, on the ports the YAML names, and stops it
 * after the test. Fails the test with every config problem when the YAML does not compile.
 */
import type { TestContext } from 'node:test';
import { buildSnapshotFromText, formatIssue, type BuildOptions } from '../../config/index.ts';
import type { Snapshot } from '../../config/snapshot.ts';
import { GatewayRuntime, type GatewayOptions } from '../../gateway/runtime.ts';

export async function compileYaml(yaml: string, opts: BuildOptions & { file?: string } = {}): Promise<Snapshot> {
  const r = await buildSnapshotFromText(yaml, opts.file ?? 'test.yaml', opts);
  if (!r.ok) throw new Error(`config does not compile:\n${r.issues.map((i) => formatIssue(i)).join('\n')}`);
  return r.snapshot;
}

export async function startGateway(t: TestContext, yaml: string, opts: GatewayOptions & BuildOptions = {}): Promise<GatewayRuntime> {
  const runtime = new GatewayRuntime(await compileYaml(yaml, opts), opts);
  await runtime.start();
  t.after(() => runtime.close(100));
  return runtime;
}
