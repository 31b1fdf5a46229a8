import { AppError } from '../../src/errors';
import { createRoomInput, fullyQualified, isUuid, logInInput, MAX_BODY_LENGTH, pageSize, parseInput, reactionInput, sendMessageInput, signUpInput } from '../../src/validation';

/** The AppError `fn` throws. */
function thrown(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected a throw');
}

const expectField = (fn: () => unknown, field: string | undefined) => {
  const error = thrown(fn);
  expect(error.code).toBe('BAD_USER_INPUT');
  expect(error.extensions.field).toBe(field);
  return error;
};

describe('isUuid', () => {
  it('accepts UUIDs in either case and nothing else', () => {
    expect(isUuid('3f2504e0-4f89-41d3-9a0c-0305e82c3301')).toBe(true);
    expect(isUuid('3F2504E0-4F89-41D3-9A0C-0305E82C3301')).toBe(true);
    for (const bad of ['', 'nope', '3f2504e0-4f89-41d3-9a0c-0305e82c330', '3f2504e0-4f89-41d3-9a0c-0305e82c3301 ', '3f2504e0x4f89-41d3-9a0c-0305e82c3301', null, undefined, 42, {}]) {
      expect(isUuid(bad)).toBe(false);
    }
  });
});

describe('parseInput', () => {
  it('returns the parsed value, trimmed where the schema trims', () => {
    expect(parseInput(signUpInput, { username: 'ada_1', password: 'p'.repeat(8), displayName: '  Ada  ' })).toEqual({
      username: 'ada_1',
      password: 'p'.repeat(8),
      displayName: 'Ada',
    });
    expect(parseInput(createRoomInput, { name: ' Lobby ', kind: 'PRIVATE' })).toEqual({ name: 'Lobby', kind: 'PRIVATE' });
  });

  it('names the field at fault in extensions.field and at the start of the message', () => {
    const error = expectField(() => parseInput(signUpInput, { username: 'ab', password: 'p'.repeat(8) }), 'username');
    expect(error.message).toBe('username must be at least 3 characters');
  });

  it('prefixes the field with the given name, for a bare argument', () => {
    const error = expectField(() => parseInput(pageSize(100), 0, 'first'), 'first');
    expect(error.message).toBe('first must be at least 1');
  });

  it('leaves the field out when no field is at fault', () => {
    const error = expectField(() => parseInput(pageSize(100), 0), undefined);
    expect(error.extensions).toEqual({ code: 'BAD_USER_INPUT' });
  });
});

describe('signUpInput', () => {
  const valid = { username: 'ada_LOVELACE_1', password: 'p'.repeat(8) };

  it.each([
    ['username', 'ab'],
    ['username', 'u'.repeat(33)],
    ['username', 'ada-l'],
    ['username', 'ada l'],
    ['username', 'adé'],
    ['username', 'ada\u0000'],
    ['password', 'p'.repeat(7)],
    ['password', 'p'.repeat(257)],
    ['password', 'pppp\u0000ppp'],
    ['displayName', ''],
    ['displayName', '   '],
    ['displayName', 'd'.repeat(65)],
    ['displayName', 'Ada\u0000'],
    ['displayName', '\u200B\u3164'], // a zero-width space and a Hangul filler: nothing to see
    ['displayName', '\u2800'],
    ['displayName', 'Ada\nLovelace'],
    ['displayName', 'Ada\u001B[31m'],
    ['displayName', 'Ada\u2028Lovelace'], // a line separator
    ['displayName', 'Ada\u202Eecalevol'], // a right-to-left override: read otherwise than written
  ])('refuses %s %j', (field, value) => {
    expectField(() => parseInput(signUpInput, { ...valid, [field]: value }), field);
  });

  it('accepts the limits', () => {
    for (const input of [
      { username: 'abc', password: 'p'.repeat(8) },
      { username: 'u'.repeat(32), password: 'p'.repeat(256), displayName: 'd'.repeat(64) },
      { ...valid, displayName: null },
    ]) {
      expect(() => parseInput(signUpInput, input)).not.toThrow();
    }
  });
});

