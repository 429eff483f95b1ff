/** security.istio.io PeerAuthentication: https://istio.io/latest/docs/reference/config/security/peer_authentication/ */
import { ConfigErrorCodes } from '../errors.ts';
import { childPath, isPlainObject, obj, oneOfStr, type Schema } from '../schema.ts';
import { matchLabelsSelector } from './common.ts';

export const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;
export type RawMtlsMode = (typeof MTLS_MODES)[number];

export interface PeerAuthenticationSpec {
  selector?: { matchLabels?: Record<string, string> };
  mtls?: { mode?: RawMtlsMode };
  portLevelMtls?: Record<string, { mode?: RawMtlsMode }>;
}

const mtls = obj({ mode: oneOfStr(MTLS_MODES) });

export const peerauthenticationSpecSchema: Schema = obj(
  { selector: matchLabelsSelector, mtls, portLevelMtls: { type: 'map', values: mtls } },
  {
    check: (spec, path, r) => {
      if (!isPlainObject(spec.portLevelMtls)) return;
      for (const k of Object.keys(spec.portLevelMtls)) {
        if (!/^\d+$/.test(k) || Number(k) < 1 || Number(k) > 65535) {
          r.report(childPath(childPath(path, 'portLevelMtls'), k), ConfigErrorCodes.WRONG_TYPE, `'${k}' is not a port number`);
        }
      }
      const sel = spec.selector as { matchLabels?: Record<string, string> } | undefined;
      if (!sel?.matchLabels || Object.keys(sel.matchLabels).length === 0) {
        r.report(childPath(path, 'portLevelMtls'), ConfigErrorCodes.REQUIRED, 'portLevelMtls needs a workload selector (Istio ignores it on namespace- or mesh-wide policies)');
      }
    },
  },
);
