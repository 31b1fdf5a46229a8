import { createHmac, randomBytes } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { codeOf, createRoom, gql, must, signUp, startServer, TEST_SECRET, unique, type GqlResult, type TestServer } from '../support/harness';

let server: TestServer;
let url: string;
beforeAll(async () => {
  server = await startServer();
  url = server.url;
});
afterAll(() => server.stop());

const PASSWORD = 'correct horse battery';

const SIGN_UP = `mutation($input: SignUpInput!) {
  signUp(input: $input) { token expiresAt user { id username displayName isAssistant } }
}`;
const LOG_IN = `mutation($input: LogInInput!) {
  logIn(input: $input) { token expiresAt user { id username displayName isAssistant } }
}`;
const ME = `{ me { id username displayName isAssistant } }`;
const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`;
const LAST_SEQ = `query($id: ID!) { room(id: $id) { lastSeq } }`;

/** A short username that is unique per call (the harness's `unique()` fits the 32-character limit). */
const username = (prefix = 'a') => unique(prefix);

const signUpWith = (input: Record<string, unknown>) => gql(url, SIGN_UP, { input });
const logInWith = (input: Record<string, unknown>) => gql(url, LOG_IN, { input });

/** POSTs an operation and resolves to the raw response text, to search it for what must never appear. */
async function rawText(query: string, variables: Record<string, unknown> = {}, token?: string): Promise<string> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return res.text();
}

/** Asserts that `name` was not taken: a valid sign-up with it succeeds now. */
async function expectUsernameFree(name: string) {
  const result = await signUpWith({ username: name, password: PASSWORD });
  expect(result.errors).toBeUndefined();
  expect(result.data.signUp.user.username).toBe(name);
}

function expectBadInput(result: GqlResult, field: string) {
  expect(codeOf(result)).toBe('BAD_USER_INPUT');
  expect(result.errors![0].extensions!.field).toBe(field);
  expect(result.data ?? null).toBeNull();
}

/** The session id inside an access token. */
const sessionOf = (token: string) => (jwt.decode(token) as { sid: string }).sid;

const b64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A JWT assembled by hand, so the header can say anything (alg none, HS512 …). */
function handMadeToken(header: object, claims: object, sign: (input: string) => string): string {
  const input = `${b64url(header)}.${b64url(claims)}`;
  return `${input}.${sign(input)}`;
}

const now = () => Math.floor(Date.now() / 1000);

describe('signUp', () => {
  it('creates an account and answers a token, its expiry and the user', async () => {
    const name = username();
    const result = await signUpWith({ username: name, password: PASSWORD, displayName: 'Ada Lovelace' });
    expect(result.errors).toBeUndefined();
    const { token, expiresAt, user } = result.data.signUp;
    expect(user).toMatchObject({ username: name, displayName: 'Ada Lovelace', isAssistant: false });
    expect(typeof user.id).toBe('string');
    expect(typeof token).toBe('string');
    expect(new Date(expiresAt).getTime()).toBeGreaterThan(Date.now());
  });

  it('answers an expiresAt in the future that is exactly the token exp', async () => {
    const before = now();
    const result = await signUpWith({ username: username(), password: PASSWORD });
    const { token, expiresAt, user } = result.data.signUp;
    const decoded = jwt.decode(token, { complete: true }) as jwt.Jwt & { payload: jwt.JwtPayload };
    expect(decoded.header.alg).toBe('HS256');
    expect(decoded.payload).toMatchObject({ iss: 'chat-api', sub: user.id });
    expect(new Date(expiresAt).getTime()).toBe(decoded.payload.exp! * 1000);
    expect(new Date(expiresAt).toISOString()).toBe(expiresAt); // an ISO 8601 UTC string
    // The default lifetime of an access token is 15 minutes (refreshSession renews it).
    expect(decoded.payload.exp! - decoded.payload.iat!).toBe(900);
    expect(decoded.payload.exp!).toBeGreaterThanOrEqual(before + 900);
  });

  it('returns a token that works for me', async () => {
    const name = username();
    const { signUp: payload } = await must(url, SIGN_UP, { input: { username: name, password: PASSWORD } });
    const data = await must(url, ME, {}, payload.token);
    expect(data.me).toEqual(payload.user);
  });

  it('defaults the displayName to the username and trims a given one', async () => {
    const plain = username();
    expect((await must(url, SIGN_UP, { input: { username: plain, password: PASSWORD } })).signUp.user.displayName).toBe(plain);
    const explicitNull = username();
    expect((await must(url, SIGN_UP, { input: { username: explicitNull, password: PASSWORD, displayName: null } })).signUp.user.displayName).toBe(explicitNull);
    const trimmed = await must(url, SIGN_UP, { input: { username: username(), password: PASSWORD, displayName: '  Grace Hopper \n' } });
    expect(trimmed.signUp.user.displayName).toBe('Grace Hopper');
  });

  it('accepts the boundaries: a 3- and a 32-character username, an 8- and a 256-character password, a 64-character displayName', async () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_';
    const short = Array.from(randomBytes(3), (b) => alphabet[b % alphabet.length]).join('');
    const long = `${unique('b')}${'x'.repeat(32)}`.slice(0, 32);
    const cases = [
      { username: short, password: 'p'.repeat(8) },
      { username: long, password: 'p'.repeat(256), displayName: 'd'.repeat(64) },
      // Characters as people count them: an emoji is one (two UTF-16 code units)
      { username: username(), password: '😀'.repeat(8) },
      { username: username(), password: '😀'.repeat(256) },
    ];
    for (const input of cases) {
      const result = await signUpWith(input);
      expect(result.errors).toBeUndefined();
      expect(result.data.signUp.user).toMatchObject({ username: input.username, displayName: input.displayName ?? input.username });
      const logIn = await logInWith({ username: input.username, password: input.password });
      expect(logIn.errors).toBeUndefined();
    }
  });

  it.each([
    ['a 2-character username', 'ab'],
    ['a 33-character username', 'u'.repeat(33)],
    ['a username with a hyphen', 'ada-lovelace'],
    ['a username with a space', 'ada lovelace'],
    ['a username with a non-ASCII letter', 'adé_lovelace'],
    ['a username with a NUL character', 'ada\u0000love'],
    ['an empty username', ''],
  ])('refuses %s with BAD_USER_INPUT on username and creates no account', async (_name, bad) => {
    const result = await signUpWith({ username: bad, password: PASSWORD });
    expectBadInput(result, 'username');
    expect((await logInWith({ username: bad, password: PASSWORD })).data ?? null).toBeNull();
  });

  it.each([
    ['a 7-character password', { password: 'p'.repeat(7) }, 'password'],
    ['a 257-character password', { password: 'p'.repeat(257) }, 'password'],
    ['a password of 7 emoji (14 UTF-16 code units)', { password: '😀'.repeat(7) }, 'password'],
    ['a password of 257 emoji', { password: '😀'.repeat(257) }, 'password'],
    ['a password with a NUL character', { password: 'correct\u0000horse' }, 'password'],
    ['a blank displayName', { displayName: '   ' }, 'displayName'],
    ['a 65-character displayName', { displayName: 'd'.repeat(65) }, 'displayName'],
    ['a displayName with a NUL character', { displayName: 'Ada\u0000' }, 'displayName'],
  ])('refuses %s with BAD_USER_INPUT and leaves the username free', async (_name, bad, field) => {
    const name = username();
    const result = await signUpWith({ username: name, password: PASSWORD, ...bad });
    expectBadInput(result, field);
    await expectUsernameFree(name);
  });

  it('refuses a taken username with CONFLICT on username, regardless of case, and keeps the first account', async () => {
    const name = `Ada_${unique('').slice(1)}`;
    const first = await must(url, SIGN_UP, { input: { username: name, password: PASSWORD } });
    for (const variant of [name, name.toLowerCase(), name.toUpperCase()]) {
      const result = await signUpWith({ username: variant, password: 'another password entirely' });
      expect(codeOf(result)).toBe('CONFLICT');
      expect(result.errors![0].extensions!.field).toBe('username');
      expect(result.data ?? null).toBeNull();
    }
    // Nothing was written: the second password does not sign in, the first still does.
    expect(codeOf(await logInWith({ username: name, password: 'another password entirely' }))).toBe('UNAUTHENTICATED');
    expect((await must(url, LOG_IN, { input: { username: name, password: PASSWORD } })).logIn.user.id).toBe(first.signUp.user.id);
  });

  it('lets exactly one of several racing sign-ups of the same username succeed', async () => {
    const name = username('race');
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => signUpWith({ username: i % 2 ? name.toUpperCase() : name, password: `password number ${i}` })),
    );
    const winners = results.filter((r) => !r.errors);
    const losers = results.filter((r) => r.errors);
    expect(winners).toHaveLength(1);
    for (const loser of losers) {
      expect(codeOf(loser)).toBe('CONFLICT');
      expect(loser.errors![0].extensions!.field).toBe('username');
    }
    const winnerIndex = results.indexOf(winners[0]);
    const logIn = await must(url, LOG_IN, { input: { username: name, password: `password number ${winnerIndex}` } });
    expect(logIn.logIn.user.id).toBe(winners[0].data.signUp.user.id);
  });

  it('keeps the name assistant for the assistant, in any case', async () => {
    for (const name of ['assistant', 'Assistant', 'ASSISTANT']) {
      const result = await signUpWith({ username: name, password: PASSWORD });
      expect(codeOf(result)).toBe('CONFLICT');
      expect(result.errors![0].extensions!.field).toBe('username');
    }
  });

  it('never answers the password hash', async () => {
    const name = username();
    const texts = [await rawText(SIGN_UP, { input: { username: name, password: PASSWORD } })];
    const token = JSON.parse(texts[0]).data.signUp.token;
    texts.push(await rawText(LOG_IN, { input: { username: name, password: PASSWORD } }));
    texts.push(await rawText(ME, {}, token));
    for (const text of texts) {
      expect(text).not.toMatch(/argon2|passwordHash|password_hash/i);
      expect(text).not.toContain(PASSWORD);
    }
    const probe = await gql(url, `{ me { passwordHash } }`, {}, token);
    expect(codeOf(probe)).toBe('GRAPHQL_VALIDATION_FAILED');
  });
});

describe('logIn', () => {
  it('signs in with the right password and returns a token that works for me', async () => {
    const user = await signUp(url, username());
    const result = await must(url, LOG_IN, { input: { username: user.username, password: PASSWORD } });
    expect(result.logIn.user).toMatchObject({ id: user.id, username: user.username });
    expect(new Date(result.logIn.expiresAt).getTime()).toBe((jwt.decode(result.logIn.token) as jwt.JwtPayload).exp! * 1000);
    expect((await must(url, ME, {}, result.logIn.token)).me.id).toBe(user.id);
  });

  it('is case-insensitive on the username and answers the username as it was chosen', async () => {
    const name = `Mixed_${unique('').slice(1)}`;
    const created = await must(url, SIGN_UP, { input: { username: name, password: PASSWORD } });
    for (const variant of [name.toLowerCase(), name.toUpperCase()]) {
      const result = await must(url, LOG_IN, { input: { username: variant, password: PASSWORD } });
      expect(result.logIn.user).toMatchObject({ id: created.signUp.user.id, username: name });
    }
  });

  it('gives the same UNAUTHENTICATED answer for a wrong password and an unknown user', async () => {
    const user = await signUp(url, username());
    const wrongPassword = await logInWith({ username: user.username, password: 'not the password' });
    const unknownUser = await logInWith({ username: username('nobody'), password: 'not the password' });
    expect(codeOf(wrongPassword)).toBe('UNAUTHENTICATED');
    expect(wrongPassword.data ?? null).toBeNull();
    expect(unknownUser.status).toBe(wrongPassword.status);
    expect(unknownUser.errors).toEqual(wrongPassword.errors);
    expect(JSON.stringify(wrongPassword)).not.toContain(user.username);
  });

  it('does not sign in as the assistant, which has no password, and answers as for an unknown user', async () => {
    const assistant = await logInWith({ username: 'assistant', password: 'not the password' });
    const unknownUser = await logInWith({ username: username('nobody'), password: 'not the password' });
    expect(codeOf(assistant)).toBe('UNAUTHENTICATED');
    expect(assistant.errors).toEqual(unknownUser.errors);
    expect(codeOf(await logInWith({ username: 'assistant', password: '' }))).toBe('UNAUTHENTICATED');
  });

  it('does not sign in with a near miss of the password or an empty one', async () => {
    const [ada, bob] = await Promise.all([signUp(url, username()), signUp(url, username())]);
    expect(codeOf(await logInWith({ username: ada.username, password: PASSWORD.slice(0, -1) }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await logInWith({ username: ada.username, password: `${PASSWORD} ` }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await logInWith({ username: bob.username, password: '' }))).toBe('UNAUTHENTICATED');
  });

  it('answers a client error, not a server fault, for a NUL character in the username or password', async () => {
    const user = await signUp(url, username());
    const nulName = await logInWith({ username: `${user.username}\u0000`, password: PASSWORD });
    expectBadInput(nulName, 'username');
    const nulPassword = await logInWith({ username: user.username, password: `${PASSWORD}\u0000` });
    expect(codeOf(nulPassword)).toBe('UNAUTHENTICATED');
  });
});

describe('me and tokens', () => {
  let ada: Awaited<ReturnType<typeof signUp>>;
  let roomId: string;
  beforeAll(async () => {
    ada = await signUp(url, username());
    roomId = await createRoom(url, ada);
  });

  /** Asserts that `token` is not accepted: me is null and sending is UNAUTHENTICATED, writing nothing. */
  async function expectRejected(token: string) {
    const me = await gql(url, ME, {}, token);
    expect(me.errors).toBeUndefined();
    expect(me.data.me).toBeNull();
    const sent = await gql(url, SEND, { input: { roomId, body: 'should not be written' } }, token);
    expect(codeOf(sent)).toBe('UNAUTHENTICATED');
    expect((await must(url, LAST_SEQ, { id: roomId }, ada.token)).room.lastSeq).toBe(0);
  }

  it('is null without a token', async () => {
    const result = await gql(url, ME);
    expect(result.errors).toBeUndefined();
    expect(result.data.me).toBeNull();
  });

  it('accepts a token signed by hand with the server secret, HS256, issuer chat-api and a live session (the control for the cases below)', async () => {
    const sid = sessionOf(ada.token);
    const token = jwt.sign({ sid }, TEST_SECRET, { algorithm: 'HS256', issuer: 'chat-api', subject: ada.id, expiresIn: 60 });
    expect((await must(url, ME, {}, token)).me.id).toBe(ada.id);
    const manual = handMadeToken({ alg: 'HS256', typ: 'JWT' }, { sub: ada.id, sid, iss: 'chat-api', iat: now(), exp: now() + 60 }, (input) =>
      createHmac('sha256', TEST_SECRET).update(input).digest('base64url'),
    );
    expect((await must(url, ME, {}, manual)).me.id).toBe(ada.id);
  });

  it('answers me with null for a valid token of an account that does not exist', async () => {
    const token = jwt.sign({ sid: sessionOf(ada.token) }, TEST_SECRET, { algorithm: 'HS256', issuer: 'chat-api', subject: '00000000-0000-4000-8000-000000000000', expiresIn: 60 });
    const result = await gql(url, ME, {}, token);
    expect(result.errors).toBeUndefined();
    expect(result.data.me).toBeNull();
  });

  it('does not accept a well-signed token without a session, or with a session that is not the user\'s', async () => {
    await expectRejected(jwt.sign({}, TEST_SECRET, { algorithm: 'HS256', issuer: 'chat-api', subject: ada.id, expiresIn: 60 }));
    await expectRejected(jwt.sign({ sid: '00000000-0000-4000-8000-000000000000' }, TEST_SECRET, { algorithm: 'HS256', issuer: 'chat-api', subject: ada.id, expiresIn: 60 }));
    const other = await signUp(url, username());
    await expectRejected(jwt.sign({ sid: sessionOf(other.token) }, TEST_SECRET, { algorithm: 'HS256', issuer: 'chat-api', subject: ada.id, expiresIn: 60 }));
  });

  it('answers each of many requests arriving together by its own session (checked together, one bad session id spoils none)', async () => {
    const bob = await signUp(url, username());
    const loggedOut = await signUp(url, username());
    expect((await must(url, `mutation { logOut }`, {}, loggedOut.token)).logOut).toBe(true);
    const sign = (sid: string, sub: string) => jwt.sign({ sid }, TEST_SECRET, { algorithm: 'HS256', issuer: 'chat-api', subject: sub, expiresIn: 60 });
    const cases: Array<[string, string | null]> = [
      [ada.token, ada.id],
      [bob.token, bob.id],
      [loggedOut.token, null],
      [sign(sessionOf(bob.token), ada.id), null], // bob's session under ada's name
      [sign('not-a-session-id', ada.id), null],
      [sign('00000000-0000-4000-8000-000000000000', bob.id), null],
    ];
    const many = Array.from({ length: 5 }, () => cases).flat();
    const answers = await Promise.all(many.map(([token]) => gql(url, ME, {}, token)));
    answers.forEach((answer, i) => {
      expect(answer.errors).toBeUndefined();
      expect(answer.data.me?.id ?? null).toBe(many[i][1]);
    });
  });

  it('does not accept an expired token', async () => {
    const token = jwt.sign({ sub: ada.id, sid: sessionOf(ada.token), iss: 'chat-api', iat: now() - 3600, exp: now() - 60 }, TEST_SECRET, { algorithm: 'HS256' });
    await expectRejected(token);
  });

  it('does not accept a token with alg none', async () => {
    const claims = { sub: ada.id, sid: sessionOf(ada.token), iss: 'chat-api', iat: now(), exp: now() + 3600 };
    await expectRejected(handMadeToken({ alg: 'none', typ: 'JWT' }, claims, () => ''));
    await expectRejected(handMadeToken({ alg: 'NONE', typ: 'JWT' }, claims, () => ''));
  });

  it('does not accept a token signed with another secret', async () => {
    const token = jwt.sign({ sid: sessionOf(ada.token) }, `${TEST_SECRET}-but-another-one`, { algorithm: 'HS256', issuer: 'chat-api', subject: ada.id, expiresIn: 3600 });
    await expectRejected(token);
  });

  it('does not accept a token signed with HS512, even with the server secret', async () => {
    const token = jwt.sign({ sid: sessionOf(ada.token) }, TEST_SECRET, { algorithm: 'HS512', issuer: 'chat-api', subject: ada.id, expiresIn: 3600 });
    await expectRejected(token);
  });

  it('does not accept a token of another issuer or without one', async () => {
    await expectRejected(jwt.sign({ sid: sessionOf(ada.token) }, TEST_SECRET, { algorithm: 'HS256', issuer: 'someone-else', subject: ada.id, expiresIn: 3600 }));
    await expectRejected(jwt.sign({ sid: sessionOf(ada.token) }, TEST_SECRET, { algorithm: 'HS256', subject: ada.id, expiresIn: 3600 }));
  });

  it('does not accept a tampered token', async () => {
    const [header, , signature] = ada.token.split('.');
    const forged = `${header}.${b64url({ sub: '00000000-0000-4000-8000-000000000000', sid: sessionOf(ada.token), iss: 'chat-api', exp: now() + 3600 })}.${signature}`;
    await expectRejected(forged);
    await expectRejected('not.a.jwt');
  });

  it('treats an Authorization header without Bearer as no valid token', async () => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: ada.token },
      body: JSON.stringify({ query: ME }),
    });
    const body = (await res.json()) as GqlResult;
    expect(body.data.me).toBeNull();
  });
});

describe('logIn attempts', () => {
  let limited: TestServer;
  beforeAll(async () => {
    limited = await startServer({ LOGIN_ATTEMPTS_PER_15_MIN: '3' });
  });
  afterAll(() => limited.stop());

  const LOGIN = `mutation($input: LogInInput!) { logIn(input: $input) { token } }`;

  it('answers RATE_LIMITED with retryAfterMs once a username’s attempts are spent, even for the right password', async () => {
    const ada = await signUp(limited.url);
    for (let i = 0; i < 3; i++) {
      expect(codeOf(await gql(limited.url, LOGIN, { input: { username: ada.username, password: 'wrong password' } }))).toBe('UNAUTHENTICATED');
    }
    const blocked = await gql(limited.url, LOGIN, { input: { username: ada.username.toUpperCase(), password: PASSWORD } });
    expect(codeOf(blocked)).toBe('RATE_LIMITED');
    expect(blocked.errors![0].extensions!.retryAfterMs).toBeGreaterThan(0);
  });

  it('gives the attempts back after a successful log-in', async () => {
    const bob = await signUp(limited.url);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) await gql(limited.url, LOGIN, { input: { username: bob.username, password: 'wrong password' } });
      expect((await must(limited.url, LOGIN, { input: { username: bob.username, password: PASSWORD } })).logIn.token).toEqual(expect.any(String));
    }
  });

  it('limits an unknown username the same way', async () => {
    const ghost = unique('ghost');
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push(codeOf(await gql(limited.url, LOGIN, { input: { username: ghost, password: 'whatever1' } })));
    expect(codes).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED']);
  });
});
