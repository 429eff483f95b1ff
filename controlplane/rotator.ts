/**
 * Keeps a workload certificate fresh: renews once `fraction` (default half) of its lifetime has
 * passed (certs/needsRotation, Istio's SECRET_GRACE_PERIOD_RATIO) and hands each new pair to
 * `onRotate`. A failed renewal is retried with backoff while the old certificate is still valid,
 * which is what the remaining half of the lifetime is for. Swapping the pair into live TLS
 * contexts without dropping connections is the consumer's job.
 */
import { needsRotation, rotationTime } from '../certs/rotation.ts';
import { errorText } from './errors.ts';
import { requestWorkloadCertificate, type WorkloadCertificate } from './certificates.ts';
import { silentLogger, type ControlPlaneLogger } from './log.ts';
import { backoffMs, type ControlPlaneTarget } from './subscribe.ts';

export interface CertRotatorOptions extends ControlPlaneTarget {
  readonly workload: string;
  /** Called with every renewed certificate (not the first one: `start()` returns that). */
  readonly onRotate: (cert: WorkloadCertificate) => void | Promise<void>;
  readonly onError?: (err: Error) => void;
  readonly logger?: ControlPlaneLogger;
  /** Share of the lifetime after which to renew, in (0, 1]. Default 0.5. */
  readonly fraction?: number;
  /** Never renew more often than this, whatever the certificate says. Default 1000 ms. */
  readonly minIntervalMs?: number;
  /** Retry backoff after a failed renewal. Default 1 s doubling to 30 s. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** How to obtain a certificate; default `requestWorkloadCertificate` against `url`. */
  readonly issue?: () => Promise<WorkloadCertificate>;
}

/** setTimeout's limit (about 24.8 days); longer waits are done in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class CertRotator {
  private cert: WorkloadCertificate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private failures = 0;
  private readonly log: ControlPlaneLogger;
  private readonly issue: () => Promise<WorkloadCertificate>;

  constructor(private readonly opts: CertRotatorOptions) {
    this.log = opts.logger ?? silentLogger;
    this.issue = opts.issue ?? (() => requestWorkloadCertificate({ url: opts.url, token: opts.token, workload: opts.workload }));
    needsRotation(0, 1, 0, opts.fraction ?? 0.5); // validates the fraction now, not at the first renewal
  }

  /** Obtains the first certificate (throws if that fails) and schedules its renewal. */
  async start(): Promise<WorkloadCertificate> {
    const cert = await this.issue();
    this.cert = cert;
    this.schedule(cert);
    return cert;
  }

  current(): WorkloadCertificate | undefined {
    return this.cert;
  }

  /** When the current certificate will be renewed. */
  nextRotation(): Date | undefined {
    return this.cert && rotationTime(this.cert.notBefore, this.cert.notAfter, this.opts.fraction ?? 0.5);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private schedule(cert: WorkloadCertificate): void {
    const at = rotationTime(cert.notBefore, cert.notAfter, this.opts.fraction ?? 0.5).getTime();
    const wait = Math.max(this.opts.minIntervalMs ?? 1_000, at - Date.now());
    this.wait(wait, () => void this.renew());
  }

  private wait(ms: number, then: () => void): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    const step = Math.min(ms, MAX_TIMER_MS);
    this.timer = setTimeout(() => (step < ms ? this.wait(ms - step, then) : then()), step);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (this.closed) return;
    let next: WorkloadCertificate;
    try {
      next = await this.issue();
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      const retry = backoffMs(this.failures++, this.opts.retryMinMs ?? 1_000, this.opts.retryMaxMs ?? 30_000);
      const expired = this.cert ? Date.now() >= this.cert.notAfter.getTime() : true;
      this.log[expired ? 'error' : 'warn']('workload certificate renewal failed', {
        workload: this.opts.workload,
        error: errorText(e),
        notAfter: this.cert?.notAfter.toISOString(),
        retryInMs: Math.round(retry),
      });
      this.opts.onError?.(e);
      this.wait(retry, () => void this.renew());
      return;
    }
    if (this.closed) return;
    this.failures = 0;
    this.cert = next;
    this.log.info('workload certificate renewed', { workload: this.opts.workload, spiffeId: next.spiffeId, notAfter: next.notAfter.toISOString() });
    this.schedule(next);
    try {
      await this.opts.onRotate(next);
    } catch (err) {
      this.opts.onError?.(err instanceof Error ? err : new Error(String(err)));
    }
  }
}
