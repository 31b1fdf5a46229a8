// Access tokens (src/auth/tokens.ts): a token verified once is remembered, but never past its
// expiry, and only that exact token is: anything else is verified afresh.
import jwt from 'jsonwebtoken';
import { TokenService } from '../../src/auth/tokens';

const SECRET = 'a-secret-for-the-token-unit-tests-that-is-long-enough';
const USER = '11111111-1111-4111-8111-111111111111';
const SESSION = '22222222-2222-4222-8222-222222222222';

afterEach(() => jest.restoreAllMocks());

it('refuses a remembered token as expired from the second of its expiry on, as an unremembered one is', () => {
  const tokens = new TokenService(SECRET, 60);
  const { token, expiresAt } = tokens.issue(USER, SESSION);
  expect(tokens.check(token)).toEqual({ viewer: { id: USER, sessionId: SESSION, expiresAt: expiresAt.getTime() } });
  const now = jest.spyOn(Date, 'now');
  now.mockReturnValue(expiresAt.getTime() - 1);
  expect(tokens.check(token)).toMatchObject({ viewer: { id: USER } }); // remembered, still valid
  expect(new TokenService(SECRET, 60).check(token)).toMatchObject({ viewer: { id: USER } }); // the same answer afresh
  now.mockReturnValue(expiresAt.getTime());
  expect(tokens.check(token)).toEqual({ refused: 'expired' });
  expect(new TokenService(SECRET, 60).check(token)).toEqual({ refused: 'expired' });
  expect(tokens.check(token)).toEqual({ refused: 'expired' }); // and stays refused
});

it('verifies anything but the remembered token itself afresh: another signature, another secret, a changed claim', () => {
  const tokens = new TokenService(SECRET, 60);
  const { token } = tokens.issue(USER, SESSION);
  expect(tokens.check(token)).toMatchObject({ viewer: { id: USER } });
  const [header, payload, signature] = token.split('.');
  const flipped = signature[0] === 'A' ? `B${signature.slice(1)}` : `A${signature.slice(1)}`;
  expect(tokens.check(`${header}.${payload}.${flipped}`)).toEqual({ refused: 'invalid' });
  const claims = jwt.decode(token) as Record<string, unknown>;
  const otherSecret = jwt.sign({ ...claims }, `${SECRET}-another`, { algorithm: 'HS256' });
  expect(tokens.check(otherSecret)).toEqual({ refused: 'invalid' });
  const otherUser = Buffer.from(JSON.stringify({ ...claims, sub: '33333333-3333-4333-8333-333333333333' })).toString('base64url');
  expect(tokens.check(`${header}.${otherUser}.${signature}`)).toEqual({ refused: 'invalid' });
  expect(tokens.check(token)).toMatchObject({ viewer: { id: USER } });
});

it('skips the signature check for a remembered token', () => {
  const tokens = new TokenService(SECRET, 60);
  const { token } = tokens.issue(USER, SESSION);
  const verify = jest.spyOn(jwt, 'verify');
  for (let i = 0; i < 5; i++) expect(tokens.check(token)).toMatchObject({ viewer: { id: USER, sessionId: SESSION } });
  expect(verify).toHaveBeenCalledTimes(1);
});
