/**
 * The reference: a plain Socket.IO chat server, the textbook design. On `send` it numbers the
 * message and `io.emit`s it to every connected client, then acks the sender. No persistence, no
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
  socket.on('send', (body: unknown, ack?: (reply: { seq: number }) => void) => {
    if (typeof body !== 'string') return;
    const message = { id: randomUUID(), seq: ++seq, body, createdAt: new Date().toISOString() };
    io.emit('message', message);
    if (typeof ack === 'function') ack({ seq: message.seq });
  });
});

httpServer.listen(Number(process.env.PORT ?? 4100), '127.0.0.1');

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    io.close();
    process.exit(0);
  });
}
