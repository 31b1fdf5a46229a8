import { GraphQLError, locatedError, parse, validate, buildSchema } from 'graphql';
import { AppError, badUserInput, conflict, ErrorCode, forbidden, maskError, notFound, rateLimited, unauthenticated } from '../../src/errors';
import { isConnectionError } from '../../src/db/errors';
import type { Logger } from '../../src/logger';

/** A logger that records what it was given. */
function fakeLog() {
  const error = jest.fn();
  const warn = jest.fn();
  return { log: { error, warn, info: jest.fn(), debug: jest.fn() } as unknown as Logger, error, warn };
}

const REQUEST_ID = 'c0ffee00-0000-4000-8000-000000000001';
const path = ['room'];

describe('error factories', () => {
  it('carry the API.md codes and the field at fault', () => {
    expect(unauthenticated().extensions).toEqual({ code: 'UNAUTHENTICATED' });
    expect(forbidden().extensions).toEqual({ code: 'FORBIDDEN' });
    expect(notFound('gone').extensions).toEqual({ code: 'NOT_FOUND' });
    expect(badUserInput('body must not be blank', 'body').extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'body' });
    expect(badUserInput('bad').extensions).toEqual({ code: 'BAD_USER_INPUT' });
    expect(conflict('taken', 'username').extensions).toEqual({ code: 'CONFLICT', field: 'username' });
  });

  it('round retryAfterMs up to a whole, positive number of milliseconds', () => {
    expect(rateLimited(1500.2).extensions).toEqual({ code: 'RATE_LIMITED', retryAfterMs: 1501 });
    expect(rateLimited(0).extensions.retryAfterMs).toBe(1);
  });

  it('are AppErrors whose code reads back', () => {
    const error = forbidden('no');
    expect(error).toBeInstanceOf(AppError);
    expect(error).toBeInstanceOf(GraphQLError);
    expect(error.code).toBe(ErrorCode.Forbidden);
  });
});

