import { createServer } from 'node:net';

/**
 * Ports handed out by freePort come from below Linux's ephemeral range (32768–60999), where no
 * `listen(0)` server and no outgoing connection of a concurrently running test can take them
 * between the pick and the bind (picking with `listen(0)` raced those: "port … already in use"
 * under load). Never the same port twice in one process.
 */
const LOW = 20_000;
const HIGH = 32_000;
const handedOut = new Set<number>();

function tryBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** A port that was free a moment ago (for configs that must name a port up front). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (handedOut.has(port)) continue;
    if (await tryBind(port, host)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`freePort: no free port on ${host} in ${LOW}-${HIGH} after 200 tries`);
}
