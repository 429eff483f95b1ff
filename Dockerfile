# One image for every Portico role: gateway, sidecar, authservice, controlplane, validate, certs,
# demo (and the demo apps, via `--entrypoint`). See docs/deployment.md.
#
#   docker build -t portico .
#   docker run --rm portico validate /app/config/examples/bookinfo
#
# The check stage typechecks and bundles the CLI with esbuild (`npm run build` → dist/); the image
# runs `node dist/bin/portico.js`, without tsx's loader thread (about 30 MB less RSS per process).
# The final stage carries `npm ci --omit=dev` output: fastify, undici, ioredis, openid-client,
# jose, yaml, pino, node-forge, ws, bcryptjs; plus tsx (with esbuild), a devDependency added here
# only because the compose demo apps (demo/bookinfo, demo/httpbin.ts) run as TypeScript. No
# TypeScript compiler, no playwright, no test tools. The sources stay beside dist/ (files read
# next to modules). `--ignore-scripts`: the package's `prepare` (the build) needs the sources,
# which are not copied yet; the check stage runs `npm run build` itself.

# ---- deps: production node_modules, built where a compiler toolchain may exist --------------
FROM node:24.11.1-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && mkdir /tmp/tsx && cd /tmp/tsx && echo '{"private":true}' > package.json \
 && npm install --ignore-scripts --no-audit --no-fund --no-package-lock "tsx@$(node -p 'require("/app/package.json").devDependencies.tsx')" \
 && cp -rn node_modules/. /app/node_modules/ && cd /app && rm -rf /tmp/tsx && npm cache clean --force

# ---- check: full install, typecheck; fails the build on type errors ----------------------------
FROM node:24.11.1-bookworm-slim AS check
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npx tsc --noEmit -p tsconfig.json && npm run build && node dist/bin/portico.js validate config/examples/bookinfo

# ---- runtime ----------------------------------------------------------------------------------
FROM node:24.11.1-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORTICO_HEALTH_URL=http://127.0.0.1:15000/ready
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
# Only what runs: the CLI, the runtimes, the demo apps and the example configs (tests, bench and
# docs stay out: see .dockerignore). Owned by root, read-only for the runtime user.
COPY --chown=root:root package.json package-lock.json tsconfig.json ./
COPY --chown=root:root bin ./bin
COPY --chown=root:root config ./config
COPY --chown=root:root gateway ./gateway
COPY --chown=root:root authservice ./authservice
COPY --chown=root:root controlplane ./controlplane
COPY --chown=root:root telemetry ./telemetry
COPY --chown=root:root certs ./certs
COPY --chown=root:root demo ./demo
COPY --from=check --chown=root:root /app/dist ./dist
# Writable state (CA, credentials) lives in volumes; the root filesystem can be read-only.
RUN mkdir -p /var/lib/portico /certs && chown 65532:65532 /var/lib/portico /certs
# The check stage must have passed for this image to build.
COPY --from=check /app/package.json /tmp/.checked
USER 65532:65532
# Gateway (HTTP, HTTPS), admin, metrics, control plane, authservice check and health ports.
EXPOSE 8080 8443 15000 15020 15010 8081
# Each role has its own health URL (compose sets PORTICO_HEALTH_URL per service); the default is
# the gateway's admin /ready, which answers on 127.0.0.1 inside the container.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.PORTICO_HEALTH_URL).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/bin/portico.js"]
CMD ["--help"]