describe('logInInput', () => {
  it('accepts any short credentials, leaving the check to the account lookup', () => {
    expect(parseInput(logInInput, { username: 'x', password: '' })).toEqual({ username: 'x', password: '' });
  });

  it('refuses over-long credentials on their field', () => {
    expectField(() => parseInput(logInInput, { username: 'u'.repeat(33), password: 'p' }), 'username');
    expectField(() => parseInput(logInInput, { username: 'u', password: 'p'.repeat(257) }), 'password');
  });

  it('refuses a NUL character in the username, which no account can have', () => {
    expectField(() => parseInput(logInInput, { username: 'ada\u0000', password: 'p'.repeat(8) }), 'username');
  });
});

describe('createRoomInput', () => {
  it.each([
    ['name', ''],
    ['name', ' \n\t '],
    ['name', 'n'.repeat(101)],
    ['name', 'a\u0000b'],
    ['name', '\u200B\u200B'],
    ['name', 'a\tb'],
    ['name', 'a\u2029b'],
    ['name', 'a\u2066b'],
    ['kind', 'SECRET'],
    ['assistantEnabled', 'yes'],
  ])('refuses %s %j', (field, value) => {
    expectField(() => parseInput(createRoomInput, { name: 'Lobby', kind: 'PUBLIC', [field]: value }), field);
  });

  it('accepts 100 characters after trimming', () => {
    expect(parseInput(createRoomInput, { name: ` ${'n'.repeat(100)} `, kind: 'PUBLIC' }).name).toHaveLength(100);
    expect(parseInput(createRoomInput, { name: '\tLobby\n', kind: 'PUBLIC' }).name).toBe('Lobby');
  });
});

describe('sendMessageInput', () => {
  const valid = { roomId: 'r', body: 'hi' };

  it.each([
    ['body', ''],
    ['body', ' \n '],
    ['body', 'x'.repeat(MAX_BODY_LENGTH + 1)],
    ['body', 'a\u0000b'],
    ['body', '\u200B\u200B'], // zero-width spaces: blank to the eye
    ['body', '\u034F\u2060\uFEFF\u00AD'],
    ['body', '\u2800 \u2800'], // the blank Braille pattern: an empty cell
    ['body', '\u0001\u0007'],
    ['body', 'ok\u001B[2J'], // a terminal's escape
    ['body', 'ok\u0085'],
    ['clientId', ''],
    ['clientId', 'c'.repeat(129)],
    ['clientId', 'c\u0000'],
  ])('refuses %s %j', (field, value) => {
    expectField(() => parseInput(sendMessageInput, { ...valid, [field]: value }), field);
  });

  it('keeps the body as written, surrounding spaces included', () => {
    expect(parseInput(sendMessageInput, { ...valid, body: '  indented\n' }).body).toBe('  indented\n');
    expect(parseInput(sendMessageInput, { ...valid, body: 'a\tb\r\nc' }).body).toBe('a\tb\r\nc');
    expect(parseInput(sendMessageInput, { ...valid, body: '\u200B👍' }).body).toBe('\u200B👍');
    expect(parseInput(sendMessageInput, { ...valid, body: '👩‍💻' }).body).toBe('👩‍💻');
    expect(parseInput(sendMessageInput, { ...valid, body: '\u2800\u2813\u280A' }).body).toBe('\u2800\u2813\u280A'); // Braille that says something
    expect(parseInput(sendMessageInput, { ...valid, body: 'x'.repeat(MAX_BODY_LENGTH), clientId: 'c'.repeat(128) }).clientId).toHaveLength(128);
  });
});

describe('pageSize', () => {
  it('accepts 1 to max, whole numbers only', () => {
    expect(parseInput(pageSize(100), 1, 'first')).toBe(1);
    expect(parseInput(pageSize(100), 100, 'first')).toBe(100);
    expectField(() => parseInput(pageSize(100), 101, 'first'), 'first');
    expectField(() => parseInput(pageSize(100), 1.5, 'first'), 'first');
    expectField(() => parseInput(pageSize(100), -1, 'last'), 'last');
  });
});

