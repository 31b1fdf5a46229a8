// The client address read from a request: what it remembers of the addresses it read is bounded
// by bytes, whatever a trusted X-Forwarded-For carries.
import type { IncomingMessage } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createClientAddress } from '../../src/http/client-address';

/** A full garbage collection (V8's `gc`, made reachable for this test only). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

const request = (forwardedFor: string) => ({ socket: { remoteAddress: '10.0.0.1' }, connection: { remoteAddress: '10.0.0.1' }, headers: { 'x-forwarded-for': forwardedFor } }) as unknown as IncomingMessage;

it('reads one client per address however it is written, behind trusted proxies', () => {
  const address = createClientAddress(true);
  expect(address(request('203.0.113.7'))).toBe('203.0.113.7');
  expect(address(request('::ffff:203.0.113.7'))).toBe('203.0.113.7');
  expect(address(request('[2001:db8:1:1ff::5]:443'))).toBe('2001:db8:1:100::/56');
});

it('keeps at most about a megabyte of the spellings it read, however long the ones clients write (distinct 16 KB X-Forwarded-For entries)', () => {
  const address = createClientAddress(true);
  collectGarbage();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 3000; i++) address(request(`${i}-${'x'.repeat(16 * 1024)}`));
  collectGarbage();
  const grownMb = (process.memoryUsage().heapUsed - before) / 2 ** 20;
  expect(grownMb).toBeLessThan(8); // before: 47 MB (3,000 kept, by count alone)
});

it('keys what is not an address by a digest of bounded length when it is long (a budget key kept in Redis), one key per value', () => {
  const address = createClientAddress(true);
  const long = (c: string) => request(c.repeat(16 * 1024));
  expect(address(long('a'))).toMatch(/^sha256:[\w-]{43}$/);
  expect(address(long('a'))).toBe(address(long('A')));
  expect(address(long('b'))).not.toBe(address(long('a')));
  expect(address(request('not-an-address'))).toBe('not-an-address');
});

