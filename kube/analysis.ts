/**
 * Validation problems of API objects, reported where Kubernetes users look (as Istio's
 * analyzers do): a Warning Event on the object, and `status.validationMessages` on Istio objects
 * in Istio's shape (`{type: {code, name}, level, description}`, istio.io/api analysis/v1alpha1).
 * Written only when an object's problems change; cleared when it is accepted again. Failures to
 * write are logged, never fatal (the snapshot does not depend on them).
 */
import type { ConfigIssue } from '../config/errors.ts';
import { KubeApiError, type KubeApi } from './api.ts';
import type { KubeObject } from './reflector.ts';
import { formatKubeIssue } from './translate.ts';
import type { WatchedKind } from './watches.ts';

/** Istio analyzer codes (istio.io/latest/docs/reference/config/analysis/) for Portico's issue codes. */
const REFERENCE_CODES = new Set(['PORTICO_CFG_UNKNOWN_GATEWAY', 'PORTICO_CFG_UNKNOWN_HOST', 'PORTICO_CFG_UNKNOWN_SUBSET', 'PORTICO_CFG_UNKNOWN_PROVIDER', 'PORTICO_CFG_TLS_FILE_MISSING']);

export function istioMessageType(issue: ConfigIssue): { code: string; name: string } {
  return REFERENCE_CODES.has(issue.code) ? { code: 'IST0101', name: 'ReferencedResourceNotFound' } : { code: 'IST0106', name: 'SchemaValidationError' };
}

export interface ValidationMessage {
  readonly type: { readonly code: string; readonly name: string };
  readonly level: 'Error' | 'Warning';
  readonly description: string;
}

export function validationMessages(issues: readonly ConfigIssue[]): ValidationMessage[] {
  return issues.map((i) => ({
    type: istioMessageType(i),
    level: i.severity === 'error' ? 'Error' : 'Warning',
    description: `${i.path ? `${i.path}: ` : ''}${i.message} (${i.code}; left out of Portico's config)`,
  }));
}

interface Logger {
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export class Analysis {
  /** `Kind/ns/name` → the text last reported, so nothing is written twice. */
  private reported = new Map<string, string>();

  constructor(
    private readonly api: KubeApi,
    private readonly log: Logger,
    private readonly component = 'portico-controlplane',
  ) {}

  /** Reports newly rejected objects and clears those accepted again. `find` resolves ids to objects. */
  async report(rejected: ReadonlyMap<string, readonly ConfigIssue[]>, find: (id: string) => { obj: KubeObject; kind?: WatchedKind } | undefined): Promise<void> {
    const now = new Map<string, string>();
    const writes: Promise<void>[] = [];
    for (const [id, issues] of rejected) {
      const text = issues.map(formatKubeIssue).join('\n');
      now.set(id, text);
      if (this.reported.get(id) === text) continue;
      const found = find(id);
      if (!found) continue;
      writes.push(this.event(found.obj, text));
      if (found.kind) writes.push(this.status(found.obj, found.kind, validationMessages(issues)));
    }
    for (const id of this.reported.keys()) {
      if (now.has(id)) continue;
      const found = find(id);
      if (found?.kind) writes.push(this.status(found.obj, found.kind, []));
    }
    this.reported = now;
    await Promise.all(writes);
  }

  private async event(o: KubeObject, text: string): Promise<void> {
    const ns = o.metadata.namespace ?? 'default';
    const at = new Date().toISOString();
    try {
      await this.api.request('POST', `/api/v1/namespaces/${encodeURIComponent(ns)}/events`, {
        body: {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { generateName: `${o.metadata.name}.portico-`, namespace: ns },
          involvedObject: { apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name, namespace: ns, uid: o.metadata.uid, resourceVersion: o.metadata.resourceVersion },
          type: 'Warning',
          reason: 'PorticoValidation',
          message: text.slice(0, 1000),
          source: { component: this.component },
          reportingComponent: this.component,
          reportingInstance: this.component,
          firstTimestamp: at,
          lastTimestamp: at,
          count: 1,
        },
      });
    } catch (err) {
      this.log.warn('cannot record a validation Event', { object: `${o.kind}/${ns}/${o.metadata.name}`, error: (err as Error).message });
    }
  }

  private async status(o: KubeObject, k: WatchedKind, messages: ValidationMessage[]): Promise<void> {
    const ns = o.metadata.namespace ?? 'default';
    const path = `/apis/${k.group}/${k.version}/namespaces/${encodeURIComponent(ns)}/${k.plural}/${encodeURIComponent(o.metadata.name)}/status`;
    try {
      await this.api.request('PATCH', path, {
        body: { status: { validationMessages: messages.length ? messages : null, observedGeneration: o.metadata.generation } },
        contentType: 'application/merge-patch+json',
      });
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return; // deleted meanwhile
      this.log.warn('cannot write status.validationMessages', { object: `${o.kind}/${ns}/${o.metadata.name}`, error: (err as Error).message });
    }
  }
}