describe('maskError', () => {
  it('passes an AppError thrown in a resolver, with its path and locations, unlogged', () => {
    const { log, error } = fakeLog();
    const located = locatedError(badUserInput('name must not be blank', 'name'), undefined, path);
    const formatted = maskError(located, REQUEST_ID, log);
    expect(formatted).toMatchObject({ message: 'name must not be blank', path, extensions: { code: 'BAD_USER_INPUT', field: 'name' } });
    expect(JSON.stringify(formatted)).not.toMatch(/stack|at .*:\d+:\d+/);
    expect(error).not.toHaveBeenCalled();
  });

  it('passes a bare AppError', () => {
    const { log } = fakeLog();
    expect(maskError(conflict('That username is taken', 'username'), REQUEST_ID, log)).toMatchObject({
      message: 'That username is taken',
      extensions: { code: 'CONFLICT', field: 'username' },
    });
  });

  it('masks an unknown error as INTERNAL_SERVER_ERROR with the request id, and logs the original', () => {
    const { log, error } = fakeLog();
    const original = new Error('SELECT password_hash FROM users');
    const formatted = maskError(locatedError(original, undefined, path), REQUEST_ID, log);
    expect(formatted).toEqual({
      message: expect.stringContaining(REQUEST_ID),
      path,
      extensions: { code: 'INTERNAL_SERVER_ERROR', requestId: REQUEST_ID },
    });
    expect(JSON.stringify(formatted)).not.toMatch(/SELECT|password_hash|stack/);
    expect(error).toHaveBeenCalledTimes(1);
    expect(error.mock.calls[0][0]).toMatchObject({ err: original, requestId: REQUEST_ID });
  });

  it('masks something thrown that is not an Error at all', () => {
    const { log } = fakeLog();
    expect(maskError('a string with SELECT in it', REQUEST_ID, log).extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR', requestId: REQUEST_ID });
    expect(maskError(undefined, REQUEST_ID, log).extensions?.code).toBe('INTERNAL_SERVER_ERROR');
  });

  it('masks a GraphQLError raised during execution without a code', () => {
    const { log } = fakeLog();
    const inner = new GraphQLError('DateTime cannot represent "SELECT 1"');
    const formatted = maskError(locatedError(inner, undefined, ['message', 'createdAt']), REQUEST_ID, log);
    expect(formatted.extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR', requestId: REQUEST_ID });
  });

  it('passes a validation error of the request, as GRAPHQL_VALIDATION_FAILED', () => {
    const { log, error } = fakeLog();
    const schema = buildSchema('type Query { me: String }');
    const [validationError] = validate(schema, parse('{ shoeSize }'));
    const formatted = maskError(validationError, REQUEST_ID, log);
    expect(formatted.message).toContain('shoeSize');
    expect(formatted.extensions).toEqual({ code: 'GRAPHQL_VALIDATION_FAILED' });
    expect(formatted.locations).toEqual([{ line: 1, column: 3 }]);
    expect(error).not.toHaveBeenCalled();
  });

  it.each(['GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'BAD_USER_INPUT', 'BAD_REQUEST'])(
    'passes a request error coded %s as it is',
    (code) => {
      const { log } = fakeLog();
      const formatted = maskError(new GraphQLError('Variable "$input" got invalid value', { extensions: { code } }), REQUEST_ID, log);
      expect(formatted).toMatchObject({ message: 'Variable "$input" got invalid value', extensions: { code } });
    },
  );

  it('masks a GraphQLError wrapping an unknown error, even with a safe-looking code', () => {
    const { log } = fakeLog();
    const wrapped = new GraphQLError('relation "users_secret" does not exist', {
      originalError: new Error('relation "users_secret" does not exist'),
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const formatted = maskError(wrapped, REQUEST_ID, log);
    expect(formatted.extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR', requestId: REQUEST_ID });
    expect(formatted.message).not.toContain('users_secret');
  });

  it('answers an unreachable database as SERVICE_UNAVAILABLE with the request id, without the address', () => {
    const { log, error, warn } = fakeLog();
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' });
    const formatted = maskError(locatedError(refused, undefined, ['sendMessage']), REQUEST_ID, log);
    expect(formatted.extensions).toEqual({ code: 'SERVICE_UNAVAILABLE', requestId: REQUEST_ID });
    expect(formatted.path).toEqual(['sendMessage']);
    expect(JSON.stringify(formatted)).not.toMatch(/10\.0\.0\.5|ECONNREFUSED/);
    expect(warn.mock.calls.length + error.mock.calls.length).toBeGreaterThan(0);
  });
});

describe('isConnectionError', () => {
  const withCode = (code: string, message = code) => Object.assign(new Error(message), { code });
  it('knows the ways a database connection fails: refused, reset, aborted, terminated, not answering', () => {
    const failures = [
      withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'),
      withCode('ECONNRESET', 'read ECONNRESET'),
      withCode('ECONNABORTED', 'write ECONNABORTED'), // a connection cut from outside (e.g. `ss -K`)
      withCode('EPIPE'),
      withCode('57P01', 'terminating connection due to administrator command'),
      withCode('ENOTFOUND', 'getaddrinfo ENOTFOUND pgdb.internal'), // its host name does not resolve (now)
      withCode('EAI_AGAIN', 'getaddrinfo EAI_AGAIN pgdb.internal'),
      withCode('28P01', 'password authentication failed for user "chat"'), // a rotated password
      withCode('28000', 'role "chat" is not permitted to log in'),
      new Error('Connection terminated unexpectedly'),
      new Error('Query read timeout'), // a pipelined statement unanswered (src/db/pipelined.ts)
      { name: 'QueryFailedError', message: 'read ECONNRESET', driverError: { code: 'ECONNRESET' } },
    ];
    expect(failures.filter((err) => !isConnectionError(err))).toEqual([]);
  });

  it('knows the answers by which the database says it cannot serve for now: out of resources, read-only, shutting down, a transaction given up', () => {
    const notNow = [
      withCode('53300', 'too many connections for role "chat"'),
      withCode('53100', 'could not extend file: No space left on device'),
      withCode('53200', 'out of memory'),
      withCode('25006', 'cannot execute INSERT in a read-only transaction'),
      withCode('57P03', 'the database system is starting up'),
      withCode('40001', 'could not serialize access due to concurrent update'),
      withCode('40P01', 'deadlock detected'),
      withCode('08P01', 'protocol violation'),
      { name: 'QueryFailedError', message: 'too many connections', driverError: { code: '53300' } },
    ];
    expect(notNow.filter((err) => !isConnectionError(err))).toEqual([]);
  });

  it('leaves the database\'s answers alone: a unique violation, a lock timeout, a bad value, a plain error', () => {
    const answers = [
      withCode('23505', 'duplicate key value violates unique constraint'),
      withCode('55P03', 'canceling statement due to lock timeout'),
      withCode('22P02', 'invalid input syntax for type uuid'),
      withCode('25P02', 'current transaction is aborted'),
      new Error('boom'),
      undefined,
    ];
    expect(answers.filter((err) => isConnectionError(err))).toEqual([]);
  });
});
