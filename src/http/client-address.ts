import type { IncomingMessage } from 'node:http';
import proxyAddr from 'proxy-addr';

/** The address of the client that sent a request (HTTP or a WebSocket upgrade). */
export type ClientAddress = (req: IncomingMessage) => string;

/**
 * Reads the client address as Express's `trust proxy` does (with the same library): the socket's
 * peer, or with trusted proxies the nearest untrusted address of X-Forwarded-For. Without
 * `trust`, X-Forwarded-For is ignored, so a client cannot pick its own address to dodge budgets.
 */
export function createClientAddress(trust: boolean | number | string[]): ClientAddress {
  const trusted =
    trust === true ? () => true : trust === false ? () => false : typeof trust === 'number' ? (_a: string, i: number) => i < trust : proxyAddr.compile(trust);
  return (req) => {
    if (!req.socket?.remoteAddress) return 'unknown';
    return normalise(proxyAddr(req, trusted));
  };
}

/** `::ffff:127.0.0.1` and `127.0.0.1` are one client. */
const normalise = (address: string) => (address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address).toLowerCase();
