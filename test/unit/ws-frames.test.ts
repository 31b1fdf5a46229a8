import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { sendMessages, textFrames } from '../../src/http/ws-frames';

/** Messages a real ws client receives when the server socket is given `send(socket)`. */
async function received(count: number, send: (socket: WebSocket) => void): Promise<{ data: string; isBinary: boolean }[]> {
  const server = createServer();
  const wss = new WebSocketServer({ server });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const messages: { data: string; isBinary: boolean }[] = [];
  const all = new Promise<void>((resolve) =>
    client.on('message', (data, isBinary) => {
      messages.push({ data: String(data), isBinary });
      if (messages.length === count) resolve();
    }),
  );
  const [socket] = (await once(wss, 'connection')) as [WebSocket];
  send(socket);
  await all;
  client.close();
  wss.close();
  server.close();
  return messages;
}

describe('WebSocket frames written as bytes', () => {
  const prefix = Buffer.from('{"id":"1","type":"next","payload":');
  // Lengths on both sides of the 7-bit (125/126) and 16-bit (65535/65536) length encodings, and non-ASCII text.
  const sizes = [1, 125 - prefix.length, 126 - prefix.length, 65_535 - prefix.length, 65_536 - prefix.length];
  const rests = [...sizes.map((n) => Buffer.from('x'.repeat(n - 1) + '}')), Buffer.from('{"body":"héllo, 世界 👋"}}')];

  it('are text messages a ws client reads back exactly, several in one write, at every length encoding', async () => {
    const messages = await received(rests.length, (socket) => sendMessages(socket, prefix, rests));
    expect(messages.map((m) => m.isBinary)).toEqual(rests.map(() => false));
    expect(messages.map((m) => m.data)).toEqual(rests.map((rest) => prefix.toString() + rest.toString()));
  });

  it('build the frame headers RFC 6455 gives for each length', () => {
    const header = (rest: Buffer) => [...textFrames(prefix, [rest]).subarray(0, 4)];
    expect(header(rests[1]).slice(0, 2)).toEqual([0x81, 125]);
    expect(header(rests[2]).slice(0, 4)).toEqual([0x81, 126, 0, 126]);
    expect(textFrames(prefix, [rests[4]]).subarray(0, 10).toJSON().data).toEqual([0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
  });

  it('go out in order with frames ws sends itself', async () => {
    const messages = await received(3, (socket) => {
      socket.send('first');
      sendMessages(socket, prefix, [Buffer.from('2}')]);
      socket.send('third');
    });
    expect(messages.map((m) => m.data)).toEqual(['first', `${prefix}2}`, 'third']);
  });
});
