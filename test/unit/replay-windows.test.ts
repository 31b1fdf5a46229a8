import { REPLAY_WINDOW, ReplayWindows, type ReplaySource } from '../../src/chat/replay-windows';
import type { MessageModel } from '../../src/pubsub';
import { sharedAs } from '../../src/push-stream';

/**
 * A room of `n` messages numbered 1..n (seq and change alike, bodies of `bodyLength` characters)
 * as the windows read it, every read and check recorded; `change(seq)` commits a change of a
 * message (its next change number), `failOnce()` fails the next read.
 */
function room(n: number, bodyLength = 10) {
  let messages = Array.from({ length: n }, (_, i) => ({ seq: i + 1, changeSeq: i + 1, body: 'x'.repeat(bodyLength) }) as MessageModel);
  let lastChange = n;
  const reads: Array<[number, number]> = [];
  const checks: Array<[number, number[]]> = [];
  let failNext = false;
  const source: ReplaySource = {
    position: () => lastChange,
    read: async (from, to) => {
      reads.push([from, to]);
      if (failNext) {
        failNext = false;
        throw new Error('connect ECONNREFUSED (fake outage)');
      }
      return messages.filter((m) => m.seq > from && m.seq <= to);
    },
    changedSince: async (after, seqs) => {
      checks.push([after, seqs]);
      return messages.some((m) => m.changeSeq > after && seqs.includes(m.seq));
    },
  };
  const change = (seq: number) => {
    const changed = { ...messages[seq - 1], changeSeq: ++lastChange, body: 'edited' };
    messages = messages.map((m) => (m.seq === seq ? changed : m));
  };
  return { source, reads, checks, change, failOnce: () => (failNext = true) };
}

const seqs = (read: { messages: MessageModel[] }) => read.messages.map((m) => m.seq);

