import type { WebSocket } from 'ws';

/**
 * Server-to-client WebSocket text frames (RFC 6455 §5.2: FIN, opcode 1, unmasked) in one buffer,
 * message i being `prefix` followed by `rests[i]`: several messages for one socket go out in one
 * write, and each message's bytes are copied once.
 */
export function textFrames(prefix: Buffer, rests: readonly Buffer[]): Buffer {
  let total = 0;
  for (const rest of rests) {
    const length = prefix.length + rest.length;
    total += headerLength(length) + length;
  }
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const rest of rests) {
    const length = prefix.length + rest.length;
    out[at++] = 0x81; // FIN, text
    if (length < 126) {
      out[at++] = length;
    } else if (length < 0x10000) {
      out[at++] = 126;
      at = out.writeUInt16BE(length, at);
    } else {
      out[at++] = 127;
      at = out.writeUInt32BE(Math.floor(length / 2 ** 32), at);
      at = out.writeUInt32BE(length >>> 0, at);
    }
    at += prefix.copy(out, at);
    at += rest.copy(out, at);
  }
  return out;
}

function headerLength(payloadLength: number): number {
  return payloadLength < 126 ? 2 : payloadLength < 0x10000 ? 4 : 10;
}

/** The part of `ws`'s sender this module writes through: the same one Socket.IO's broadcast writes pre-encoded frames through. */
interface RawSender {
  _state: number;
  _queue: unknown[];
  sendFrame(list: Buffer[], cb?: (err?: Error) => void): void;
}

const TEXT = { binary: false } as const;
/** ws's sender state when it holds nothing back (`DEFAULT` in ws's lib/sender.js). */
const SENDER_IDLE = 0;

/**
 * Sends messages `prefix + rests[i]` on `socket` as text frames, in order with every other frame of
 * the socket: built by `textFrames` and written in one write through ws's sender, or — while ws
 * itself holds frames back (it never does without permessage-deflate and Blob sends, which this
 * server does not use), or should ws no longer offer its sender — one `send` each. `done` is called
 * once all of them have gone to the kernel (or failed: the socket then closes).
 */
export function sendMessages(socket: WebSocket, prefix: Buffer, rests: readonly Buffer[], done?: () => void): void {
  const sender = (socket as unknown as { _sender?: RawSender })._sender;
  if (sender && typeof sender.sendFrame === 'function' && sender._state === SENDER_IDLE && sender._queue.length === 0) {
    sender.sendFrame([textFrames(prefix, rests)], done && (() => done()));
    return;
  }
  rests.forEach((rest, i) => socket.send(Buffer.concat([prefix, rest]), TEXT, i === rests.length - 1 && done ? () => done() : undefined));
}