describe('reaction emoji', () => {
  const points = (text: string) => [...text].map((p) => p.codePointAt(0)!.toString(16));

  it.each([
    ['❤', '❤️'],
    ['☺', '☺️'],
    ['🏳‍🌈', '🏳️‍🌈'],
    ['❤‍🔥', '❤️‍🔥'],
    ['👁‍🗨', '👁️‍🗨️'],
    ['1⃣', '1️⃣'],
    ['⛹🏽‍♀', '⛹🏽‍♀️'],
    ['❤️️', '❤️'],
    ['\u2764\uFE0E', '❤️'], // text presentation asked for: still the same reaction
    ['\u{1F44D}\uFE0F', '👍'], // a needless VS16
    ['🇫🇷\uFE0F', '🇫🇷'],
    ['\u26F9\uFE0F\u{1F3FD}', '⛹🏽'], // none before a skin tone
  ])('takes %s in its fully-qualified form %s', (sent, qualified) => {
    expect(points(fullyQualified(sent))).toEqual(points(qualified));
    expect(points(parseInput(reactionInput, { messageId: 'm', emoji: sent }).emoji)).toEqual(points(qualified));
  });

  it.each(['❤️', '👍', '👍🏽', '🏳️‍🌈', '1️⃣', '#️⃣', '👩🏽‍💻', '🇫🇷', '⛹🏽‍♀️', '🏴‍☠️', ':shipit:'])('keeps %s as it is', (sent) => {
    expect(points(parseInput(reactionInput, { messageId: 'm', emoji: sent }).emoji)).toEqual(points(sent));
  });

  it.each(['\u20E3', 'a\u20E3', '\u{1F44D}\u20E3', '11\uFE0F\u20E3', '\uFE0F', '\uFE0E'])('refuses %j: a keycap mark on anything but 0–9, # or *, or a selector alone', (sent) => {
    expect(thrown(() => parseInput(reactionInput, { messageId: 'm', emoji: sent })).extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'emoji' });
  });

  it.each([
    ['a grapheme joiner', '👍\u034F'],
    ['a joiner at the end', '👍\u200D'],
    ['a non-joiner', '👍\u200C'],
    ['a tag without its end', '👍\u{E0020}'],
    ['a combining accent', '👍\u0300'],
    ['three skin tones', '👍🏽🏽🏽'],
    ['twenty grapheme joiners', '👍' + '\u034F'.repeat(20)],
    ['tags and their end (drawn as nothing)', '👍\u{E0061}\u{E0062}\u{E0063}\u{E007F}'],
    ['a subdivision no flag is drawn for', '🏴\u{E0078}\u{E0078}\u{E007F}'],
  ])('refuses an emoji followed by %s, which would pass for another reaction drawn alike', (_what, sent) => {
    expect(thrown(() => parseInput(reactionInput, { messageId: 'm', emoji: sent })).extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'emoji' });
  });

  it.each(['🧑‍🤝‍🧑', '🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}', '🙂‍↔️', '🐦‍🔥'])('takes %s, an emoji made as Unicode makes them, listed lately or not', (sent) => {
    expect(() => parseInput(reactionInput, { messageId: 'm', emoji: sent })).not.toThrow();
  });
});

describe('text as people count it', () => {
  it('counts an emoji as one character in a message body', () => {
    expect(() => parseInput(sendMessageInput, { roomId: 'r', body: '😀'.repeat(4000) })).not.toThrow();
    expect(() => parseInput(sendMessageInput, { roomId: 'r', body: '😀'.repeat(4001) })).toThrow(/at most 4000/);
  });

  it('refuses an unpaired surrogate, which could not be stored as sent', () => {
    expect(() => parseInput(sendMessageInput, { roomId: 'r', body: 'a\ud800b' })).toThrow(/surrogate/);
    expect(() => parseInput(sendMessageInput, { roomId: 'r', body: 'a\udc00' })).toThrow(/surrogate/);
    expect(() => parseInput(sendMessageInput, { roomId: 'r', body: 'ok 😀' })).not.toThrow();
  });
});
