/**
 * What `promise` settles with if it does so within `ms`, else `otherwise`; the timer is cleared as
 * soon as either happens, and never keeps the process alive.
 */
export async function within<T>(promise: Promise<T>, ms: number, otherwise: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => (timer = setTimeout(resolve, ms, otherwise).unref()));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
