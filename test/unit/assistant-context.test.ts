import { buildTurns, DEFAULT_INSTRUCTIONS, type ThreadEntry } from '../../src/assistant/context';

const ada = (body: string): ThreadEntry => ({ username: 'ada', displayName: 'Ada Lovelace', isAssistant: false, body });
const bob = (body: string): ThreadEntry => ({ username: 'bob_b', displayName: 'Bob', isAssistant: false, body });
const bot = (body: string): ThreadEntry => ({ username: 'assistant', displayName: 'Assistant', isAssistant: true, body });

describe('buildTurns', () => {
  it('puts the room instructions first as the system prompt', () => {
    const turns = buildTurns('Answer like a pirate.', [ada('Hi')], 1000);
    expect(turns[0]).toEqual({ role: 'system', content: 'Answer like a pirate.' });
  });

  it('uses the default instructions when the room has none or only blanks', () => {
    expect(DEFAULT_INSTRUCTIONS.trim().length).toBeGreaterThan(0);
    expect(buildTurns(null, [ada('Hi')], 1000)[0]).toEqual({ role: 'system', content: DEFAULT_INSTRUCTIONS });
    expect(buildTurns('   \n ', [ada('Hi')], 1000)[0]).toEqual({ role: 'system', content: DEFAULT_INSTRUCTIONS });
  });

  it('names each person as "Display Name (@username): body" and sends assistant messages as role assistant, oldest first', () => {
    const turns = buildTurns('Be kind.', [ada('Where shall we meet?'), bot('At the lake.'), bob('Sounds good'), ada('Lake it is')], 1000);
    expect(turns).toEqual([
      { role: 'system', content: 'Be kind.' },
      { role: 'user', content: 'Ada Lovelace (@ada): Where shall we meet?' },
      { role: 'assistant', content: 'At the lake.' },
      { role: 'user', content: 'Bob (@bob_b): Sounds good' },
      { role: 'user', content: 'Ada Lovelace (@ada): Lake it is' },
    ]);
  });

  it('drops the oldest messages first so that the rest fit the budget, keeping the newest in order', () => {
    const thread = [ada('a'.repeat(30)), bob('b'.repeat(30)), ada('c'.repeat(30)), bob('d'.repeat(30))];
    const formatted = buildTurns(null, thread, 10_000).slice(1);
    const sizes = formatted.map((t) => t.content.length);
    const budget = sizes[2] + sizes[3] + 5; // the newest two fit, the newest three do not
    expect(budget).toBeLessThan(sizes[1] + sizes[2] + sizes[3]);
    const turns = buildTurns(null, thread, budget);
    expect(turns.slice(1)).toEqual(formatted.slice(2));
    expect(turns[0]).toEqual({ role: 'system', content: DEFAULT_INSTRUCTIONS });
  });

  it('keeps a message that exactly fills the budget', () => {
    const thread = [bob('older'), ada('newer')];
    const formatted = buildTurns(null, thread, 10_000).slice(1);
    const exact = formatted[0].content.length + formatted[1].content.length;
    expect(buildTurns(null, thread, exact).slice(1)).toEqual(formatted);
    expect(buildTurns(null, thread, exact - 1).slice(1)).toEqual(formatted.slice(1));
  });

  it('never drops a message in the middle: what is kept is the newest contiguous run', () => {
    // The middle one is long; a short older one would fit again, but must not be kept past the gap.
    const thread = [ada('x'), bob('y'.repeat(200)), ada('z')];
    const turns = buildTurns(null, thread, 60);
    expect(turns.slice(1)).toEqual([{ role: 'user', content: 'Ada Lovelace (@ada): z' }]);
  });

  it('always keeps the newest message, cut to the budget when it alone is larger', () => {
    const turns = buildTurns(null, [ada('old'), bob('n'.repeat(500))], 100);
    expect(turns).toHaveLength(2);
    expect(turns[1].role).toBe('user');
    expect(turns[1].content.length).toBe(100);
    expect('Bob (@bob_b): ' + 'n'.repeat(500)).toContain(turns[1].content);
  });

  it('sends only the system prompt for an empty thread', () => {
    expect(buildTurns('Hi.', [], 100)).toEqual([{ role: 'system', content: 'Hi.' }]);
  });

  it('counts assistant messages against the budget like any other', () => {
    const thread = [ada('question'), bot('a'.repeat(90)), ada('again')]; // the last is 26 characters formatted
    expect(buildTurns(null, thread, 120).slice(1)).toEqual([
      { role: 'assistant', content: 'a'.repeat(90) },
      { role: 'user', content: 'Ada Lovelace (@ada): again' },
    ]);
    expect(buildTurns(null, thread, 115).slice(1)).toEqual([{ role: 'user', content: 'Ada Lovelace (@ada): again' }]);
  });
});
