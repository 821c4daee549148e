/**
 * Binding an HTTP(S) server, shared by the control plane (http-api.ts) and the WebSocket front end
 * (ws-transport.ts) so both report a busy port the same way: the promise rejects with the bind error
 * instead of an 'error' event nobody listens to (DataServer.start then closes what it already bound).
 */
import type { Server } from 'node:http';

/**
 * Listens on `host:port` (0 = any free port) and resolves to the port actually bound. At most
 * `maxConnections` connections are held at once: Node closes the ones beyond as it accepts them,
 * and `onRefused` counts each.
 */
export async function listenHttp(server: Server, host: string, port: number, maxConnections: number, onRefused: () => void): Promise<number> {
  server.maxConnections = maxConnections;
  server.on('drop', onRefused);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : port;
}
