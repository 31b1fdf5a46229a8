/** How the kit waits between reconnect attempts. */
export interface RetryOptions {
  /** The first wait, in ms. Default 250. */
  initialDelayMs?: number;
  /** The longest wait, in ms. Default 10000. */
  maxDelayMs?: number;
}

/**
 * Exponential backoff with jitter ("equal jitter"): attempt n waits between half and all of
 * min(max, initial · 2ⁿ), so clients that lost the same server do not all come back at once.
 */
export function backoffDelay(attempt: number, { initialDelayMs = 250, maxDelayMs = 10_000 }: RetryOptions = {}): number {
  const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
