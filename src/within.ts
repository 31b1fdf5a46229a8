/**
 * What `promise` settles with if it does so within `ms`, else `otherwise`; the timer is cleared as
 * soon as either happens, and never keeps the process alive. When the timer fires, `otherwise`
 * waits for the turn of the event loop that reads the sockets (`setImmediate`): if this process
 * itself was held past `ms` (a long synchronous task, the process descheduled), an answer that came
 * meanwhile waits unread behind the timer, and still wins.
 */
export async function within<T>(promise: Promise<T>, ms: number, otherwise: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => (timer = setTimeout(() => setImmediate(resolve, otherwise), ms).unref()));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