describe('ReplayWindows', () => {
  it('serves the feeds asking for one window before its read begins from that one read, each its part after its position, with the same events', async () => {
    const windows = new ReplayWindows();
    const { source, reads, checks } = room(450);
    const [a, b] = await Promise.all([windows.read('r', 'messages', 10, 450, source), windows.read('r', 'messages', 13, 450, source)]);
    expect([seqs(a)[0], seqs(a).length, a.through]).toEqual([11, 190, REPLAY_WINDOW]);
    expect([seqs(b)[0], seqs(b).length, b.through]).toEqual([14, 187, REPLAY_WINDOW]);
    expect(reads).toEqual([[0, 200]]);
    expect(checks).toEqual([]);
    const message = b.messages[0];
    expect(a.event(message, 'added', '14')).toBe(b.event(message, 'added', '14'));
    expect(a.event(message, 'added', '14')).not.toBe(a.event(message, 'updated', '14'));
  });

  it('serves a kept window to a feed that asks later only after a check of its messages, shared by the feeds asking before it begins', async () => {
    const windows = new ReplayWindows();
    const { source, reads, checks } = room(450);
    const first = await windows.read('r', 'messages', 0, 450, source);
    const [later, other] = await Promise.all([windows.read('r', 'messages', 13, 450, source), windows.read('r', 'messages', 0, 450, source)]);
    expect(seqs(later)).toEqual(seqs(first).slice(13));
    expect(seqs(other)).toEqual(seqs(first));
    expect(reads).toEqual([[0, 200]]);
    expect(checks).toEqual([[450, seqs(first)]]); // every change the read did not see is above 450
    // A later check serves its own feeds: their events are not the first read's.
    expect(other.event(other.messages[0], 'added', '1')).not.toBe(first.event(first.messages[0], 'added', '1'));
  });

  it('shares the events of a window\'s reads and checks as one for executions that read no viewer, for 2 s at most', async () => {
    const windows = new ReplayWindows();
    const { source } = room(50);
    const asOf = async () => {
      const read = await windows.read('r', 'messages', 0, 50, source);
      return sharedAs(read.event(read.messages[0], 'added', '1'));
    };
    const first = await asOf();
    expect(await asOf()).toBe(first); // a check's feeds: other event objects, shared as the read's
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect(await asOf()).not.toBe(first);
  });

  it('reads a kept window again when one of its messages changed since its read, whether or not anyone was told', async () => {
    const windows = new ReplayWindows();
    const { source, reads, change } = room(450);
    await windows.read('r', 'messages', 0, 450, source);
    change(3); // change 451, of a message in the window
    const again = await windows.read('r', 'messages', 0, 450, source);
    expect(again.messages[2]).toMatchObject({ seq: 3, changeSeq: 451, body: 'edited' });
    expect(reads).toEqual([
      [0, 200],
      [0, 200],
    ]);
    change(300); // outside the window: it is still served
    await windows.read('r', 'messages', 0, 450, source);
    expect(reads).toHaveLength(2);
  });

  it('reads a kept window again while it holds an assistant reply still streaming (its text is saved outside the change log)', async () => {
    const windows = new ReplayWindows();
    const { source, reads, checks } = room(50);
    const streaming: ReplaySource = {
      ...source,
      read: async (from, to) => (await source.read(from, to)).map((m) => (m.seq === 50 ? { ...m, status: 'STREAMING' as const } : m)),
    };
    await windows.read('r', 'messages', 0, 50, streaming);
    await windows.read('r', 'messages', 0, 50, streaming);
    expect(reads).toEqual([
      [0, 50],
      [0, 50],
    ]);
    expect(checks).toEqual([]);
  });

  it('checks a window whose read was under way when a feed asked, once that read is done', async () => {
    const windows = new ReplayWindows();
    const { source, reads, checks, change } = room(50);
    let releaseRead!: () => void;
    const gate = new Promise<void>((resolve) => (releaseRead = resolve));
    // The read's snapshot is taken when it begins; its answer comes once released.
    const held: ReplaySource = { ...source, read: (from, to) => source.read(from, to).then((messages) => gate.then(() => messages)) };
    const early = windows.read('r', 'messages', 0, 50, held);
    await new Promise((resolve) => setTimeout(resolve, 20)); // the read has begun (its turn came)
    change(7); // committed after the read began: the read may not have seen it
    const late = windows.read('r', 'messages', 0, 50, held);
    releaseRead();
    const [fromEarly, fromLate] = await Promise.all([early, late]);
    expect(fromEarly.messages[6].body).toBe('x'.repeat(10)); // asked before the change
    expect(fromLate.messages[6]).toMatchObject({ seq: 7, body: 'edited' }); // asked after it
    expect(checks).toHaveLength(1);
    expect(reads).toHaveLength(2);
  });

  it('keeps and serves again a window of change numbers that holds no message, every change in it superseded', async () => {
    const windows = new ReplayWindows();
    const { source, reads, checks } = room(0);
    for (let i = 0; i < 2; i++) expect(await windows.read('r', 'changes', 251, 400, source)).toMatchObject({ messages: [], through: 400 });
    expect(reads).toEqual([[200, 400]]);
    expect(checks).toEqual([]); // nothing in it could have changed
  });

  it('gives a feed only what it asked up to, and reads a window again for one that asks further than it was read', async () => {
    const windows = new ReplayWindows();
    const { source, reads } = room(450);
    expect(await windows.read('r', 'changes', 400, 430, source)).toMatchObject({ through: 430 });
    const shorter = await windows.read('r', 'changes', 400, 420, source);
    expect([seqs(shorter).length, shorter.through]).toEqual([20, 420]);
    const further = await windows.read('r', 'changes', 410, 450, source);
    expect([seqs(further)[0], seqs(further).length, further.through]).toEqual([411, 40, 450]);
    expect(reads).toEqual([
      [400, 430],
      [400, 450],
    ]);
  });

  it('never serves a window to another room or order', async () => {
    const windows = new ReplayWindows();
    const { source, reads } = room(50);
    await windows.read('r', 'messages', 0, 50, source);
    await windows.read('s', 'messages', 0, 50, source);
    await windows.read('s', 'changes', 0, 50, source);
    expect(reads).toHaveLength(3);
  });

  it('drops a window whose read failed: every feed waiting on it fails, and the next read reads again', async () => {
    const windows = new ReplayWindows();
    const { source, reads, failOnce } = room(5);
    failOnce();
    const waiting = [windows.read('r', 'messages', 0, 5, source), windows.read('r', 'messages', 2, 5, source)];
    for (const result of await Promise.allSettled(waiting)) expect(result).toMatchObject({ status: 'rejected', reason: { message: 'connect ECONNREFUSED (fake outage)' } });
    expect(seqs(await windows.read('r', 'messages', 2, 5, source))).toEqual([3, 4, 5]);
    expect(reads).toEqual([
      [0, 5],
      [0, 5],
    ]);
  });

  it('keeps windows up to its size, by their messages: the least recently read goes first', async () => {
    const { source, reads } = room(600, 2000); // a window of 200 such messages weighs about 0.9 MB
    const windows = new ReplayWindows(2_000_000);
    for (const after of [0, 200, 400, 0]) await windows.read('r', 'messages', after, 600, source);
    expect(reads.map(([from]) => from)).toEqual([0, 200, 400, 0]); // window 0 was dropped to keep 400
    await windows.read('r', 'messages', 400, 600, source);
    expect(reads).toHaveLength(4); // 400 was kept
  });
});
