import { AddedSet } from '../../src/chat/added-set';

// The set of messages a roomEvents stream has carried as added, and its spelling in event cursors
// (docs/guarantees.md, guarantee 8: a client resuming from a cursor gets as added exactly what it lacks).

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
}

describe('AddedSet', () => {
  it('answers as a plain set of seqs would, in any order of marks, and its snapshot reads back as the same set', () => {
    for (let round = 0; round < 200; round++) {
      const next = random(round + 1);
      const watermark = Math.floor(next() * 5);
      const set = new AddedSet(watermark);
      const model = new Set(Array.from({ length: watermark }, (_, i) => i + 1));
      for (let i = 0; i < 60; i++) {
        const seq = 1 + Math.floor(next() * 40);
        expect(set.mark(seq)).toBe(model.has(seq));
        model.add(seq);
        let upTo = 0;
        while (model.has(upTo + 1)) upTo++;
        expect(set.upTo).toBe(upTo);
        expect(set.highest).toBe(Math.max(watermark, ...model));
        expect(AddedSet.parse(set.snapshot())!.equals(set)).toBe(true);
      }
    }
  });

  it('spells runs of early seqs as ranges, so a long replay ahead of an old message keeps its cursor exact', () => {
    const set = new AddedSet(1);
    for (let seq = 3; seq <= 150; seq++) set.mark(seq);
    expect(set.snapshot()).toBe('1.3-150');
    const resumed = AddedSet.parse(set.snapshot())!;
    expect(resumed.mark(50)).toBe(true); // carried already: an update
    expect(resumed.mark(2)).toBe(false); // not yet: added
    expect(resumed.snapshot()).toBe('150');
    expect(set.clone().equals(set)).toBe(true);
  });

  it('keeps only the watermark in a cursor past 100 runs (some messages may then come again as added)', () => {
    const set = new AddedSet(0);
    for (let seq = 2; seq <= 202; seq += 2) set.mark(seq); // 101 runs of one
    expect(set.snapshot()).toBe('0');
    const exactly100 = new AddedSet(0);
    for (let seq = 2; seq <= 200; seq += 2) exactly100.mark(seq);
    expect(exactly100.snapshot().split('.')).toHaveLength(101);
    expect(AddedSet.parse(exactly100.snapshot())!.equals(exactly100)).toBe(true);
  });

  it('reads the cursors of earlier releases, and merges or clips what a hand-made one overlaps', () => {
    expect(AddedSet.parse('12.15.16')!.snapshot()).toBe('12.15-16');
    expect(AddedSet.parse('5.3-7')!.snapshot()).toBe('7'); // below the watermark, then adjacent to it
    expect(AddedSet.parse('5.12.8.9-10.10-11')!.snapshot()).toBe('5.8-12');
    expect(AddedSet.parse('2147483647')!.upTo).toBe(2 ** 31 - 1);
  });

  it.each(['', 'x', '1.', '1.x', '1.5-x', '1.5-', '1.-5', '1.5-3', '1.2-3-4', '1.-', '2147483648', '1.5-2147483648', '-1', '1e3', ` 1`, `0.${Array.from({ length: 101 }, (_, i) => i + 2).join('.')}`])(
    'refuses %j',
    (text) => {
      expect(AddedSet.parse(text)).toBeUndefined();
    },
  );
});
