/**
 * The reference: a plain Socket.IO chat server, the textbook design. On `send` it numbers the
 * message and `io.emit`s it to every connected client (or `io.to(room)` when the send names a room
 * the sockets `join`ed), then acks the sender. No persistence, no
 * auth, no pub/sub, one process. `GET /healthz` answers 200 once listening. Port from `PORT`.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Server } from 'socket.io';

const httpServer = http.createServer((req, res) => {
  res.statusCode = req.url === '/healthz' ? 200 : 404;
  res.end();
});
const io = new Server(httpServer, { serveClient: false });

let seq = 0;
io.on('connection', (socket) => {
  // Several rooms: a socket joins one, and a send naming a room goes to that room only.
  socket.on('join', (room: unknown, ack?: () => void) => {
    if (typeof room === 'string') void socket.join(room);
    if (typeof ack === 'function') ack();
  });
  socket.on('send', (body: unknown, ...rest: unknown[]) => {
    if (typeof body !== 'string') return;
    const ack = typeof rest[rest.length - 1] === 'function' ? (rest.pop() as (reply: { seq: number }) => void) : undefined;
    const room = typeof rest[0] === 'string' ? rest[0] : undefined;
    const message = { id: randomUUID(), seq: ++seq, body, createdAt: new Date().toISOString() };
    if (room === undefined) io.emit('message', message);
    else io.to(room).emit('message', message);
    ack?.({ seq: message.seq });
  });
});

httpServer.listen(Number(process.env.PORT ?? 4100), '127.0.0.1');

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    io.close();
    process.exit(0);
  });
}
