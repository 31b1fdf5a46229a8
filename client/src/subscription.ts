import { CombinedGraphQLErrors } from '@apollo/client/errors';
import type { ApolloLink } from '@apollo/client';
import { print } from '@apollo/client/utilities';
import type { GraphQLFormattedError } from 'graphql';
import type { Client, SubscribePayload } from 'graphql-ws';
import { Observable } from 'rxjs';
import { backoffDelay, type RetryOptions } from './backoff.js';
import { AUTH_CLOSE_CODES, FATAL_CLOSE_CODES, SessionEndedError, hasUnauthenticated, isCloseEvent, unauthenticated } from './errors.js';
import { ResumeTracker, resumableFieldOf, withResumeSelections } from './resume.js';
import type { SessionKeeper } from './session.js';

/** The link's running subscriptions: ended with UNAUTHENTICATED when the session ends, completed on dispose. */
export interface Running {
  active: Set<(reason: string) => void>;
  running: Set<() => void>;
}

/**
 * One subscription through graphql-ws. A resumable one (`roomEvents`, `messageAdded`) is sent with
 * a payload whose `after` variable follows the last event delivered, so graphql-ws's own retry
 * re-sends the current position; where graphql-ws gives up (e.g. 1011, or a failed refresh while
 * reconnecting), the kit subscribes again itself from the same position, after a backoff.
 */
export function subscribe(
  operation: ApolloLink.Operation,
  client: Client,
  keeper: SessionKeeper,
  { active, running }: Running,
  retry: RetryOptions | undefined,
): Observable<ApolloLink.Result> {
  return new Observable<ApolloLink.Result>((observer) => {
    const resumable = resumableFieldOf(operation.query);
    const { document, afterVariable, initialAfter } = resumable
      ? withResumeSelections(operation.query, resumable.field)
      : { document: operation.query, afterVariable: 'after', initialAfter: undefined };
    const tracker = resumable ? new ResumeTracker(resumable.field, resumable.key) : undefined;
    // graphql-ws re-sends this very payload when it reconnects: the `after` variable follows the position.
    const variables: Record<string, unknown> = { ...operation.variables };
    if (initialAfter !== undefined) variables[afterVariable] ??= initialAfter;
    const payload: SubscribePayload = { query: print(document), operationName: operation.operationName, variables, extensions: operation.extensions };
    let attempt = 0;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let dispose: (() => void) | undefined;

    const finish = (error?: unknown) => {
      if (stopped) return;
      stopped = true;
      active.delete(endSession);
      running.delete(complete);
      clearTimeout(timer);
      dispose?.();
      if (error) observer.error(error);
      else observer.complete();
    };
    const endSession = (reason: string) => finish(unauthenticated(reason));
    const complete = () => finish();
    active.add(endSession);
    running.add(complete);

    const again = () => {
      if (stopped) return;
      timer = setTimeout(start, backoffDelay(attempt++, retry));
    };
    const failed = (err: unknown) => {
      if (stopped) return;
      if (keeper.ended) return endSession(keeper.ended);
      if (Array.isArray(err)) {
        const errors = err as GraphQLFormattedError[];
        if (hasUnauthenticated(errors)) return keeper.end(errors[0].message);
        // The server could not serve an event for a while and ended the stream: subscribe again after the last cursor.
        if (errors.length > 0 && errors.every((e) => e.extensions?.code === 'SERVICE_UNAVAILABLE')) return again();
        return finish(new CombinedGraphQLErrors({ data: null, errors }));
      }
      if (isCloseEvent(err) && AUTH_CLOSE_CODES.has(err.code)) {
        // Signed out by the application (`setSession(null)`) meanwhile: nothing of the server's ended.
        if (!keeper.signedIn) return endSession('Signed out: give the link a session (setSession) to subscribe again');
        if (err.reason !== 'Token expired') return keeper.end(err.reason || 'The server refused the session');
        // Expired before a refresh renewed it (e.g. the machine slept): refresh (once for all the
        // subscriptions this close ended), then resume.
        return void keeper.renewExpired().then(again, (e: unknown) => (e instanceof SessionEndedError ? endSession(e.message) : again()));
      }
      if (isCloseEvent(err) && FATAL_CLOSE_CODES.has(err.code)) return finish(new Error(`The server refused the subscription: ${err.code} ${err.reason}`));
      again(); // 1011 and other close codes graphql-ws treats as final, a failed refresh while reconnecting …
    };

    function start() {
      if (stopped) return;
      if (tracker?.cursor) variables[afterVariable] = tracker.cursor;
      dispose = client.subscribe(payload, {
        next: (result) => {
          attempt = 0;
          if (tracker && !tracker.accept(result.data as Record<string, unknown> | null)) return;
          observer.next(result as ApolloLink.Result);
          if (tracker?.cursor) variables[afterVariable] = tracker.cursor;
        },
        error: failed,
        complete: () => finish(),
      });
    }
    keeper.session().then(
      (session) =>
        keeper.ended ? endSession(keeper.ended) : session ? start() : finish(unauthenticated('Not signed in: give the link a session (setSession) first')),
      (err: unknown) => finish(err),
    );
    return () => {
      stopped = true;
      active.delete(endSession);
      running.delete(complete);
      clearTimeout(timer);
      dispose?.();
    };
  });
}
