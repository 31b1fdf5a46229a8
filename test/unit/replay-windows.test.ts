import { REPLAY_WINDOW, ReplayWindows } from '../../src/chat/replay-windows';
import type { MessageModel } from '../../src/pubsub';

/** Messages numbered 1..n (seq and change alike), with bodies of `bodyLength` characters. */
function messagesUpTo(n: number, bodyLength = 10): MessageModel[] {
  return Array.from({ length: n }, (_, i) => ({ seq: i + 1, changeSeq: i + 1, body: 'x'.repeat(bodyLength) }) as MessageModel);
}

/** A room's reads, recorded: each answers the messages numbered in (from, to]. */
function room(messages: MessageModel[]) {
  const reads: Array<[number, number]> = [];
  let failNext = false;
  const read = async (from: number, to: number) => {
    reads.push([from, to]);
    if (failNext) {
      failNext = false;
      throw new Error('connect ECONNREFUSED (fake outage)');
    }
    return messages.filter((m) => m.seq > from && m.seq <= to);
  };
  return { reads, read, failOnce: () => (failNext = true) };
}

const seqs = (read: { messages: MessageModel[] }) => read.messages.map((m) => m.seq);

describe('ReplayWindows', () => {
  it('serves reads that fall in one window from one read, each its part after its position', async () => {
    const windows = new ReplayWindows();
    const { reads, read } = room(messagesUpTo(450));
    const [a, b] = await Promise.all([windows.read('g1', 'messages', 10, 450, read), windows.read('g1', 'messages', 13, 450, read)]);
    expect([seqs(a)[0], seqs(a).length, a.through]).toEqual([11, 190, REPLAY_WINDOW]);
    expect([seqs(b)[0], seqs(b).length, b.through]).toEqual([14, 187, REPLAY_WINDOW]);
    const later = await windows.read('g1', 'messages', 13, 450, read);
    expect(seqs(later)).toEqual(seqs(b));
    expect(reads).toEqual([[0, 200]]);
  });

  it('gives a feed only what it asked up to, and reads a window again for one that asks further than it was read', async () => {
    const windows = new ReplayWindows();
    const { reads, read } = room(messagesUpTo(450));
    expect(await windows.read('g1', 'changes', 400, 430, read)).toMatchObject({ through: 430 });
    const shorter = await windows.read('g1', 'changes', 400, 420, read);
    expect([seqs(shorter).length, shorter.through]).toEqual([20, 420]);
    const further = await windows.read('g1', 'changes', 410, 450, read);
    expect([seqs(further)[0], seqs(further).length, further.through]).toEqual([411, 40, 450]);
    expect(reads).toEqual([
      [400, 430],
      [400, 450],
    ]);
  });

  it('never serves a window to another generation or order of the room', async () => {
    const windows = new ReplayWindows();
    const { reads, read } = room(messagesUpTo(50));
    await windows.read('g1', 'messages', 0, 50, read);
    await windows.read('g2', 'messages', 0, 50, read);
    await windows.read('g2', 'changes', 0, 50, read);
    expect(reads).toEqual([
      [0, 50],
      [0, 50],
      [0, 50],
    ]);
  });

  it('drops a window whose read failed: every feed waiting on it fails, and the next read reads again', async () => {
    const windows = new ReplayWindows();
    const { reads, read, failOnce } = room(messagesUpTo(5));
    failOnce();
    const waiting = [windows.read('g1', 'messages', 0, 5, read), windows.read('g1', 'messages', 2, 5, read)];
    for (const result of await Promise.allSettled(waiting)) expect(result).toMatchObject({ status: 'rejected', reason: { message: 'connect ECONNREFUSED (fake outage)' } });
    expect(seqs(await windows.read('g1', 'messages', 2, 5, read))).toEqual([3, 4, 5]);
    expect(reads).toEqual([
      [0, 5],
      [0, 5],
    ]);
  });

  it('keeps windows up to its size, by their messages: the least recently read goes first', async () => {
    const { reads, read } = room(messagesUpTo(600, 1000)); // a window of 200 such messages weighs about 0.9 MB
    const windows = new ReplayWindows(2_000_000);
    for (const after of [0, 200, 400, 0]) await windows.read('g1', 'messages', after, 600, read);
    expect(reads.map(([from]) => from)).toEqual([0, 200, 400, 0]); // window 0 was dropped to keep 400
    await windows.read('g1', 'messages', 400, 600, read);
    expect(reads).toHaveLength(4); // 400 was kept
  });
});
