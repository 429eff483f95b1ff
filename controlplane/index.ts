/** The control plane package: the server (startControlPlane) and, re-exported, the client. */
export { startControlPlane, DEFAULT_CONTROLPLANE_PORT, DEFAULT_HEARTBEAT_MS, DEFAULT_TRUST_DOMAIN, type ControlPlane, type ControlPlaneOptions } from './server.ts';
export { SnapshotFeed, type Published, type ConfigError } from './feed.ts';
export { jsonLogger, silentLogger } from './log.ts';
export * from './client.ts';
