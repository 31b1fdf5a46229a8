import { CATCH_UP_CONCURRENCY, catchUpTurn, LIVE_FIRST_MAX_MS, LIVE_SLICES_PER_TURN, liveSliceWritten, liveWriteOut } from '../../src/catch-up';

describe('catchUpTurn', () => {
  it(`runs at most ${CATCH_UP_CONCURRENCY} at once, first come first served`, async () => {
    let running = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        catchUpTurn(async () => {
          running++;
          most = Math.max(most, running);
          order.push(i);
          await new Promise((r) => setTimeout(r, 2));
          running--;
        }),
      ),
    );
    expect(most).toBe(CATCH_UP_CONCURRENCY);
    expect(order).toEqual(Array.from({ length: 40 }, (_, i) => i));
  });

  it('lets the event loop run between turns whose work never waits', async () => {
    let done = 0;
    const turns = Array.from({ length: 200 }, () => catchUpTurn(async () => void done++));
    // Other work of the event loop, once per turn of it, noting how far the catch-up got.
    const seen: number[] = [];
    let watching = true;
    const watch = () => {
      seen.push(done);
      if (watching) setImmediate(watch);
    };
    setImmediate(watch);
    await Promise.all(turns);
    watching = false;
    expect(done).toBe(200);
    // It ran while turns were still queued, several times: they did not all run in one block.
    expect(seen.filter((n) => n > 0 && n < 200).length).toBeGreaterThan(10);
  });

  it('passes a failure on and goes on with the next turn', async () => {
    const failed = catchUpTurn(async () => {
      throw new Error('no database');
    });
    await expect(failed).rejects.toThrow('no database');
    await expect(catchUpTurn(async () => 7)).resolves.toBe(7);
  });

  it(`starts one turn per ${LIVE_SLICES_PER_TURN} slices of live frames written while a live write-out is under way, and all once it ends`, async () => {
    await catchUpTurn(async () => undefined); // no slice written since this one
    const end = liveWriteOut();
    const started: number[] = [];
    const turns = [1, 2, 3, 4].map((n) => catchUpTurn(async () => void started.push(n)));
    const rounds = async (n: number) => {
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
    };
    const slices = async (n: number) => {
      for (let i = 0; i < n; i++) {
        liveSliceWritten();
        await rounds(1);
      }
    };
    await rounds(10);
    expect(started).toEqual([]);
    await slices(LIVE_SLICES_PER_TURN - 1);
    await rounds(10);
    expect(started).toEqual([]);
    await slices(1);
    await rounds(10);
    expect(started).toEqual([1]);
    await slices(LIVE_SLICES_PER_TURN);
    await rounds(10);
    expect(started).toEqual([1, 2]);
    end();
    end(); // a second call changes nothing
    await Promise.all(turns);
    expect(started).toEqual([1, 2, 3, 4]);
    // With the mark ended twice, the next turn does not wait.
    const since = performance.now();
    await catchUpTurn(async () => undefined);
    expect(performance.now() - since).toBeLessThan(LIVE_FIRST_MAX_MS);
  });

  it(`starts anyway once no live slice has been written for ${LIVE_FIRST_MAX_MS} ms`, async () => {
    await catchUpTurn(async () => undefined); // no slice written since this one
    const end = liveWriteOut();
    try {
      const since = performance.now();
      await catchUpTurn(async () => undefined);
      expect(performance.now() - since).toBeGreaterThanOrEqual(LIVE_FIRST_MAX_MS);
    } finally {
      end();
    }
  });
});
