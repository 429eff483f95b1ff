/**
 * Fault containment: an exception while handling one request ends that request (and, on
 * HTTP/1.1, its connection), never the process. Used where request handling starts (the
 * listeners' 'request' handlers) and where it resumes asynchronously (promise callbacks, timers).
 * This is the last line, not the error handling: a thrown error here is a Portico bug, logged.
 */
import type { Http2ServerResponse } from 'node:http2';
import type { ServerResponse } from 'node:http';
import type { DownstreamResponse } from './forward.ts';

export interface ErrorLog {
  error(msg: string, fields?: Record<string, unknown>): void;
}

let fallbackLog: ErrorLog = { error: (msg, fields) => process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', msg, ...fields })}\n`) };

/** Where contained errors are logged when the caller passes no logger (set by the runtime). */
export function setContainmentLog(log: ErrorLog): void {
  fallbackLog = log;
}

const BODY = 'internal error\n';

/** Ends `res` after an internal error: a 500 if nothing was sent yet, else a reset. */
export function failRequest(res: DownstreamResponse, err: unknown, log: ErrorLog = fallbackLog): void {
  log.error('request failed with an internal error; ending that request only', {
    error: err instanceof Error ? err.message : String(err),
    stack: err instanceof Error ? err.stack?.split('\n').slice(1, 4).join(' | ') : undefined,
  });
  try {
    if (!res.headersSent && !(res as ServerResponse).destroyed && !(res as Http2ServerResponse).stream?.destroyed) {
      // HTTP/1.1: the connection's state is unknown after a bug; close it after this answer.
      const h1 = (res as Http2ServerResponse).stream === undefined;
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(BODY.length), ...(h1 ? { connection: 'close' } : {}) });
      res.end(BODY);
    } else {
      res.destroy();
    }
  } catch {
    res.destroy();
  }
}

/** Runs `fn`, turning a throw into failRequest(res). */
export function contained(res: DownstreamResponse, fn: () => void, log?: ErrorLog): void {
  try {
    fn();
  } catch (err) {
    failRequest(res, err, log);
  }
}
