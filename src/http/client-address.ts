import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { LRUCache } from 'lru-cache';
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
  // Addresses come again and again (a client's every request, a proxy's clients), and reading one
  // with ipaddr.js takes microseconds: each written form is read once. Bounded by bytes too: what
  // a trusted X-Forwarded-For carries is written by clients, and an address is short.
  const spelled = new LRUCache<string, string>({ max: 10_000, maxSize: SPELLINGS_BYTES, sizeCalculation: (address, written) => 2 * (written.length + address.length) });
  return (req) => {
    if (!req.socket?.remoteAddress) return 'unknown';
    const written = proxyAddr(req, trusted);
    let address = spelled.get(written);
    if (address === undefined) spelled.set(written, (address = normalise(written)));
    return address;
  };
}

/** The longest non-address kept as it is written (an IPv6 address with a zone and a port fits). */
const MAX_SPELLING = 64;

/** The most the read spellings of addresses hold (UTF-16 bytes): some 10,000 ordinary ones. */
const SPELLINGS_BYTES = 1024 * 1024;

/**
 * How many leading bits of an IPv6 address name one client: its network, as a home or an office is
 * given one (a /56, often a /48; one host alone holds a /64, 2^64 addresses). Counted by the
 * address, one network would have a budget for each address it may use.
 */
export const IPV6_CLIENT_PREFIX = 56;

/**
 * The client as budgets count it, in one spelling however a proxy wrote it (with a port, in
 * brackets, with a zone, an IPv4 tail in IPv6): an IPv4 address (also written as IPv4-mapped IPv6:
 * `::ffff:127.0.0.1` and `127.0.0.1` are one client), or an IPv6 address's `/56` network
 * (`2001:db8:1:100::/56` for any address in it).
 */
function normalise(written: string): string {
  const host = /^\[([^\]]+)\](?::\d+)?$/.exec(written)?.[1] ?? /^([\d.]+):\d+$/.exec(written)?.[1] ?? written;
  // The URL parser spells IPv6 one way, IPv4 tails included (ipaddr.js takes those after ::ffff: only).
  const address = isIPv6(host) ? new URL(`http://[${host.split('%')[0]}]/`).hostname.slice(1, -1) : host;
  // Not an address (a trusted proxy passed on what a client wrote): a budget key all the same,
  // of bounded length, for it is kept in Redis for the budget's window.
  if (!ipaddr.isValid(address)) return address.length <= MAX_SPELLING ? address.toLowerCase() : `sha256:${createHash('sha256').update(address.toLowerCase()).digest('base64url')}`;
  const ip = ipaddr.process(address);
  if (ip.kind() === 'ipv4') return ip.toString();
  const network = ip.toByteArray().map((byte, i) => (i < IPV6_CLIENT_PREFIX / 8 ? byte : 0));
  return `${ipaddr.fromByteArray(network).toString()}/${IPV6_CLIENT_PREFIX}`;
}
