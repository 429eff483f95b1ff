/**
 * Snapshot distribution: the SSE stream, the one-shot fetch and the status page.
 *
 * A stream first says `hello`, then sends the current snapshot unless the client already has it
 * (`have=<revision>` with `epoch=<epoch>`, or the standard SSE `Last-Event-ID: <epoch>:<revision>`),
 * then every new one. A heartbeat every `heartbeatMs` lets the client notice a dead connection
 * (and lets the kernel notice a dead client: writes to it fail). A slow client never buffers
 * more than one snapshot: while its socket is backed up only the newest is kept for it.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { ControlPlaneError } from './errors.ts';
import type { Published, SnapshotFeed } from './feed.ts';
import type { ControlPlaneLogger } from './log.ts';
import { NODE_ID, SNAPSHOT_PATH, sseEvent, STATUS_PATH, STREAM_PATH, type HelloMessage } from './protocol.ts';

export interface StreamRoutesOptions {
  readonly feed: SnapshotFeed;
  readonly heartbeatMs: number;
  readonly log: ControlPlaneLogger;
  /** Extra fields for /v1/status (config paths, trust domain...). */
  readonly describe: () => Record<string, unknown>;
}

interface Stream {
  readonly node: string;
  readonly remote: string;
  readonly connectedAt: string;
  readonly res: ServerResponse;
  /** Revision of the current epoch last written to this stream (0 = none). */
  sent: number;
  pending: Published | undefined;
  unsubscribe: () => void;
}

interface StreamQuery {
  node?: string;
  have?: string;
  epoch?: string;
}

/** What the client says it has: a revision, and the epoch it belongs to when known. */
function parseHave(req: FastifyRequest<{ Querystring: StreamQuery }>): { revision: number; epoch?: string } {
  const q = req.query;
  if (q.have !== undefined) {
    if (!/^\d{1,15}$/.test(q.have)) throw new ControlPlaneError('BAD_REQUEST', `have: '${q.have}' is not a revision number`);
    if (q.epoch !== undefined && !/^[A-Za-z0-9-]{1,64}$/.test(q.epoch)) {
      throw new ControlPlaneError('BAD_REQUEST', `epoch: '${q.epoch}' is not a control plane epoch`);
    }
    return { revision: Number(q.have), epoch: q.epoch };
  }
  const last = req.headers['last-event-id'];
  const m = typeof last === 'string' ? /^([A-Za-z0-9-]{1,64}):(\d{1,15})$/.exec(last) : null;
  return m ? { revision: Number(m[2]), epoch: m[1] } : { revision: 0 };
}

export const streamRoutes: FastifyPluginAsync<StreamRoutesOptions> = async (app, opts) => {
  const { feed, log } = opts;
  const streams = new Set<Stream>();

  const write = (s: Stream, p: Published): void => {
    if (p.epoch !== feed.epoch || p.revision <= s.sent) return;
    if (s.res.writableNeedDrain) {
      s.pending = p; // superseded snapshots are dropped, only the newest waits
      return;
    }
    s.sent = p.revision;
    s.pending = undefined;
    s.res.write(p.frame);
  };

  const heartbeat = setInterval(() => {
    const frame = sseEvent('heartbeat', JSON.stringify({ epoch: feed.epoch, revision: feed.latest?.revision ?? 0, time: Date.now() }));
    for (const s of streams) if (!s.res.writableNeedDrain) s.res.write(frame);
  }, opts.heartbeatMs);
  heartbeat.unref();

  app.addHook('preClose', async () => {
    clearInterval(heartbeat);
    for (const s of streams) {
      s.unsubscribe();
      s.res.end();
    }
    streams.clear();
  });

  app.get<{ Querystring: StreamQuery }>(STREAM_PATH, async (req, reply: FastifyReply) => {
    const node = req.query.node ?? `anonymous@${req.ip}`;
    if (!NODE_ID.test(node)) throw new ControlPlaneError('BAD_REQUEST', `node: '${node}' must be 1-253 of A-Z a-z 0-9 . _ : @ / -`);
    const have = parseHave(req);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    req.raw.socket.setKeepAlive(true, opts.heartbeatMs);
    req.raw.socket.setNoDelay(true);
    const current = feed.latest;
    const hello: HelloMessage = { epoch: feed.epoch, startedAt: feed.startedAt, revision: current?.revision ?? 0, heartbeatMs: opts.heartbeatMs };
    res.write(sseEvent('hello', JSON.stringify(hello)));
    const s: Stream = {
      node,
      remote: req.ip,
      connectedAt: new Date().toISOString(),
      res,
      // A client that names this epoch already has everything up to `have`.
      sent: have.epoch === undefined || have.epoch === feed.epoch ? have.revision : 0,
      pending: undefined,
      unsubscribe: () => undefined,
    };
    if (current) write(s, current);
    s.unsubscribe = feed.subscribe((p) => write(s, p));
    res.on('drain', () => {
      if (s.pending) write(s, s.pending);
    });
    streams.add(s);
    log.info('proxy connected', { node, remote: req.ip, have: have.revision, sent: s.sent });
    res.on('close', () => {
      s.unsubscribe();
      streams.delete(s);
      log.info('proxy disconnected', { node, remote: req.ip });
    });
  });

  app.get(SNAPSHOT_PATH, async (_req, reply) => {
    const p = feed.latest;
    if (!p) throw new ControlPlaneError('NOT_READY', 'no snapshot yet: the config has not compiled (see /v1/status)');
    reply.header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store').header('etag', `"${p.epoch}:${p.revision}"`);
    return reply.send(p.json);
  });

  app.get(STATUS_PATH, async (_req, reply) => {
    const p = feed.latest;
    reply.header('cache-control', 'no-store');
    return {
      epoch: feed.epoch,
      startedAt: feed.startedAt,
      ready: p !== undefined,
      revision: p?.revision ?? 0,
      version: p?.version ?? null,
      publishedAt: p?.publishedAt ?? null,
      lastBuild: feed.healthy === undefined ? 'none' : feed.healthy ? 'ok' : 'failed',
      lastError: feed.lastError ?? null,
      proxies: [...streams].map((s) => ({ node: s.node, remote: s.remote, connectedAt: s.connectedAt, revision: s.sent })),
      ...opts.describe(),
    };
  });
};
