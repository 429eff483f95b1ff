/** security.istio.io RequestAuthentication: https://istio.io/latest/docs/reference/config/security/request_authentication/ */
import { ConfigErrorCodes } from '../errors.ts';
import { arr, bool, childPath, doc, duration, obj, str, type Schema, notEnforced } from '../schema.ts';
import { matchLabelsSelector, targetRefSchema, policyTargetRefsCheck } from './common.ts';
import type { RawTargetRef } from './authorizationpolicy.ts';

export interface RawJwtRule {
  issuer: string;
  audiences?: string[];
  jwksUri?: string;
  jwks?: string;
  fromHeaders?: { name: string; prefix?: string }[];
  fromParams?: string[];
  fromCookies?: string[];
  outputPayloadToHeader?: string;
  forwardOriginalToken?: boolean;
  outputClaimToHeaders?: { header: string; claim: string }[];
  timeout?: string;
}

export interface RequestAuthenticationSpec {
  selector?: { matchLabels?: Record<string, string> };
  targetRef?: RawTargetRef;
  targetRefs?: RawTargetRef[];
  jwtRules?: RawJwtRule[];
}

const url = str({
  check: (v, path, r) => {
    let u: URL | undefined;
    try {
      u = new URL(v);
    } catch {
      /* reported below */
    }
    if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:')) r.report(path, ConfigErrorCodes.BAD_URI, `'${v}' is not an http(s) URL`);
  },
});

const jwtRule = obj(
  {
    issuer: str({ nonEmpty: true }),
    audiences: arr(str({ nonEmpty: true })),
    jwksUri: url,
    jwks: str({
      check: (v, path, r) => {
        try {
          const j = JSON.parse(v) as { keys?: unknown };
          if (!Array.isArray(j.keys)) r.report(path, ConfigErrorCodes.WRONG_TYPE, 'jwks must be a JSON Web Key Set ({"keys": [...]})');
        } catch {
          r.report(path, ConfigErrorCodes.WRONG_TYPE, 'jwks is not valid JSON');
        }
      },
    }),
    fromHeaders: arr(obj({ name: str({ nonEmpty: true }), prefix: str() }, { required: ['name'] })),
    fromParams: arr(str({ nonEmpty: true })),
    fromCookies: arr(str({ nonEmpty: true })),
    outputPayloadToHeader: str({ nonEmpty: true }),
    forwardOriginalToken: bool,
    outputClaimToHeaders: arr(obj({ header: str({ nonEmpty: true }), claim: str({ nonEmpty: true }) }, { required: ['header', 'claim'] })),
    timeout: duration(1),
    // Istio 1.25+: claims whose space-separated string value is matched as a list (like `scope`).
    spaceDelimitedClaims: notEnforced(arr(str({ nonEmpty: true })), 'claims are matched as written'),
  },
  {
    required: ['issuer'],
    // Neither given: keys are discovered from `<issuer>/.well-known/openid-configuration`, as Istio does.
    oneOf: ['jwksUri', 'jwks'],
  },
);

export const requestauthenticationSpecSchema: Schema = obj(
  {
    selector: matchLabelsSelector,
    targetRef: doc(targetRefSchema, 'partly', 'kind Gateway (the gateway workload name) is resolved; other kinds warn'),
    targetRefs: doc(arr(targetRefSchema), 'partly', 'kind Gateway (the gateway workload name) is resolved; other kinds warn'),
    jwtRules: arr(jwtRule, {
      check: (rules, path, r) => {
        const seen = new Set<string>();
        rules.forEach((x, i) => {
          const iss = (x as { issuer?: unknown })?.issuer;
          if (typeof iss !== 'string') return;
          if (seen.has(iss)) r.report(`${path}[${i}].issuer`, ConfigErrorCodes.DUPLICATE_RESOURCE, `issuer '${iss}' appears twice`);
          seen.add(iss);
        });
      },
    }),
  },
  {
    oneOf: ['selector', 'targetRef', 'targetRefs'],
    check: (spec, path, r) => {
      policyTargetRefsCheck(spec, path, r);
    },
  },
);
